"""The remote codec server (``encryption/codec_server.py``) and ``kbflow codec-server``.

Through FastAPI's TestClient: the token (Bearer and path form), the UI origin and CORS,
round trips, payloads of a case's workflow context, erased cases and tampering. Then the
command itself as a subprocess: its instructions, and an access log without the token.
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

from encryption.codec import ENCODING, KEY_ID, CaseCodec
from encryption.codec_server import (
    JsonPayload,
    TokenRedactingFilter,
    access_log_config,
    create_app,
    load_token,
    redact_token,
)
from encryption.keys import KeyStore
from kbflow.settings import Settings, workflow_id
from starter.dev_server import DevServerConfig
from tests import factories as f

TOKEN = "test-codec-token-0123456789abcdef"
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
def http(keys: KeyStore) -> Iterator[TestClient]:
    with TestClient(create_app(keys, TOKEN, [UI])) as client:
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


BEARER = {"Authorization": f"Bearer {TOKEN}"}

# ---- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["encode", "decode"])
@pytest.mark.parametrize(("path", "headers"), [
    ("/{op}", {}),
    ("/{op}", {"Authorization": "Bearer wrong-token"}),
    ("/{op}", {"Authorization": f"Basic {TOKEN}"}),
    ("/{op}", {"Authorization": TOKEN}),
    ("/t/wrong-token/{op}", {}),
    ("/t/{token}x/{op}", {}),
], ids=["no-token", "wrong-bearer", "basic-scheme", "bare-token", "wrong-path-token",
        "longer-path-token"])
def test_a_request_without_the_token_is_401(http: TestClient, operation: str, path: str,
                                            headers: dict[str, str]) -> None:
    url = path.format(op=operation, token=TOKEN)
    response = http.post(url, json=_body(_plain("x")), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "payloads" not in response.text


def test_the_token_is_checked_before_the_body(http: TestClient) -> None:
    assert http.post("/decode", content=b"not json").status_code == 401
    assert http.post("/t/nope/decode", json={"nothing": 1}).status_code == 401


@pytest.mark.parametrize("url", ["/decode", f"/t/{TOKEN}/decode"])
def test_a_foreign_origin_is_403_even_with_the_token(http: TestClient, url: str) -> None:
    response = http.post(url, json=_body(_plain("x")),
                         headers={**BEARER, "Origin": FOREIGN})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


def test_the_ui_origin_is_served_with_cors_headers(http: TestClient, keys: KeyStore) -> None:
    [encrypted] = _for_case(keys, CASE, _plain("x"))
    response = http.post(f"/t/{TOKEN}/decode", json=_body(encrypted),
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


def test_a_preflight_from_a_foreign_origin_is_not_allowed(http: TestClient) -> None:
    response = http.options(f"/t/{TOKEN}/decode", headers={
        "Origin": FOREIGN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-namespace,authorization",
    })
    assert response.status_code >= 400
    assert "access-control-allow-origin" not in response.headers


# ---- encoding and decoding --------------------------------------------------------------


@pytest.mark.parametrize(("url", "headers"), [("/{op}", BEARER), (f"/t/{TOKEN}/{{op}}", {})],
                         ids=["bearer", "path-token"])
def test_encode_then_decode_returns_the_original(http: TestClient, url: str,
                                                 headers: dict[str, str]) -> None:
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


def test_a_payload_of_a_case_decodes_through_the_server(http: TestClient,
                                                        keys: KeyStore) -> None:
    original = _plain(f.RULING_SUMMARY)
    [encrypted] = _for_case(keys, CASE, original)
    assert encrypted.metadata[KEY_ID].decode() == keys.key_for_scope(CASE)[0]
    response = http.post("/decode", json=_body(encrypted), headers=BEARER)
    assert response.status_code == 200
    assert _payloads(response) == [original]


def test_unencrypted_payloads_pass_through_decode(http: TestClient) -> None:
    # Histories recorded before encryption still show.
    original = _plain("no personal data")
    response = http.post("/decode", json=_body(original), headers=BEARER)
    assert _payloads(response) == [original]


def test_a_payload_of_an_erased_case_is_not_decoded(tmp_path: Path) -> None:
    # The worker (or `kbflow erase`) erases; the codec server is another process with its
    # own KeyStore, which has just decoded the case (so a caching store holds its key).
    worker_keys = KeyStore.open(Settings(data_dir=tmp_path))
    [erased] = _for_case(worker_keys, CASE, _plain(f.RELAAS.concerns))
    [kept] = _for_case(worker_keys, OTHER_CASE, _plain(f.GOALS[0]))
    with TestClient(create_app(KeyStore.open(Settings(data_dir=tmp_path)), TOKEN, [UI])) as http:
        assert http.post("/decode", json=_body(erased), headers=BEARER).status_code == 200
        assert worker_keys.destroy(CASE)
        # Refused the moment the erasure returned: no cached key is trusted.
        response = http.post("/decode", json=_body(erased), headers=BEARER)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail.startswith("cannot decode: data key dk-")
        assert detail.endswith("destroyed (case erased)")
        assert not f.leaked(response.text)
        # The other case still decodes.
        other = http.post("/decode", json=_body(kept), headers=BEARER)
        assert _payloads(other) == [_plain(f.GOALS[0])]
        # A batch holding an erased payload decodes nothing: no partial plaintext.
        mixed = http.post("/decode", json=_body(kept, erased), headers=BEARER)
        assert mixed.status_code == 422
        assert not f.leaked(mixed.text)


def test_an_erased_case_is_refused_by_the_server_that_erased_it(http: TestClient,
                                                                keys: KeyStore) -> None:
    [encrypted] = _for_case(keys, CASE, _plain(f.RELAAS.concerns))
    assert http.post("/decode", json=_body(encrypted), headers=BEARER).status_code == 200
    keys.destroy(CASE)  # the same store: its cache is dropped at once
    response = http.post("/decode", json=_body(encrypted), headers=BEARER)
    assert response.status_code == 422
    assert "erased" in response.json()["detail"]


def test_a_tampered_payload_is_refused(http: TestClient, keys: KeyStore) -> None:
    [encrypted] = _for_case(keys, CASE, _plain(f.RELAAS.concerns))
    data = bytearray(encrypted.data)
    data[-1] ^= 0x01
    tampered = Payload(metadata=dict(encrypted.metadata), data=bytes(data))
    response = http.post("/decode", json=_body(tampered), headers=BEARER)
    assert response.status_code == 422
    assert "authentication failed" in response.json()["detail"]
    assert not f.leaked(response.text)


def test_malformed_payloads_are_refused_in_one_line(http: TestClient) -> None:
    no_key_id = Payload(metadata={"encoding": ENCODING}, data=b"x" * 40)
    response = http.post("/decode", json=_body(no_key_id), headers=BEARER)
    assert (response.status_code, response.json()["detail"]) == (
        422, f"payload 0: no {KEY_ID} in its metadata")
    unknown_key = Payload(metadata={"encoding": ENCODING, KEY_ID: b"dk-unknown"},
                          data=b"x" * 40)
    response = http.post("/decode", json=_body(unknown_key), headers=BEARER)
    assert response.status_code == 422
    assert "dk-unknown: unknown" in response.json()["detail"]
    bad = {"payloads": [{"metadata": {"encoding": "%%%"}, "data": "!"}]}
    response = http.post("/decode", json=bad, headers=BEARER)
    assert (response.status_code, response.json()["detail"]) == (422, "payload 0: not base64")


# ---- the token stays out of logs -----------------------------------------------------------


def test_the_access_log_shows_no_token() -> None:
    assert redact_token(f"/t/{TOKEN}/decode") == "/t/<token>/decode"
    assert redact_token("/decode") == "/decode"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "POST", f"/t/{TOKEN}/decode", "1.1", 200),
                               None)
    assert TokenRedactingFilter().filter(record)
    assert TOKEN not in record.getMessage()
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


def test_the_dev_server_points_the_ui_at_the_codec_server(tmp_path: Path) -> None:
    config = DevServerConfig(host="127.0.0.1", port=7233, ui_port=8233, namespace="default",
                             db_file=tmp_path / "t.sqlite",
                             codec_endpoint="http://127.0.0.1:8081")
    command = config.command()
    index = command.index("--ui-codec-endpoint")
    assert command[index + 1] == "http://127.0.0.1:8081"
    plain = DevServerConfig(host="127.0.0.1", port=7233, ui_port=8233, namespace="default",
                            db_file=tmp_path / "t.sqlite")
    assert "--ui-codec-endpoint" not in plain.command()


def test_kbflow_server_passes_the_codec_port(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from starter import cli

    started: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, args: started.append(list(args)))
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    done = runner.invoke(cli.app, ["server", "--codec-port", "18099"])
    assert done.exit_code == 0, done.output
    command = started[-1]
    assert command[command.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:18099"
    assert "http://127.0.0.1:18099" in done.stdout
    done = runner.invoke(cli.app, ["server", "--codec-port", "0"])
    assert done.exit_code == 0, done.output
    assert "--ui-codec-endpoint" not in started[-1]


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


def test_kbflow_codec_server_decodes_a_case_and_logs_no_token(tmp_path: Path) -> None:
    keys = KeyStore.open(Settings(data_dir=tmp_path))
    original = _plain(f.RELAAS.concerns)
    [encrypted] = _for_case(keys, CASE, original)
    token = load_token(Settings(data_dir=tmp_path))
    process, port = _serve(tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        refused = httpx.post(f"{base}/decode", json=_body(encrypted))
        by_path = httpx.post(f"{base}/t/{token}/decode", json=_body(encrypted),
                             headers={"Origin": "http://127.0.0.1:8233"})
        by_bearer = httpx.post(f"{base}/decode", json=_body(encrypted),
                               headers={"Authorization": f"Bearer {token}"})
    finally:
        stdout, stderr = _stop(process)
    assert refused.status_code == 401
    assert _payloads(by_path) == [original]
    assert _payloads(by_bearer) == [original]
    assert token not in stdout + stderr
    assert f"--codec-endpoint {base}" in stderr
    assert f'--codec-auth "Bearer $(cat {tmp_path / "codec.token"})"' in stderr
    assert f"{base}/t/<token>" in stderr
    assert '"POST /t/<token>/decode HTTP/1.1" 200' in stderr
    assert not f.leaked(stdout + stderr)


def test_kbflow_codec_server_shows_the_token_when_asked(tmp_path: Path) -> None:
    KeyStore.open(Settings(data_dir=tmp_path))
    token = load_token(Settings(data_dir=tmp_path))
    process, port = _serve(tmp_path, "--show-token", "--ui-origin", "http://ui.test:8080")
    try:
        preflight = httpx.options(f"http://127.0.0.1:{port}/decode", headers={
            "Origin": "http://ui.test:8080", "Access-Control-Request-Method": "POST"})
    finally:
        _, stderr = _stop(process)
    assert f"http://127.0.0.1:{port}/t/{token}" in stderr
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


def test_a_malformed_body_is_refused_without_echoing_it(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from encryption.codec_server import create_app
    from encryption.keys import KeyStore

    client = TestClient(create_app(KeyStore.open(Settings(data_dir=tmp_path)), "t0ken", ["http://localhost:8233"]))
    answer = client.post("/encode", json={"payloads": [{"data": 42, "secret": "Fenna Fictief"}]},
                         headers={"Authorization": "Bearer t0ken"})
    assert answer.status_code == 422
    assert "Fenna" not in answer.text
    empty = client.post("/decode", json={}, headers={"Authorization": "Bearer t0ken"})
    assert empty.status_code == 200 and empty.json() == {"payloads": []}
