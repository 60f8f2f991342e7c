"""The API's identity by mutual TLS: the OpenAPI document open to all, 401 without a
certificate, a certificate of an unknown CA refused at the handshake, the caller's party
from the OIN in its certificate (``api.identity``, ``api.tls``, ``api.certs``)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import pytest
import pytest_asyncio
import structlog

from api import API_VERSION
from api.certs import DEV_OINS, KBFLOW_DEV_OIN, init_dev_certs
from api.context import ApiContext
from api.tls import PartyTable, TlsFiles, TlsMaterialError, own_oin
from kbflow.process import Party
from kbflow.settings import Settings
from tests.api_harness import ApiEndpoint, serve_api, write_impostor


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_dev_certs(tmp_path_factory.mktemp("api-tls"))


@pytest_asyncio.fixture
async def endpoint(tls_files: TlsFiles, tmp_path: Path) -> AsyncIterator[ApiEndpoint]:
    # No route here reaches Temporal or the store: a context without them suffices.
    api_context = ApiContext(settings=Settings(data_dir=tmp_path), client=mock.Mock(),
                             parties=PartyTable.load(tls_files.parties),
                             oin=own_oin(tls_files), keys=mock.Mock(), outbox=mock.Mock())
    async with serve_api(api_context, tls_files) as served:
        yield served


def test_certs_init_writes_the_layout_the_api_reads(tls_files: TlsFiles) -> None:
    table = PartyTable.load(tls_files.parties)
    assert {entry.party for entry in table.entries} == set(Party)
    assert own_oin(tls_files) == KBFLOW_DEV_OIN
    for party in Party:
        assert table.party_of(DEV_OINS[party]).party is party  # type: ignore[union-attr]
        assert tls_files.client_key(party).stat().st_mode & 0o777 == 0o600


def test_certs_init_refuses_a_folder_with_material(tls_files: TlsFiles) -> None:
    with pytest.raises(FileExistsError, match=r"ca\.crt: exists already"):
        init_dev_certs(tls_files.folder)


async def test_the_openapi_document_needs_no_certificate(endpoint: ApiEndpoint) -> None:
    async with endpoint.anonymous() as anonymous:
        response = await anonymous.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["version"] == API_VERSION
    assert response.headers["API-Version"] == API_VERSION


async def test_without_a_certificate_every_other_path_is_401(endpoint: ApiEndpoint) -> None:
    async with endpoint.anonymous() as anonymous:
        response = await anonymous.get("/v1/cases/KB-2026-7K4M2XCH-R")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["API-Version"] == API_VERSION
    problem = response.json()
    assert problem["type"] == "urn:kbflow:problem:unauthenticated"
    assert problem["status"] == 401 and problem["title"] and "certificate" in problem["detail"]


async def test_a_certificate_of_an_unknown_ca_is_refused_at_the_handshake(
        endpoint: ApiEndpoint, tmp_path: Path) -> None:
    certificate_path, key_path = write_impostor(tmp_path)
    port = int(endpoint.base_url.rsplit(":", 1)[1])

    def first_answer(maximum: ssl.TLSVersion, certificate: str, key: str) -> bytes:
        client = ssl.create_default_context(cafile=str(endpoint.files.ca))
        client.maximum_version = maximum
        client.load_cert_chain(certificate, key)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
            return tls.recv(12)

    impostor = (str(certificate_path), str(key_path))
    known = (str(endpoint.files.client_certificate(Party.IND)),
             str(endpoint.files.client_key(Party.IND)))
    # TLS 1.2: the server ends the handshake itself
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(first_answer, ssl.TLSVersion.TLSv1_2, *impostor)
    # TLS 1.3 finishes the client's side of the handshake first; the server, verifying
    # the certificate last, closes the connection before any request is read
    assert await asyncio.to_thread(first_answer, ssl.TLSVersion.TLSv1_3, *impostor) == b""
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        assert await asyncio.to_thread(first_answer, version, *known) == b"HTTP/1.1 200"


async def test_an_oin_the_table_does_not_know_is_403(endpoint: ApiEndpoint,
                                                     tmp_path: Path) -> None:
    table = json.loads(endpoint.files.parties.read_text())
    table["parties"] = [row for row in table["parties"] if row["party"] != "COA"]
    files = TlsFiles(tmp_path)
    for name in ("ca.crt", "server.crt", "server.key", "COA.crt", "COA.key"):
        (tmp_path / name).write_bytes((endpoint.files.folder / name).read_bytes())
    files.parties.write_text(json.dumps(table))
    api_context = ApiContext(settings=Settings(data_dir=tmp_path), client=mock.Mock(),
                             parties=PartyTable.load(files.parties), oin=own_oin(files),
                             keys=mock.Mock(), outbox=mock.Mock())
    async with serve_api(api_context, files) as served, served.client(Party.COA) as coa:
        response = await coa.get("/v1/cases/KB-2026-7K4M2XCH-R")
    assert response.status_code == 403
    assert response.json()["type"] == "urn:kbflow:problem:unknown-oin"
    assert DEV_OINS[Party.COA] in response.json()["detail"]


def test_a_malformed_oin_table_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "parties.json"
    path.write_text(json.dumps({"parties": [{"oin": "123", "party": "IND"}]}))
    with pytest.raises(TlsMaterialError, match=r"parties\[0\]\.oin: must be 20 digits"):
        PartyTable.load(path)
    path.write_text(json.dumps({"parties": [{"oin": "0" * 20, "party": "POLICE"}]}))
    with pytest.raises(TlsMaterialError, match=r"parties\[0\]\.party: must be one of"):
        PartyTable.load(path)


async def test_an_unexpected_fault_is_a_500_problem_with_the_api_version(
        tls_files: TlsFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A fault of kbflow's own (here: the status route's Temporal client raises) is a 500
    problem that names nothing of the fault, with the API-Version header every answer
    carries; the log names only the exception's type and the route."""
    client = mock.Mock()
    client.get_workflow_handle_for.side_effect = RuntimeError("Fenna Fictief 2014-05-03")
    keys = mock.Mock()
    keys.has_key.return_value = True
    api_context = ApiContext(settings=Settings(data_dir=tmp_path), client=client,
                             parties=PartyTable.load(tls_files.parties),
                             oin=own_oin(tls_files), keys=keys, outbox=mock.Mock())
    async with serve_api(api_context, tls_files) as served, \
            served.client(Party.RVDK) as rvdk:
        response = await rvdk.get("/v1/cases/KB-2026-7K4M2XCH-R")
    assert response.status_code == 500, response.text
    assert response.headers["API-Version"] == API_VERSION
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:kbflow:problem:internal"
    assert "Fenna" not in response.text and "Fenna" not in caplog.text


