"""Logs carry case refs, steps and ids, never personal data (kbflow/logs.py, CONVENTIONS.md).

A whole case runs through the worker with JSON logging configured exactly as the worker
configures it (``configure_logging(json=True)``), including a refused event whose body
carries personal values and a reply deadline that sends a reminder. Everything written to
stderr (Python loggers and the SDK core alike) is captured at the file descriptor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore
from kbflow.case import EventOutcome
from kbflow.logs import PERSONAL_KEYS, configure_logging, drop_personal_fields
from kbflow.process import PROCESS_TABLE, Party, Step
from kbflow.settings import installed_binary, workflow_id
from tests import factories as f
from tests.conftest import retention_of, time_skipping, time_skipping_server
from tests.test_case_workflow import completed_status, in_case_time, plausible
from worker import build_worker
from workflows.case_workflow import CaseWorkflow
from workflows.operator_log import step_of


@pytest_asyncio.fixture
async def own_env(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own: its case's retention workflow ends on it
    (on the shared server that would stop time skipping for later tests)."""
    async with time_skipping_server(keys) as environment:
        yield environment


async def test_a_whole_case_logs_no_personal_data(
    restore_logging: None, capfd: pytest.CaptureFixture[str], own_env: WorkflowEnvironment,
    task_queue: str, store: OutboxStore,
) -> None:
    env, client = own_env, own_env.client
    async with build_worker(client, task_queue, store):
        await _a_whole_case(capfd, env, client, task_queue, store)


async def _a_whole_case(capfd: pytest.CaptureFixture[str], env: WorkflowEnvironment,
                        client: Client, task_queue: str, store: OutboxStore) -> None:
    configure_logging(json=True)  # as the worker does; in the test, so capfd sees stderr
    start = f.case_start(persons=(f.CHILD.model_copy(update={"v_number": f.V_NUMBERS[0]}),
                                  f.PARENT, f.SIBLING))
    start = await plausible(client, start)
    handle = await client.start_workflow(CaseWorkflow.run, start,
                                         id=workflow_id(start.case_ref), task_queue=task_queue)
    events = [f.announce(), f.residence_ind(v_numbers=((0, f.V_NUMBERS[0]),
                                                       (2, f.V_NUMBERS[2]))), f.residence_dtv(),
              f.decision(), f.result(), f.ruling(), f.availability_request()]
    for ev in events:
        await handle.execute_update(ev.name, await in_case_time(handle, ev.event),
                                    result_type=EventOutcome)
    # A refused event with personal values in its body, and one with a malformed body.
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("court_ruling", await in_case_time(handle, f.ruling().event),
                                    result_type=EventOutcome)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            "advice_availability",
            {"sender": "DTV", "idempotency_key": f.new_key(), "advice_available": f.CHILD.name,
             "v_number": [{"person": 0, "v_number": f.V_NUMBERS[1]}]},
            result_type=EventOutcome)
    # DT&V misses the step-7 deadline: a reminder is sent, then escalated.
    reply_due = PROCESS_TABLE[Step.ADVICE_AVAILABILITY].reply_due
    assert reply_due is not None
    await env.sleep(reply_due + dt.timedelta(days=8))
    later = [f.availability(False), f.advice_request(), f.advice(), f.rejection(),
             f.handover()]
    for ev in later:
        await handle.execute_update(ev.name, ev.event, result_type=EventOutcome)
    packets = store.packets(start.case_ref)  # before the run ends (it may erase them)
    assert store.reminders(start.case_ref)  # the reminder path ran
    status = await completed_status(handle)  # no result(): see its docstring
    assert status.end_state is not None
    async with time_skipping(client):  # its retention workflow keeps it, then erases it
        await retention_of(client, start.case_ref).result()

    err = capfd.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    delivered = [r for r in records if r.get("event") == "packet delivered"]
    # The log is there and says what happened (so this test can fail)...
    assert start.case_ref in err
    assert len(delivered) == len(packets)
    assert {r["case_ref"] for r in delivered} == {start.case_ref}
    assert {r["step"] for r in delivered} == set(status.steps_done)
    assert any(r.get("event") == "reminder sent" and r.get("party") == Party.DTV.value
               for r in records)
    # Every accepted and refused event, the escalation, the retention end and the erasure
    # are logged (workflows/operator_log.py, activities/delivery.py), with the case's ids.
    accepted = [r for r in records if r.get("event") == "event accepted"]
    assert [(r["event_name"], r["sender"]) for r in accepted] == [
        (ev.name, ev.event.sender.value) for ev in events + later]
    assert all(r["step"] == step_of(r["event_name"]) for r in accepted)
    refused = [r for r in records if r.get("event") == "event refused"]
    assert [(r["event_name"], r["sender"], r["code"]) for r in refused] == [
        ("court_ruling", "RVDK", "not_now"), ("advice_availability", "DTV", "malformed")]
    escalated = [r for r in records if r.get("event") == "reply escalated"]
    assert [(r["party"], r["awaited_event"], r["level"]) for r in escalated] == [
        ("DTV", "advice_availability", "warning")]
    assert [r["event"] for r in records if r.get("event") in (
        "retention ended", "case erased")] == ["retention ended", "case erased"]
    assert [r["reason"] for r in records if r.get("event") == "case erased"] == [
        "retention-ended"]
    for r in accepted + refused + escalated:
        assert (r["case_ref"], r["workflow_id"]) == (start.case_ref, handle.id)
    # ...and holds no name, address, place, date of birth, V-nummer or relaas.
    assert f.leaked(err) == []
    for person in start.persons:
        assert person.date_of_birth.strftime("%d-%m-%Y") not in err
        assert person.date_of_birth.strftime("%Y%m%d") not in err


