"""The API's TLS material and its OIN table, in one folder (``KBFLOW_API_TLS_DIR``).

- ``ca.crt``: the CAs whose client certificates are accepted (PKIoverheid Private Root
  in production; ``kbflow certs init``'s development CA);
- ``server.crt``, ``server.key``: the API's own certificate and key; the certificate's
  subject ``serialNumber`` is kbflow's own OIN;
- ``parties.json``: which OIN is which party,
  ``{"parties": [{"oin": "…", "party": "IND", "name": "…"}, …]}``; several GIs have one
  entry each.

Digikoppeling: two-sided TLS 1.2 or newer with forward-secret ciphers only; the peer's OIN
is the client certificate subject's ``serialNumber`` (20 digits).
"""

from __future__ import annotations

import json
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from kbflow.process import Party

#: An OIN (Organisatie-identificatienummer): 20 digits.
OIN_PATTERN = re.compile(r"^[0-9]{20}$")
#: Forward-secret suites only (ECDHE key exchange; TLS 1.3's suites are all forward-secret).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsMaterialError(ValueError):
    """The TLS folder lacks a file or holds a malformed one; the message names the file
    and the reason (never a key)."""


@dataclass(frozen=True)
class TlsFiles:
    """The files of a TLS folder (the list in the module docstring)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def server_certificate(self) -> Path:
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def parties(self) -> Path:
        return self.folder / "parties.json"

    def client_certificate(self, party: Party) -> Path:
        """A development client certificate (``kbflow certs init``)."""
        return self.folder / f"{party.value}.crt"

    def client_key(self, party: Party) -> Path:
        """A development client key (``kbflow certs init``)."""
        return self.folder / f"{party.value}.key"

    def check(self) -> None:
        """Raise ``TlsMaterialError`` naming the first missing file."""
        for path in (self.ca, self.server_certificate, self.server_key, self.parties):
            if not path.is_file():
                raise TlsMaterialError(f"{path}: missing; make a development set with "
                                       f"`kbflow certs init {self.folder}`")


def oin_of(certificate: x509.Certificate) -> str | None:
    """The OIN in ``certificate``'s subject ``serialNumber``, or None if it has none of
    20 digits."""
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        return None
    value = values[0].value
    text = value if isinstance(value, str) else value.decode()
    return text if OIN_PATTERN.fullmatch(text) else None


def own_oin(files: TlsFiles) -> str:
    """kbflow's own OIN: the ``serialNumber`` of its server certificate (the ``source`` of
    its notifications).

    Raises:
        TlsMaterialError: the certificate is missing, unreadable or has no OIN.
    """
    try:
        certificate = x509.load_pem_x509_certificate(files.server_certificate.read_bytes())
    except (OSError, ValueError):
        raise TlsMaterialError(f"{files.server_certificate}: not a readable PEM "
                               "certificate") from None
    oin = oin_of(certificate)
    if oin is None:
        raise TlsMaterialError(f"{files.server_certificate}: its subject has no serialNumber "
                               "of 20 digits (kbflow's OIN)")
    return oin


@dataclass(frozen=True)
class PartyEntry:
    """One organisation the API knows: its OIN, the party it is, and a label (for a GI,
    which one)."""

    oin: str
    party: Party
    name: str = ""


@dataclass(frozen=True)
class PartyTable:
    """Which OIN is which party (``parties.json``). One party may have several OINs (the
    GIs); an OIN is one party."""

    entries: tuple[PartyEntry, ...]

    def party_of(self, oin: str) -> PartyEntry | None:
        """The entry of ``oin``, or None for an OIN the table does not know."""
        for entry in self.entries:
            if entry.oin == oin:
                return entry
        return None

    @classmethod
    def load(cls, path: Path) -> PartyTable:
        """Read ``parties.json``.

        Raises:
            TlsMaterialError: missing, not JSON, an OIN not of 20 digits, an unknown party
                code, or one OIN listed twice; the message names the file and entry.
        """
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError:
            raise TlsMaterialError(f"{path}: missing or unreadable") from None
        except ValueError:
            raise TlsMaterialError(f"{path}: not JSON") from None
        rows = document.get("parties") if isinstance(document, dict) else None
        if not isinstance(rows, list):
            raise TlsMaterialError(f'{path}: must be {{"parties": [{{"oin": …, "party": …}}]}}')
        entries: list[PartyEntry] = []
        for index, row in enumerate(rows):
            oin = row.get("oin") if isinstance(row, dict) else None
            code = row.get("party") if isinstance(row, dict) else None
            if not isinstance(oin, str) or not OIN_PATTERN.fullmatch(oin):
                raise TlsMaterialError(f"{path}: parties[{index}].oin: must be 20 digits")
            if code not in {party.value for party in Party}:
                raise TlsMaterialError(f"{path}: parties[{index}].party: must be one of "
                                       f"{', '.join(p.value for p in Party)}")
            if any(entry.oin == oin for entry in entries):
                raise TlsMaterialError(f"{path}: parties[{index}].oin: listed twice")
            name = row.get("name", "")
            entries.append(PartyEntry(oin, Party(code), name if isinstance(name, str) else ""))
        return cls(tuple(entries))


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The API's TLS context: TLS 1.2 or newer, forward-secret ciphers, the server
    certificate, and client certificates **optional but verified**: a client that shows
    none still reaches ``/v1/openapi.json`` (and gets 401 elsewhere); a certificate that
    does not chain to ``ca.crt`` fails the handshake.

    Raises:
        TlsMaterialError: a file is missing or unreadable.
    """
    files.check()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    try:
        context.load_cert_chain(files.server_certificate, files.server_key)
        context.load_verify_locations(cafile=files.ca)
    except (OSError, ssl.SSLError):
        raise TlsMaterialError(f"{files.folder}: server.crt, server.key or ca.crt is not "
                               "valid PEM, or the key does not match the certificate") from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(files: TlsFiles, party: Party) -> ssl.SSLContext:
    """A client's TLS context with a development certificate of ``party`` (tests, the
    benchmark): trusts ``ca.crt``, presents ``<PARTY>.crt``."""
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(files.client_certificate(party), files.client_key(party))
    return context
