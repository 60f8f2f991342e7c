"""The remote codec server (``encryption/codec_server.py``) and ``kbflow codec-server``.

Through FastAPI's TestClient: an operator's own token (Bearer and path form; none, a
wrong and a revoked one get 401), the services' encode-only token, the UI origin and
CORS, round trips, payloads of a case's workflow context, erased cases and tampering, and
the processing log of every decode (one entry per case per request, naming the operator
and the payload count). Then the command itself as a subprocess: its instructions, an
access log without the token, and a decode on record. And ``kbflow server``: no codec
endpoint for the UI unless asked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from activities.outbox_store import DecodeLog
from encryption.codec import ENCODING, KEY_ID, CaseCodec
from encryption.codec_server import (
    JsonPayload,
    TokenRedactingFilter,
    access_log_config,
    create_app,
    load_token,
    redact_token,
)
from encryption.keys import SYSTEM_SCOPE, KeyStore
from encryption.operators import OperatorStore
from encryption.storage import StorageError
from kbflow.processing_log import DecodeEntry
from kbflow.settings import Settings, workflow_id
from starter.dev_server import DevServerConfig
from tests import factories as f

OPERATOR = "rvdk-ops-017"
#: The services' codec token: encodes, never decodes.
SERVICE_TOKEN = "test-service-token-0123456789abcdef"
UI = "http://localhost:8233"
FOREIGN = "https://evil.example"
CASE = workflow_id("KB-2026-CODEC00001")
OTHER_CASE = workflow_id("KB-2026-CODEC00002")
KBFLOW = Path(sys.executable).parent / "kbflow"


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    """A key store of its own (own master key) per test."""
    return KeyStore.open(Settings(data_dir=tmp_path))


@pytest.fixture
def operators(tmp_path: Path) -> OperatorStore:
    return OperatorStore.open(Settings(data_dir=tmp_path))


@pytest.fixture
def token(operators: OperatorStore) -> str:
    """The operator's own token."""
    return operators.issue(OPERATOR)


@pytest.fixture
def decode_log(tmp_path: Path) -> DecodeLog:
    return DecodeLog(Settings(data_dir=tmp_path).outbox_path)


@pytest.fixture
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _app(keys: KeyStore, operators: OperatorStore, decode_log: DecodeLog) -> TestClient:
    return TestClient(create_app(keys, operators, decode_log, [UI], SERVICE_TOKEN))


@pytest.fixture
def http(keys: KeyStore, operators: OperatorStore, decode_log: DecodeLog
         ) -> Iterator[TestClient]:
    with _app(keys, operators, decode_log) as client:
        yield client


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def _body(*payloads: Payload) -> dict[str, Any]:
    return {"payloads": [JsonPayload.from_proto(p).model_dump() for p in payloads]}


def _payloads(response: httpx.Response) -> list[Payload]:
    return [JsonPayload.model_validate(p).to_proto() for p in response.json()["payloads"]]


def _for_case(keys: KeyStore, case: str, *payloads: Payload) -> list[Payload]:
    """Payloads encrypted as the worker encrypts a case's payloads."""
    codec = CaseCodec(keys).with_context(WorkflowSerializationContext(
        namespace="default", workflow_id=case))
    return asyncio.run(codec.encode(list(payloads)))


# ---- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["encode", "decode"])
@pytest.mark.parametrize(("path", "headers"), [
    ("/{op}", {}),
    ("/{op}", {"Authorization": "Bearer wrong-token"}),
    ("/{op}", {"Authorization": "Bearer kbop_wrong-token"}),
    ("/{op}", {"Authorization": "Basic {token}"}),
    ("/{op}", {"Authorization": "{token}"}),
    ("/t/wrong-token/{op}", {}),
    ("/t/{token}x/{op}", {}),
], ids=["no-token", "wrong-bearer", "wrong-operator-token", "basic-scheme", "bare-token",
        "wrong-path-token", "longer-path-token"])