def test_drop_personal_fields_masks_personal_keys_and_keeps_the_message() -> None:
    event = {"event": "packet delivered", "case_ref": "KB-2026-ABCDEF1234", "step": 3,
             **{key: f"{f.CHILD.name} {f.V_NUMBERS[0]}" for key in PERSONAL_KEYS
                if key != "event"}}
    masked = drop_personal_fields(None, "info", dict(event))
    assert masked["event"] == "packet delivered"
    assert masked["case_ref"] == "KB-2026-ABCDEF1234" and masked["step"] == 3
    assert f.leaked(json.dumps(masked)) == []
    assert all(masked[key] == "[removed]" for key in PERSONAL_KEYS if key != "event")


def test_personal_keyword_in_a_log_call_is_masked(
    restore_logging: None, capfd: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json=True)
    log = structlog.get_logger("kbflow.test")
    log.info("case opened", case_ref="KB-2026-ABCDEF1234", name=f.CHILD.name,
             date_of_birth=f.CHILD.date_of_birth.isoformat(), v_number=f.V_NUMBERS[0],
             relaas=f.RELAAS.concerns)
    logging.getLogger("temporalio.test").warning("activity for %s", "KB-2026-ABCDEF1234")
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == ["case opened", "activity for KB-2026-ABCDEF1234"]
    assert lines[0]["case_ref"] == "KB-2026-ABCDEF1234"
    assert f.leaked(err) == []


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


async def test_the_sdk_cores_lines_reach_the_json_log_and_nothing_reaches_stdout(
    tmp_path: Path,
) -> None:
    """``kbflow worker`` against a Temporal server that then goes away: the SDK core's
    warnings (its polls retried) are JSON lines on stderr, logger ``temporalio.core`` with
    the core's target and fields; stdout stays empty (the core's own console output is
    ANSI-coloured text)."""
    server = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(installed_binary("temporal-test-server")))
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = {**os.environ, "TEMPORAL_ADDRESS": server.client.service_client.config.target_host,
           "KBFLOW_DATA_DIR": str(tmp_path / "data"), "KBFLOW_MASTER_KEYS": "",
           "KBFLOW_PSEUDONYM_KEY": "", "KBFLOW_CODEC_TOKEN": "", "KBFLOW_PARTY_KEYS_DIR": "",
           "KBFLOW_METRICS_PORT": "", "KBFLOW_TASK_QUEUE": "kbflow-probe"}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        worker = subprocess.Popen([str(installed_binary("kbflow")), "worker"], env=env,
                                  stdout=stdout, stderr=stderr)
    try:
        # The worker polls: it takes the first task of a workflow (of a type it lacks).
        probe = await server.client.start_workflow("NoSuchWorkflow", id="probe",
                                                   task_queue="kbflow-probe")
        await _until_async(lambda: _task_started(probe), 60)
        await server.shutdown()
        await _until(lambda: any('"temporalio.core"' in line and "Unavailable" in line
                                 for line in _lines(err)), 90)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=45)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert out.read_bytes() == b""
    lines = _lines(err)
    assert [line for line in lines if not line.startswith("{")] == [], err.read_text()
    records = [json.loads(line) for line in lines]  # every line is JSON
    core = [r for r in records if r["logger"] == "temporalio.core"]
    assert core and all(r["level"] in ("warning", "error") and r["core"]["target"]
                        for r in core)
    assert any("Unavailable" in r["core"].get("error", "") for r in core)
    assert "\x1b[" not in err.read_text(encoding="utf-8")


async def _until(condition: Callable[[], bool], bound: float) -> None:
    """Wait until ``condition()`` holds, polling, at most ``bound`` seconds."""
    async def holds() -> bool:
        return condition()
    await _until_async(holds, bound)


async def _until_async(condition: Callable[[], Awaitable[bool]], bound: float) -> None:
    """Wait until ``await condition()`` holds, polling, at most ``bound`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not await condition():
        assert loop.time() < deadline, f"not within {bound} s"
        await asyncio.sleep(0.2)


async def _task_started(handle: WorkflowHandle[Any, Any]) -> bool:
    history = await handle.fetch_history()
    return any(event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
               for event in history.events)
