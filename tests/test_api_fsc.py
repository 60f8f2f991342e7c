"""FSC mode (``api.fsc``): behind an FSC Inway the caller is the ``sub`` of the verified,
certificate-bound ``Fsc-Authorization`` token, not the OIN of the connection's
certificate (the Inway's). Over real mutual TLS (``tests/api_harness.py``); the Inway's
certificate is a development client certificate of ``kbflow certs init``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import jwt
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, FastAPI
from typer.testing import CliRunner

from api.certs import DEV_OINS, init_dev_certs
from api.context import ApiContext
from api.fsc import FscKeysError, load_keys, thumbprint
from api.identity import CallerDep
from api.tls import PartyTable, TlsFiles, own_oin
from kbflow.process import Party
from kbflow.settings import Settings
from starter.cli import app as cli
from tests import api_harness

#: The development certificate that plays the Inway's.
INWAY = Party.VT
FSC_PROBLEM = "urn:kbflow:problem:fsc-unauthenticated"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

_probe = APIRouter()


@_probe.get("/fsc-probe")
async def _who(caller: CallerDep) -> dict[str, Any]:
    """A test-only route: who the API takes the caller to be."""
    return {"party": caller.party.value, "oin": caller.oin}


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_dev_certs(tmp_path_factory.mktemp("api-tls"))


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fsc") / "fsc-keys.pem"
    path.write_bytes(_pem(RSA_KEY) + _pem(EC_KEY))
    return path


def _inway_thumbprint(files: TlsFiles) -> str:
    return thumbprint(x509.load_pem_x509_certificate(
        files.client_certificate(INWAY).read_bytes()))


def token(files: TlsFiles, *, key: Any = RSA_KEY, algorithm: str = "RS256",
          **claims: Any) -> str:
    """An FSC access token for IND, bound to the Inway's certificate; ``claims``
    override (None removes one)."""
    body: dict[str, Any] = {
        "sub": DEV_OINS[Party.IND], "iss": "00000099000000009999",
        "aud": "https://inway.example", "svc": "kbflow",
        "exp": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        "cnf": {"x5t#S256": _inway_thumbprint(files)}}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key,
                      algorithm=algorithm)


def _with_probe(create_app: Any) -> Any:
    def make(api_context: ApiContext | None) -> FastAPI:
        app: FastAPI = create_app(api_context)
        app.include_router(_probe, prefix="/v1")
        return app
    return make


async def _served(tls_files: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  keys: Path | None) -> AsyncIterator[api_harness.ApiEndpoint]:
    monkeypatch.setattr(api_harness, "create_app", _with_probe(api_harness.create_app))
    api_context = ApiContext(settings=Settings(data_dir=tmp_path, api_fsc_public_keys=keys),
                             client=mock.Mock(), parties=PartyTable.load(tls_files.parties),
                             oin=own_oin(tls_files), keys=mock.Mock(), outbox=mock.Mock())
    async with api_harness.serve_api(api_context, tls_files) as served:
        yield served


@pytest_asyncio.fixture
async def fsc_endpoint(tls_files: TlsFiles, keys_file: Path, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch
                       ) -> AsyncIterator[api_harness.ApiEndpoint]:
    async for served in _served(tls_files, tmp_path, monkeypatch, keys_file):
        yield served


@pytest_asyncio.fixture
async def plain_endpoint(tls_files: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                         ) -> AsyncIterator[api_harness.ApiEndpoint]:
    async for served in _served(tls_files, tmp_path, monkeypatch, None):
        yield served


async def _ask(endpoint: api_harness.ApiEndpoint, fsc_token: str | None) -> Any:
    headers = {} if fsc_token is None else {"Fsc-Authorization": fsc_token}
    async with endpoint.client(INWAY) as inway:
        return await inway.get("/v1/fsc-probe", headers=headers)


async def test_the_caller_is_the_sub_of_a_verified_token(
        fsc_endpoint: api_harness.ApiEndpoint, tls_files: TlsFiles) -> None:
    for signed in (token(tls_files), token(tls_files, key=EC_KEY, algorithm="ES256"),
                   "Bearer " + token(tls_files)):
        response = await _ask(fsc_endpoint, signed)
        assert response.status_code == 200, response.text
        assert response.json() == {"party": "IND", "oin": DEV_OINS[Party.IND]}  # not VT's


async def test_a_delegate_acts_with_the_rights_of_sub(
        fsc_endpoint: api_harness.ApiEndpoint, tls_files: TlsFiles) -> None:
    delegated = token(tls_files, act={"sub": DEV_OINS[Party.COA]})
    assert (await _ask(fsc_endpoint, delegated)).json()["party"] == "IND"
    bad_delegate = await _ask(fsc_endpoint, token(tls_files, act={"sub": "coa"}))
    assert bad_delegate.status_code == 401
    assert "act.sub" in bad_delegate.json()["detail"]


@pytest.mark.parametrize(("why", "make", "reason"), [
    ("missing", lambda files: None, "missing"),
    ("not a JWT", lambda files: "not.a.jwt", "not a JWT"),
    ("expired", lambda files: token(files, exp=dt.datetime.now(dt.UTC)
                                    - dt.timedelta(minutes=1)), "expired"),
    ("no exp", lambda files: token(files, exp=None), "lacks the claim exp"),
    ("no sub", lambda files: token(files, sub=None), "lacks the claim sub"),
    ("unknown signer", lambda files: token(files, key=OTHER_KEY), "not signed by a key"),
    ("HS256, a shared secret", lambda files: jwt.encode(
        {"sub": DEV_OINS[Party.IND], "exp": 9999999999}, "s" * 32, algorithm="HS256"),
     "must be signed with RS256 or ES256"),
    ("bound to another certificate", lambda files: token(files, cnf={"x5t#S256": "x" * 43}),
     "not bound to this connection"),
    ("not bound", lambda files: token(files, cnf=None), "not bound to this connection"),
    ("sub no OIN", lambda files: token(files, sub="IND"), "sub must be"),
])
async def test_a_missing_or_invalid_token_is_401(
        fsc_endpoint: api_harness.ApiEndpoint, tls_files: TlsFiles, why: str, make: Any,
        reason: str) -> None:
    sent = make(tls_files)
    response = await _ask(fsc_endpoint, sent)
    assert response.status_code == 401, why
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == FSC_PROBLEM and problem["status"] == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"  # fsc-core
    assert problem["detail"].startswith("Fsc-Authorization: ") and reason in problem["detail"]
    if sent:
        assert sent not in response.text  # the token is never echoed


async def test_an_unknown_sub_is_403_like_an_unknown_certificate(
        fsc_endpoint: api_harness.ApiEndpoint, tls_files: TlsFiles) -> None:
    response = await _ask(fsc_endpoint, token(tls_files, sub="00000099000000077777"))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:kbflow:problem:unknown-oin"


async def test_without_fsc_mode_the_token_is_ignored(
        plain_endpoint: api_harness.ApiEndpoint, tls_files: TlsFiles) -> None:
    response = await _ask(plain_endpoint, token(tls_files))
    assert response.json() == {"party": INWAY.value, "oin": DEV_OINS[INWAY]}


def test_certificates_in_the_keys_file_are_read(tmp_path: Path, tls_files: TlsFiles) -> None:
    path = tmp_path / "certs.pem"
    path.write_bytes(tls_files.server_certificate.read_bytes() + _pem(RSA_KEY))
    assert len(load_keys(path)) == 2


@pytest.mark.parametrize(("content", "reason"), [
    (None, "cannot be read"),
    (b"no pem here", "holds no PEM PUBLIC KEY or CERTIFICATE block"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "PEM block 1 is not valid"),
    (_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "no RSA key of at"),
    (_pem(ec.generate_private_key(ec.SECP384R1())), "no RSA key of at least 2048 bits nor"),
])
def test_a_bad_keys_file_names_the_variable(tmp_path: Path, content: bytes | None,
                                            reason: str) -> None:
    path = tmp_path / "fsc.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FscKeysError) as raised:
        load_keys(path)
    assert str(raised.value).startswith(f"KBFLOW_API_FSC_PUBLIC_KEYS: {path}: ")
    assert reason in str(raised.value)


def test_kbflow_api_refuses_a_bad_keys_file_in_one_line(tmp_path: Path) -> None:
    init_dev_certs(tmp_path / "api-tls")
    done = CliRunner().invoke(cli, ["api"], env={
        "KBFLOW_DATA_DIR": str(tmp_path), "KBFLOW_API_FSC_PUBLIC_KEYS": str(tmp_path / "no.pem")})
    assert done.exit_code == 1
    assert done.stderr.strip().splitlines() == [
        f"error: KBFLOW_API_FSC_PUBLIC_KEYS: {tmp_path / 'no.pem'}: cannot be read "
        "(No such file or directory)"]


def test_the_settings_read_the_keys_file() -> None:
    assert Settings.from_env({}).api_fsc_public_keys is None
    assert Settings.from_env({"KBFLOW_API_FSC_PUBLIC_KEYS": "/etc/fsc.pem"}
                             ).api_fsc_public_keys == Path("/etc/fsc.pem")