def test_a_request_without_the_token_is_401(http: TestClient, token: str, operation: str,
                                            path: str, headers: dict[str, str]) -> None:
    url = path.format(op=operation, token=token)
    response = http.post(url, json=_body(_plain("x")),
                         headers={k: v.format(token=token) for k, v in headers.items()})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                               "detail": "an operator's codec token is required"}
    assert token not in response.text


@pytest.mark.parametrize("form", ["bearer", "path"])
def test_a_revoked_token_is_401_from_the_moment_it_is_revoked(
        http: TestClient, operators: OperatorStore, keys: KeyStore, token: str,
        form: str) -> None:
    [encrypted] = _for_case(keys, CASE, _plain(f.RELAAS.concerns))

    def decode() -> httpx.Response:
        if form == "bearer":
            return http.post("/decode", json=_body(encrypted),
                             headers={"Authorization": f"Bearer {token}"})
        return http.post(f"/t/{token}/decode", json=_body(encrypted))

    assert decode().status_code == 200
    operators.revoke(OPERATOR)
    refused = decode()
    assert refused.status_code == 401
    assert "payloads" not in refused.text and not f.leaked(refused.text)
    # A new token for the same operator works; the revoked one stays refused.
    renewed = operators.issue(OPERATOR)
    assert http.post("/decode", json=_body(encrypted),
                     headers={"Authorization": f"Bearer {renewed}"}).status_code == 200
    assert decode().status_code == 401


def test_the_services_token_encodes_but_never_decodes(http: TestClient, keys: KeyStore,
                                                      decode_log: DecodeLog) -> None:
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    encoded = http.post("/encode", json=_body(_plain(f.CHILD.name)), headers=service)
    assert encoded.status_code == 200
    assert http.post(f"/t/{SERVICE_TOKEN}/encode", json=_body(_plain("x"))).status_code == 200
    [encrypted] = _for_case(keys, CASE, _plain(f.RELAAS.concerns))
    for url, headers in (("/decode", service), (f"/t/{SERVICE_TOKEN}/decode", {})):
        refused = http.post(url, json=_body(encrypted), headers=headers)
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("decoding needs an operator's own token")
        assert "payloads" not in refused.text and not f.leaked(refused.text)
    assert decode_log.entries() == []  # encoding is no disclosure: nothing logged


def test_without_a_services_token_only_operators_encode(
        keys: KeyStore, operators: OperatorStore, decode_log: DecodeLog, token: str) -> None:
    with TestClient(create_app(keys, operators, decode_log, [UI])) as http:
        assert http.post("/encode", json=_body(_plain("x")),
                         headers={"Authorization": "Bearer "}).status_code == 401
        assert http.post(f"/t/{token}/encode", json=_body(_plain("x"))).status_code == 200


def test_the_token_is_checked_before_the_body(http: TestClient) -> None:
    assert http.post("/decode", content=b"not json").status_code == 401
    assert http.post("/t/nope/decode", json={"nothing": 1}).status_code == 401


@pytest.mark.parametrize("url", ["/decode", "/t/{token}/decode"])
def test_a_foreign_origin_is_403_even_with_the_token(http: TestClient, url: str, token: str,
                                                     bearer: dict[str, str]) -> None:
    response = http.post(url.format(token=token), json=_body(_plain("x")),
                         headers={**bearer, "Origin": FOREIGN})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


