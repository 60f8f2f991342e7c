"""FSC mode: the API behind an FSC Inway (Federatieve Service Connectiviteit, fsc-core).

With ``KBFLOW_API_FSC_PUBLIC_KEYS`` set (a PEM file of the public keys, or certificates,
that sign FSC access tokens: the Manager's / the Inway's), the caller is not the OIN of
the connection's client certificate — that is the Inway's — but the organisation named by
the access token the Inway forwards in ``Fsc-Authorization``:

- the token is a JWT signed with RS256 or ES256 by one of those keys (PyJWT), not expired
  (``exp`` required; ``nbf`` and ``iat`` checked when present), with a ``sub``;
- it is certificate-bound: its ``cnf`` claim's ``x5t#S256`` (base64url SHA-256 of the
  certificate's DER, RFC 8705) must be the thumbprint of this connection's verified client
  certificate (the Inway's), so a token copied to another connection is worthless;
- the caller is ``sub``: the organisation on whose behalf the call is made, whose rights
  the process table gives. For a delegated call the token also names the delegate in
  ``act.sub``; it must then be an OIN too, but rights stay those of ``sub`` (the
  delegate acts for it; kbflow has no table of delegations).

``aud`` is not checked (the Inway checked it against its own address). A missing or
invalid token is 401 (``ProblemType.FSC_UNAUTHENTICATED``, with ``WWW-Authenticate:
Bearer`` as fsc-core asks) with a reason from a fixed set: never the token or a claim's
value. (Rule for ``sub``: RFC 8693, which FSC's ``act`` claim follows: ``sub`` is the
party on whose behalf, ``act.sub`` the one acting.) A ``sub`` that the OIN table does not
know is 403, as for a certificate (``api.identity``). The ``Fsc-Transaction-Id`` (a
UUIDv7) is recorded with the request's trace (``api.trace``) in every processing-log entry
it causes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Request

from api.problems import ApiProblem, ProblemType
from api.tls import OIN_PATTERN, TlsMaterialError
from kbflow.settings import API_FSC_PUBLIC_KEYS_ENV

#: The header the Inway forwards the access token in.
AUTHORIZATION_HEADER = "Fsc-Authorization"
#: The signature algorithms accepted (FSC: RS256 or ES256).
ALGORITHMS = ("RS256", "ES256")
#: Smallest RSA key accepted.
MIN_RSA_BITS = 2048
_PEM_BLOCK = re.compile(
    rb"-----BEGIN (PUBLIC KEY|CERTIFICATE)-----\r?\n.+?-----END \1-----", re.DOTALL)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class FscKeysError(TlsMaterialError):
    """``KBFLOW_API_FSC_PUBLIC_KEYS`` names no readable PEM file of usable keys; the
    message names the variable, the file and the reason."""


@functools.lru_cache(maxsize=8)
def load_keys(path: Path) -> tuple[PublicKey, ...]:
    """The token-signing keys in the PEM file ``path``: ``PUBLIC KEY`` blocks and
    ``CERTIFICATE`` blocks (their public keys); RSA of at least 2048 bits or EC P-256.

    Raises:
        FscKeysError: unreadable, no such block, a block that is not valid PEM, or a key of
            another kind.
    """
    where = f"{API_FSC_PUBLIC_KEYS_ENV}: {path}"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FscKeysError(f"{where}: cannot be read ({error.strerror or 'error'})") from None
    keys: list[PublicKey] = []
    for number, block in enumerate(_PEM_BLOCK.finditer(data), start=1):
        try:
            if block.group(1) == b"CERTIFICATE":
                key: Any = x509.load_pem_x509_certificate(block.group(0)).public_key()
            else:
                key = serialization.load_pem_public_key(block.group(0))
        except ValueError:
            raise FscKeysError(f"{where}: PEM block {number} is not valid") from None
        usable_rsa = isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS
        usable_ec = (isinstance(key, ec.EllipticCurvePublicKey)
                     and isinstance(key.curve, ec.SECP256R1))
        if usable_rsa or usable_ec:
            keys.append(key)
        else:
            raise FscKeysError(f"{where}: PEM block {number} is no RSA key of at least "
                               f"{MIN_RSA_BITS} bits nor an EC P-256 key (RS256, ES256)")
    if not keys:
        raise FscKeysError(f"{where}: holds no PEM PUBLIC KEY or CERTIFICATE block")
    return tuple(keys)


def thumbprint(certificate: x509.Certificate) -> str:
    """RFC 8705's ``x5t#S256`` of ``certificate``: base64url SHA-256 of its DER, no
    padding."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _refused(reason: str) -> ApiProblem:
    # fsc-core: a missing, invalid or expired token is answered with WWW-Authenticate: Bearer
    return ApiProblem(ProblemType.FSC_UNAUTHENTICATED, f"{AUTHORIZATION_HEADER}: {reason}",
                      headers={"WWW-Authenticate": "Bearer"})