async def test_a_path_with_a_trailing_slash_is_a_404_problem_not_a_redirect(
        endpoint: ApiEndpoint) -> None:
    async with endpoint.client(Party.IND) as ind:
        response = await ind.get("/v1/cases/KB-2026-7K4M2XCH-R/",
                                 headers={"Host": "elsewhere.example"})
    assert response.status_code == 404 and "location" not in response.headers
    assert response.json()["type"] == "urn:kbflow:problem:not-found"


async def test_each_request_is_one_log_line_naming_its_route_never_its_path(
        endpoint: ApiEndpoint) -> None:
    """What a caller typed in the path (here a fictional name and date of birth) is in
    neither the problem nor the API's log line: both name the route's template."""
    typed = "/v1/cases/Fenna%20Fictief%202014-05-03"
    with structlog.testing.capture_logs() as lines:
        async with endpoint.client(Party.IND) as ind:
            response = await ind.get(typed)
    assert response.status_code == 400
    assert response.json()["instance"] == "/v1/cases/{caseRef}"
    assert "Fenna" not in response.text and "2014-05-03" not in response.text
    [line] = [line for line in lines if line["event"] == "api request"]
    assert (line["method"], line["route"], line["status"], line["party"]) == (
        "GET", "/v1/cases/{caseRef}", 400, "IND")
    assert "Fenna" not in repr(lines) and "2014" not in repr(lines)


def test_kbflow_api_on_an_address_in_use_fails_in_one_line(tls_files: TlsFiles,
                                                           tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run(
            [str(Path(sys.executable).with_name("kbflow")), "api"], capture_output=True,
            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "KBFLOW_API_ADDRESS": address,
                                        "KBFLOW_API_TLS_DIR": str(tls_files.folder),
                                        "KBFLOW_DATA_DIR": str(tmp_path)})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on {address} (KBFLOW_API_ADDRESS): Address already in use"]