def test_the_ui_origin_is_served_with_cors_headers(http: TestClient, keys: KeyStore,
                                                   token: str) -> None:
    [encrypted] = _for_case(keys, CASE, _plain("x"))
    response = http.post(f"/t/{token}/decode", json=_body(encrypted),
                         headers={"Origin": UI, "X-Namespace": "default"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI
    # Without the token the UI still reads the refusal (and shows ciphertext).
    refused = http.post("/decode", json=_body(encrypted), headers={"Origin": UI})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == UI


def test_a_preflight_from_the_ui_allows_namespace_and_authorization(http: TestClient) -> None:
    response = http.options("/decode", headers={
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    })
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI
    allowed = {h.strip().lower()
               for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"x-namespace", "authorization", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]


def test_a_preflight_from_a_foreign_origin_is_not_allowed(http: TestClient,
                                                         token: str) -> None:
    response = http.options(f"/t/{token}/decode", headers={
        "Origin": FOREIGN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-namespace,authorization",
    })
    assert response.status_code >= 400
    assert "access-control-allow-origin" not in response.headers


# ---- encoding and decoding --------------------------------------------------------------


@pytest.mark.parametrize("form", ["bearer", "path-token"])
def test_encode_then_decode_returns_the_original(http: TestClient, form: str, token: str,
                                                 bearer: dict[str, str]) -> None:
    url, headers = (("/{op}", bearer) if form == "bearer"
                    else (f"/t/{token}/{{op}}", {}))
    originals = [_plain(f.CHILD.name), _plain(f.RELAAS.concerns),
                 Payload(metadata={"encoding": b"binary/null"})]
    encoded = http.post(url.format(op="encode"), json=_body(*originals), headers=headers)
    assert encoded.status_code == 200
    ciphertexts = _payloads(encoded)
    assert all(p.metadata["encoding"] == ENCODING for p in ciphertexts)
    assert not f.leaked(encoded.text)
    assert not f.leaked(b"".join(base64.b64decode(p["data"])
                                 for p in encoded.json()["payloads"]).decode("latin-1"))

    decoded = http.post(url.format(op="decode"), json=encoded.json(), headers=headers)
    assert decoded.status_code == 200
    assert _payloads(decoded) == originals


def test_a_payload_of_a_case_decodes_through_the_server(http: TestClient, keys: KeyStore,
                                                        bearer: dict[str, str]) -> None:
    original = _plain(f.RULING_SUMMARY)
    [encrypted] = _for_case(keys, CASE, original)
    assert encrypted.metadata[KEY_ID].decode() == keys.key_for_scope(CASE)[0]
    response = http.post("/decode", json=_body(encrypted), headers=bearer)
    assert response.status_code == 200
    assert _payloads(response) == [original]


def test_unencrypted_payloads_pass_through_decode(http: TestClient, bearer: dict[str, str],
                                                 decode_log: DecodeLog) -> None:
    # Histories recorded before encryption still show.
    original = _plain("no personal data")
    response = http.post("/decode", json=_body(original), headers=bearer)
    assert _payloads(response) == [original]
    assert decode_log.entries() == []  # nothing encrypted, nothing disclosed


def test_a_payload_of_an_erased_case_is_not_decoded(
        tmp_path: Path, operators: OperatorStore, decode_log: DecodeLog,
        bearer: dict[str, str]) -> None:
    # The worker (or `kbflow erase`) erases; the codec server is another process with its
    # own KeyStore, which has just decoded the case (so a caching store holds its key).
    worker_keys = KeyStore.open(Settings(data_dir=tmp_path))
    [erased] = _for_case(worker_keys, CASE, _plain(f.RELAAS.concerns))
    [kept] = _for_case(worker_keys, OTHER_CASE, _plain(f.GOALS[0]))
    with _app(KeyStore.open(Settings(data_dir=tmp_path)), operators, decode_log) as http:
        assert http.post("/decode", json=_body(erased), headers=bearer).status_code == 200
        assert worker_keys.destroy(CASE)
        # Refused the moment the erasure returned: no cached key is trusted.
        response = http.post("/decode", json=_body(erased), headers=bearer)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail.startswith("cannot decode: data key dk-")
        assert detail.endswith("destroyed (case erased)")
        assert not f.leaked(response.text)
        # The other case still decodes.
        other = http.post("/decode", json=_body(kept), headers=bearer)
        assert _payloads(other) == [_plain(f.GOALS[0])]
        # A batch holding an erased payload decodes nothing: no partial plaintext.
        mixed = http.post("/decode", json=_body(kept, erased), headers=bearer)
        assert mixed.status_code == 422
        assert not f.leaked(mixed.text)
    # On record: the two decodes that answered, none of the refused ones.
    assert [(e.case_ref, e.payload_count) for e in decode_log.entries()] == [
        ("KB-2026-CODEC00001", 1), ("KB-2026-CODEC00002", 1)]


def test_an_erased_case_is_refused_by_the_server_that_erased_it(
        http: TestClient, keys: KeyStore, bearer: dict[str, str]) -> None:
    [encrypted] = _for_case(keys, CASE, _plain(f.RELAAS.concerns))
    assert http.post("/decode", json=_body(encrypted), headers=bearer).status_code == 200
    keys.destroy(CASE)  # the same store: its cache is dropped at once
    response = http.post("/decode", json=_body(encrypted), headers=bearer)
    assert response.status_code == 422
    assert "erased" in response.json()["detail"]


def test_a_tampered_payload_is_refused(http: TestClient, keys: KeyStore,
                                       bearer: dict[str, str],
                                       decode_log: DecodeLog) -> None:
    [encrypted] = _for_case(keys, CASE, _plain(f.RELAAS.concerns))
    data = bytearray(encrypted.data)
    data[-1] ^= 0x01
    tampered = Payload(metadata=dict(encrypted.metadata), data=bytes(data))
    response = http.post("/decode", json=_body(tampered), headers=bearer)
    assert response.status_code == 422
    assert "authentication failed" in response.json()["detail"]
    assert not f.leaked(response.text)
    assert decode_log.entries() == []


def test_malformed_payloads_are_refused_in_one_line(http: TestClient,
                                                   bearer: dict[str, str]) -> None:
    no_key_id = Payload(metadata={"encoding": ENCODING}, data=b"x" * 40)
    response = http.post("/decode", json=_body(no_key_id), headers=bearer)
    assert (response.status_code, response.json()["detail"]) == (
        422, f"payload 0: no {KEY_ID} in its metadata")
    unknown_key = Payload(metadata={"encoding": ENCODING, KEY_ID: b"dk-unknown"},
                          data=b"x" * 40)
    response = http.post("/decode", json=_body(unknown_key), headers=bearer)
    assert response.status_code == 422
    assert "dk-unknown: unknown" in response.json()["detail"]
    bad = {"payloads": [{"metadata": {"encoding": "%%%"}, "data": "!"}]}
    response = http.post("/decode", json=bad, headers=bearer)
    assert (response.status_code, response.json()["detail"]) == (422, "payload 0: not base64")


# ---- every decode on record ------------------------------------------------------------


def test_a_decode_logs_one_entry_per_case_naming_the_operator_and_count(
        http: TestClient, keys: KeyStore, bearer: dict[str, str],
        decode_log: DecodeLog) -> None:
    first = _for_case(keys, CASE, _plain(f.CHILD.name), _plain(f.RELAAS.concerns))
    second = _for_case(keys, OTHER_CASE, _plain(f.GOALS[0]))
    [system] = asyncio.run(CaseCodec(keys).encode([_plain("typed into the UI")]))
    response = http.post("/decode", json=_body(first[0], second[0], _plain("clear"),
                                               first[1], system), headers=bearer)
    assert response.status_code == 200
    entries = decode_log.entries()
    assert [(e.operator_id, e.case_ref, e.scope, e.payload_count) for e in entries] == [
        (OPERATOR, "KB-2026-CODEC00001", CASE, 2),
        (OPERATOR, "KB-2026-CODEC00002", OTHER_CASE, 1),
        (OPERATOR, None, SYSTEM_SCOPE, 1),
    ]
    assert len({e.request_id for e in entries}) == 1  # one request
    assert len({e.at for e in entries}) == 1
    # A second request is a second entry; only the case asked for is looked up.
    http.post("/decode", json=_body(second[0]), headers=bearer)
    assert [e.payload_count for e in decode_log.entries(["KB-2026-CODEC00002"])] == [1, 1]
    # The log holds no decoded value.
    raw = b"".join(path.read_bytes() for path in decode_log.path.parent.glob("outbox*"))
    assert not f.leaked(raw.decode("latin-1"))


class _BrokenLog(DecodeLog):
    def record(self, entries: list[DecodeEntry]) -> None:
        raise StorageError(f"cannot write {self.path}: disk full")


def test_a_decode_that_cannot_be_logged_is_not_answered(
        tmp_path: Path, keys: KeyStore, operators: OperatorStore,
        bearer: dict[str, str]) -> None:
    [encrypted] = _for_case(keys, CASE, _plain(f.RELAAS.concerns))
    broken = _BrokenLog(tmp_path / "outbox.sqlite3")
    with _app(keys, operators, broken) as http:
        response = http.post("/decode", json=_body(encrypted), headers=bearer)
    assert response.status_code == 503
    assert response.json()["detail"].endswith("disk full); nothing was decoded")
    assert "payloads" not in response.text and not f.leaked(response.text)


# ---- the token stays out of logs -----------------------------------------------------------


PATH_TOKEN = "kbop_" + "Q" * 43


def test_the_access_log_shows_no_token() -> None:
    assert redact_token(f"/t/{PATH_TOKEN}/decode") == "/t/<token>/decode"
    assert redact_token("/decode") == "/decode"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "POST", f"/t/{PATH_TOKEN}/decode", "1.1", 200),
                               None)
    assert TokenRedactingFilter().filter(record)
    assert PATH_TOKEN not in record.getMessage()
    assert "/t/<token>/decode" in record.getMessage()
    config = access_log_config()
    assert config["loggers"]["uvicorn.access"]["filters"] == ["redact_token"]