def verified_claims(token: str, keys: tuple[PublicKey, ...]) -> dict[str, Any]:
    """The claims of ``token`` once its signature (RS256/ES256, by one of ``keys``),
    expiry and ``sub`` are checked.

    Raises:
        ApiProblem: 401, naming the rule the token broke (never its content).
    """
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError:
        raise _refused("not a JWT") from None
    if algorithm not in ALGORITHMS:
        raise _refused(f"must be signed with {' or '.join(ALGORITHMS)}")
    kind = rsa.RSAPublicKey if algorithm == "RS256" else ec.EllipticCurvePublicKey
    for key in keys:
        if not isinstance(key, kind):
            continue
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[algorithm],
                options={"require": ["exp", "sub"], "verify_aud": False})
        except jwt.InvalidSignatureError:
            continue  # another key may have signed it
        except jwt.ExpiredSignatureError:
            raise _refused("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _refused("the token is not valid yet (nbf/iat)") from None
        except jwt.MissingRequiredClaimError as missing:
            raise _refused(f"the token lacks the claim {missing.claim}") from None
        except jwt.InvalidTokenError:
            raise _refused("the token is malformed") from None
        return claims
    raise _refused("not signed by a key of KBFLOW_API_FSC_PUBLIC_KEYS")


def caller_oin(request: Request, certificate: x509.Certificate, keys_file: Path) -> str:
    """The OIN of the organisation the Inway calls for: ``sub`` of the request's verified,
    certificate-bound ``Fsc-Authorization`` token (module docstring).

    Raises:
        ApiProblem: 401 for a missing or invalid token, or one bound to another
            certificate.
        FscKeysError: the keys file cannot be used (``kbflow api`` checks it at start).
    """
    keys = load_keys(keys_file)
    token = request.headers.get(AUTHORIZATION_HEADER)
    if not token:
        raise _refused("missing; behind an FSC Inway every call carries the access token")
    token = token.strip().removeprefix("Bearer ").strip()
    claims = verified_claims(token, keys)
    confirmation = claims.get("cnf")
    bound = confirmation.get("x5t#S256") if isinstance(confirmation, dict) else None
    if bound != thumbprint(certificate):
        raise _refused("the token is not bound to this connection's client certificate "
                       "(cnf.x5t#S256)")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not OIN_PATTERN.fullmatch(subject):
        raise _refused("sub must be the calling organisation's OIN (20 digits)")
    actor = claims.get("act")
    if actor is not None:
        delegate = actor.get("sub") if isinstance(actor, dict) else None
        if not isinstance(delegate, str) or not OIN_PATTERN.fullmatch(delegate):
            raise _refused("act.sub must be the delegate's OIN (20 digits)")
    return subject


def keys_file(request: Request) -> Path | None:
    """The FSC keys file of the application's settings, or None: FSC mode is off."""
    context = getattr(request.app.state, "context", None)
    found = getattr(getattr(context, "settings", None), "api_fsc_public_keys", None)
    return found if isinstance(found, Path) else None


def check_keys(keys_file: Path | None) -> None:
    """Check the FSC keys file at start (``kbflow api``), if FSC mode is on.

    Raises:
        FscKeysError: see ``load_keys``.
    """
    if keys_file is not None:
        load_keys(keys_file)
