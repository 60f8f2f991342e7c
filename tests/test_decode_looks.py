"""One processing-log entry per operator, case and look (issue 7, governed decoding).

``temporal workflow show --detailed --codec-endpoint …`` sends the codec server one
``/decode`` request per payload, so one look at a short case used to leave about twenty
entries of one payload each in the processing log (and as many lines in ``kbflow
disclosures``). The codec server now keeps the requests of one operator for one case that
follow within ``LOOK_GAP`` as one look, one entry whose count grows (``Looks``), ending
after ``LOOK_LONGEST``; each request is still on record before it is answered.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import DecodeLog, OutboxStore
from activities.pseudonyms import Pseudonymiser
from encryption.codec import ENCODING, CaseCodec
from encryption.codec_server import LOOK_GAP, LOOK_LONGEST, Looks, create_app
from encryption.keys import KeyStore
from encryption.operators import OperatorStore
from kbflow.processing_log import DecodeEntry
from kbflow.scenario import EXAMPLES_DIR
from kbflow.settings import Settings, installed_binary, workflow_id
from starter import inputs
from starter.cases import send_event, start_case
from worker import build_worker, connect

OPERATOR = "rvdk-ops-017"
CASE = "kb-case-KB-2026-7K4M2XCH-R"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def _encrypted(keys: KeyStore, scope: str) -> dict[str, Any]:
    codec = CaseCodec(keys, scope)
    [payload] = asyncio.run(codec.encode([Payload(metadata={"encoding": b"json/plain"},
                                                  data=b'"Fenna Fictief"')]))
    return {"metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
            "data": base64.b64encode(payload.data).decode()}


def test_requests_within_the_gap_are_one_look_and_a_look_ends(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    keys, operators = KeyStore.open(settings), OperatorStore.open(settings)
    bearer = {"Authorization": f"Bearer {operators.issue(OPERATOR)}"}
    other = {"Authorization": f"Bearer {operators.issue('dtv-ops-002')}"}
    log, clock = DecodeLog(settings.outbox_path), _Clock()
    payload = {"payloads": [_encrypted(keys, CASE)]}

    def entries() -> list[tuple[str, int, dt.datetime]]:
        return [(e.operator_id, e.payload_count, e.at) for e in log.entries()]

    with TestClient(create_app(keys, operators, log, [], clock=clock)) as http:
        def decode(at: dt.timedelta, headers: dict[str, str] = bearer) -> None:
            clock.now = T0 + at
            assert http.post("/decode", json=payload, headers=headers).status_code == 200

        decode(dt.timedelta(0))
        decode(LOOK_GAP)  # the gap, not more: the same look
        decode(LOOK_GAP * 2)
        assert entries() == [(OPERATOR, 3, T0)]  # on record as it grew
        decode(LOOK_GAP * 2, other)  # another operator's look is their own
        decode(LOOK_GAP * 3 + dt.timedelta(seconds=1))  # past the gap: a new look
        assert entries() == [(OPERATOR, 3, T0), ("dtv-ops-002", 1, T0 + LOOK_GAP * 2),
                             (OPERATOR, 1, T0 + LOOK_GAP * 3 + dt.timedelta(seconds=1))]

    # A look kept busy (a page on auto refresh) ends after LOOK_LONGEST all the same.
    looks, at = Looks(), T0
    first = looks.extended(OPERATOR, CASE, 1, at, "r1")
    looks.keep(OPERATOR, CASE, first)
    while at - T0 <= LOOK_LONGEST:
        at += LOOK_GAP
        look = looks.extended(OPERATOR, CASE, 1, at, f"r-{at:%H%M%S}")
        looks.keep(OPERATOR, CASE, look)
    assert look.request_id != "r1" and look.payload_count == 1 and look.first_at == at


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _CountingLog(DecodeLog):
    """A decode log that counts the codec server's requests (one ``record`` each)."""

    requests = 0

    def record(self, entries: list[DecodeEntry]) -> None:
        type(self).requests += 1
        super().record(entries)


@contextmanager
def _codec_server(settings: Settings, log: DecodeLog) -> Iterator[str]:
    port = _free_port()
    app = create_app(KeyStore.open(settings), OperatorStore.open(settings, read_only=True),
                     log, [])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="codec-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "no codec server"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


async def _show(address: str, wid: str, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    process = await asyncio.create_subprocess_exec(
        str(installed_binary("temporal")), "workflow", "show", "-w", wid, "--address",
        address, *extra, "--disable-config-file", "--disable-config-env",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode(errors="replace")
    return out.decode()


def _encrypted_payloads(node: Any) -> int:
    """How many payloads of a history's JSON form (no codec) are kbflow ciphertext."""
    if isinstance(node, dict):
        metadata = node.get("metadata")
        own = int(isinstance(metadata, dict) and
                  base64.b64decode(metadata.get("encoding", "")) == ENCODING)
        return own + sum(_encrypted_payloads(value) for value in node.values())
    if isinstance(node, list):
        return sum(_encrypted_payloads(value) for value in node)
    return 0


async def test_a_temporal_workflow_show_detailed_is_one_entry(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    address = dev_server.client.service_client.config.target_host
    settings = Settings(temporal_address=address, namespace=dev_server.client.namespace,
                        task_queue=f"kbflow-looks-{uuid.uuid4()}", data_dir=tmp_path)
    keys = KeyStore.open(settings)
    Pseudonymiser.load(settings)
    client = await connect(settings, keys)
    scenario = inputs.scenario(EXAMPLES_DIR / "03_ots_advice_requested.json")
    start = inputs.case_start(scenario.case)
    wid = workflow_id(start.case_ref)
    async with build_worker(client, settings.task_queue, OutboxStore(settings, keys=keys)):
        await start_case(client, settings, start)
        for item in scenario.events[:3]:
            await send_event(client, start.case_ref, item.event,
                             inputs.event_body(item.event, item.body))
        encrypted = _encrypted_payloads(json.loads(await _show(address, wid, "--output",
                                                               "json")))
        token = OperatorStore.open(settings).issue(OPERATOR)
        log = _CountingLog(settings.outbox_path)
        with _codec_server(settings, log) as endpoint:
            shown = await _show(address, wid, "--detailed", "--codec-endpoint", endpoint,
                                "--codec-auth", f"Bearer {token}")
        await client.get_workflow_handle(wid).terminate("test finished")
    assert start.case_ref in shown
    assert encrypted > 5 and _CountingLog.requests > 1  # the CLI asks once per payload
    assert [(e.operator_id, e.case_ref, e.payload_count) for e in log.entries()] == [
        (OPERATOR, start.case_ref, encrypted)]