def test_the_token_file_is_private_and_stable(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KBFLOW_CODEC_TOKEN", raising=False)
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    token = load_token(Settings.from_env())
    assert len(token) >= 32
    assert (tmp_path / "codec.token").stat().st_mode & 0o777 == 0o600
    assert load_token(Settings.from_env()) == token
    monkeypatch.setenv("KBFLOW_CODEC_TOKEN", "from-the-secret-store")
    assert load_token(Settings.from_env()) == "from-the-secret-store"


# ---- kbflow server and kbflow codec-server ---------------------------------------------------


def test_the_dev_server_has_no_ui_codec_endpoint_by_default(tmp_path: Path) -> None:
    default = DevServerConfig.from_settings(Settings(data_dir=tmp_path)).command()
    assert "--ui-codec-endpoint" not in default  # kbflow server's and the demo's config
    config = DevServerConfig(host="127.0.0.1", port=7233, ui_port=8233, namespace="default",
                             db_file=tmp_path / "t.sqlite",
                             codec_endpoint="http://127.0.0.1:8081")
    command = config.command()
    index = command.index("--ui-codec-endpoint")
    assert command[index + 1] == "http://127.0.0.1:8081"


def test_kbflow_server_sets_a_ui_codec_endpoint_only_when_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from starter import cli

    started: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, args: started.append(list(args)))
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    done = runner.invoke(cli.app, ["server"])
    assert done.exit_code == 0, done.output
    assert "--ui-codec-endpoint" not in started[-1]
    assert "Web UI codec endpoint: none" in done.stdout
    done = runner.invoke(cli.app, ["server", "--ui-codec-endpoint", "http://127.0.0.1:18099"])
    assert done.exit_code == 0, done.output
    command = started[-1]
    assert command[command.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:18099"
    assert "http://127.0.0.1:18099" in done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(data_dir: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    env = {**os.environ, "KBFLOW_DATA_DIR": str(data_dir)}
    env.pop("KBFLOW_CODEC_TOKEN", None)
    env.pop("KBFLOW_MASTER_KEYS", None)
    process = subprocess.Popen([str(KBFLOW), "codec-server", "--port", str(port), *args],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/decode", json={"payloads": []}, timeout=1)
            return process, port
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"codec server did not start: {process.communicate()}")


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.terminate()
    try:
        return process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def _issue(data_dir: Path, operator: str) -> str:
    """``kbflow operator issue`` as an operator runs it; the token it prints."""
    done = subprocess.run([str(KBFLOW), "operator", "issue", operator],
                          env={**os.environ, "KBFLOW_DATA_DIR": str(data_dir)},
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_kbflow_codec_server_decodes_for_an_operator_and_logs_no_token(
        tmp_path: Path) -> None:
    keys = KeyStore.open(Settings(data_dir=tmp_path))
    original = _plain(f.RELAAS.concerns)
    [encrypted] = _for_case(keys, CASE, original)
    service_token = load_token(Settings(data_dir=tmp_path))
    token = _issue(tmp_path, OPERATOR)
    process, port = _serve(tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        refused = httpx.post(f"{base}/decode", json=_body(encrypted))
        by_service = httpx.post(f"{base}/decode", json=_body(encrypted),
                                headers={"Authorization": f"Bearer {service_token}"})
        by_path = httpx.post(f"{base}/t/{token}/decode", json=_body(encrypted),
                             headers={"Origin": "http://127.0.0.1:8233"})
        by_bearer = httpx.post(f"{base}/decode", json=_body(encrypted),
                               headers={"Authorization": f"Bearer {token}"})
    finally:
        stdout, stderr = _stop(process)
    assert (refused.status_code, by_service.status_code) == (401, 403)
    assert _payloads(by_path) == [original]
    assert _payloads(by_bearer) == [original]
    assert [(e.operator_id, e.case_ref, e.payload_count)
            for e in DecodeLog(tmp_path / "outbox.sqlite3", read_only=True).entries()] == [
        (OPERATOR, "KB-2026-CODEC00001", 1), (OPERATOR, "KB-2026-CODEC00001", 1)]
    assert token not in stdout + stderr and service_token not in stdout + stderr
    assert f'--codec-endpoint {base} --codec-auth "Bearer <operator token>"' in stderr
    assert f"{base}/t/<operator token>" in stderr
    assert f'--codec-auth "Bearer $(cat {tmp_path / "codec.token"})"' in stderr
    assert "no operator has a live token" not in stderr
    assert '"POST /t/<token>/decode HTTP/1.1" 200' in stderr
    assert not f.leaked(stdout + stderr)


def test_kbflow_codec_server_shows_the_services_token_when_asked(tmp_path: Path) -> None:
    KeyStore.open(Settings(data_dir=tmp_path))
    token = load_token(Settings(data_dir=tmp_path))
    process, port = _serve(tmp_path, "--show-token", "--ui-origin", "http://ui.test:8080")
    try:
        preflight = httpx.options(f"http://127.0.0.1:{port}/decode", headers={
            "Origin": "http://ui.test:8080", "Access-Control-Request-Method": "POST"})
    finally:
        _, stderr = _stop(process)
    assert f'--codec-auth "Bearer {token}"' in stderr
    assert "no operator has a live token yet" in stderr  # none issued in this data dir
    assert preflight.headers["access-control-allow-origin"] == "http://ui.test:8080"


def test_kbflow_codec_server_needs_the_workers_key_store(tmp_path: Path) -> None:
    env = {**os.environ, "KBFLOW_DATA_DIR": str(tmp_path / "elsewhere")}
    done = subprocess.run([str(KBFLOW), "codec-server", "--port", str(_free_port())],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: no key store at {tmp_path / 'elsewhere' / 'keys.sqlite3'}; is "
        "KBFLOW_DATA_DIR the worker's?"]
    assert not (tmp_path / "elsewhere").exists()


def test_a_malformed_body_is_refused_without_echoing_it(http: TestClient,
                                                        bearer: dict[str, str]) -> None:
    answer = http.post("/encode", json={"payloads": [{"data": 42, "secret": "Fenna Fictief"}]},
                       headers=bearer)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert "Fenna" not in answer.text
    empty = http.post("/decode", json={}, headers=bearer)
    assert empty.status_code == 200 and empty.json() == {"payloads": []}
