"""The worker's Prometheus endpoint (kbflow/metrics.py, workflows/operator_log.py): the
SDK runtime's series plus kbflow's, with fixed, non-personal labels.

A worker runs on ``kbflow.metrics.runtime`` with a free port, against the session's
time-skipping server; a case gets refusals, acceptances, a repeat, a failed delivery
attempt, a missed deadline (reminders and escalations, by skipping time) and an erasure;
then ``/metrics`` is scraped with httpx and its samples are compared with what happened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.common import MetricMeter
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.outbox_store import OutboxStore
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from encryption.storage import StorageError
from kbflow import metrics
from kbflow.case import EventOutcome, EventRefused, RefusalCode, rule_of
from kbflow.events import ErasureReason, ErasureRequest
from kbflow.items import PersonVNumber
from kbflow.logs import configure_logging
from kbflow.packets import Packet
from kbflow.process import ESCALATION_GRACE, PROCESS_TABLE, Party, Step
from kbflow.settings import Settings, workflow_id
from tests import factories as f
from tests.record_histories import fixture_keys
from tests.test_case_state import started
from tests.test_case_workflow import plausible
from worker import build_worker, connect
from workflows.case_workflow import CaseWorkflow
from workflows.notification_workflow import NotificationWorkflow
from workflows.operator_log import OperatorLog
from workflows.retention_workflow import RetentionWorkflow

Labels = dict[str, str]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, list[tuple[Labels, float]]]:
    """The samples of a Prometheus text exposition, by series name."""
    samples: dict[str, list[tuple[Labels, float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        samples.setdefault(name, []).append(
            (dict(_LABEL.findall(labels or "")), float(value)))
    return samples


def value(samples: dict[str, list[tuple[Labels, float]]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def scrape_until(url: str, ready: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
                       bound: float = 30.0) -> tuple[str, dict[str, list[tuple[Labels, float]]]]:
    """Scrape ``url`` until every (series, labels) in ``ready`` has at least its value, or
    ``bound`` seconds pass (the last scrape is returned either way)."""
    deadline = asyncio.get_running_loop().time() + bound
    async with httpx.AsyncClient() as http:
        while True:
            response = await http.get(url)
            response.raise_for_status()
            samples = parse(response.text)
            if all(value(samples, name, **dict(labels)) >= want
                   for (name, labels), want in ready.items()):
                return response.text, samples
            if asyncio.get_running_loop().time() > deadline:
                return response.text, samples
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def metrics_port() -> tuple[Runtime, int]:
    """One runtime with a metrics endpoint for this module (a runtime keeps its port)."""
    port = free_port()
    return metrics.runtime(port, host="127.0.0.1"), port


async def test_the_endpoint_serves_kbflow_series_after_a_case(
    env: WorkflowEnvironment, keys: KeyStore, tmp_path: Path, task_queue: str,
    metrics_port: tuple[Runtime, int], monkeypatch: pytest.MonkeyPatch,
    restore_logging: None, capfd: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json=True)  # as the worker does
    runtime, port = metrics_port
    settings = Settings(temporal_address=env.client.service_client.config.target_host,
                        namespace=env.client.namespace, data_dir=tmp_path)
    client: Client = await connect(settings, keys, runtime)
    store = OutboxStore(settings, keys=keys)
    # The first delivery attempt of a step-3 packet fails (a storage fault); the retry works.
    deliver, failed = store.deliver, list[str]()

    def deliver_once_failing(packet: Packet) -> bool:
        if packet.step == Step.RESIDENCE_INFORMATION and not failed:
            failed.append(packet.packet_id)
            raise StorageError(f"cannot write {settings.outbox_path}: disk full")
        return deliver(packet)

    monkeypatch.setattr(store, "deliver", deliver_once_failing)
    start = await plausible(client, f.case_start())
    async with build_worker(client, task_queue, store):
        handle = await client.start_workflow(CaseWorkflow.run, start,
                                             id=workflow_id(start.case_ref),
                                             task_queue=task_queue)
        # Refused: IND may not announce; an unknown event (its name and body personal).
        wrong = f.announce(sender=Party.IND, weigh=True)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(wrong.name, wrong.event, result_type=EventOutcome)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(f.CHILD.name, {"sender": "RVDK", "note": f.CHILD.name},
                                        result_type=EventOutcome)
        # Accepted: the announcement, IND's reply, and a repeat of that reply.
        announce, reply = f.announce(), f.residence_ind()
        for ev in (announce, reply, reply):
            await handle.execute_update(ev.name, ev.event, result_type=EventOutcome)
        # DT&V misses its step-3 deadline: reminded, then escalated.
        reply_due = PROCESS_TABLE[Step.RESIDENCE_INFORMATION].reply_due
        assert reply_due is not None
        await env.sleep(reply_due + ESCALATION_GRACE + dt.timedelta(days=1))
        await handle.execute_update(
            CaseWorkflow.erase, ErasureRequest(requested_by="fg-test-operator",
                                               reason=ErasureReason.COURT_ORDER))
        await handle.result()

        accepted, refused = "kbflow_events_accepted_total", "kbflow_events_refused_total"
        expected = {
            (accepted, (("event", "announce_investigation"), ("sender", "RVDK"),
                        ("duplicate", "false"))): 1,
            (accepted, (("event", "residence_information"), ("sender", "IND"),
                        ("duplicate", "false"))): 1,
            (accepted, (("event", "residence_information"), ("sender", "IND"),
                        ("duplicate", "true"))): 1,
            (refused, (("event", "announce_investigation"), ("sender", "IND"),
                       ("code", RefusalCode.WRONG_SENDER.value))): 1,
            (refused, (("event", "unknown"), ("sender", "RVDK"),
                       ("code", RefusalCode.UNKNOWN_EVENT.value))): 1,
            ("kbflow_packets_delivered_total", (("step", "3"), ("recipient", "RVDK"))): 1,
            ("kbflow_reminders_total", (("party", "DTV"),
                                        ("event", "residence_information"))): 1,
            ("kbflow_escalations_total", (("party", "DTV"),
                                          ("event", "residence_information"))): 1,
            ("kbflow_erasures_total", (("reason", "court-order"),)): 1,
            ("kbflow_delivery_failures_total", (("activity_type", "deliver_packet"),
                                                ("error", "StorageError"))): 1,
        }
        text, samples = await scrape_until(f"http://127.0.0.1:{port}/metrics", expected)

    for (name, labels), want in expected.items():
        assert value(samples, name, **dict(labels)) == want, (name, labels, samples.get(name))
    assert value(samples, "kbflow_packets_delivered_total", step="1") >= 1  # the report
    # The SDK runtime's own series are there too, schedule-to-start latencies among them
    # (in seconds: buckets below 1), and every series the README's alert rules name.
    assert "temporal_workflow_task_schedule_to_start_latency_bucket" in samples
    assert "temporal_activity_schedule_to_start_latency_bucket" in samples
    assert any(float(found["le"]) < 1 for found, _ in
               samples["temporal_activity_schedule_to_start_latency_bucket"])
    assert "temporal_workflow_completed_total" in samples
    rules = _readme_section("Logs and metrics").split("```yaml", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"\b((?:kbflow|temporal)_[a-z_]+)\b", rules))
    assert len(named) == 3 and named <= set(samples), named - set(samples)
    # The SDK's meters add their labels to kbflow's series.
    for series_name in {name for name, _ in expected}:
        for found, _ in samples[series_name]:
            assert {"namespace", "task_queue", "service_name"} <= set(found), series_name
            assert {"workflow_type", "activity_type"} & set(found), series_name
    # The failed attempt is logged, by its exception type.
    records = [json.loads(line) for line in capfd.readouterr().err.splitlines()
               if line.startswith("{")]
    assert [(r["activity"], r["attempt"], r["error"], r["level"], r["case_ref"])
            for r in records if r.get("event") == "activity attempt failed"] == [
        ("deliver_packet", 1, "StorageError", "warning", start.case_ref)]
    # kbflow's label values are from fixed lists; no case ref, no personal value anywhere.
    for series in metrics.SERIES:
        for found, _ in samples.get(series.exposed_name, []):
            assert set(series.labels) <= set(found)
    assert start.case_ref not in text
    assert f.leaked(text) == []


def test_no_metrics_port_means_no_endpoint() -> None:
    assert Settings.from_env({}).metrics_port is None
    assert Settings.from_env({"KBFLOW_METRICS_PORT": "9464"}).metrics_port == 9464
    assert metrics.runtime(None).metric_meter is MetricMeter.noop  # nothing is served
    assert metrics.runtime(free_port()).metric_meter is not MetricMeter.noop


HISTORIES = sorted((Path(__file__).parent / "histories").rglob("*.json"))


async def test_replaying_histories_logs_and_counts_nothing(
    metrics_port: tuple[Runtime, int], restore_logging: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Every committed history replays with ``OperatorLog`` in place, and the replays add
    no kbflow sample and no operator log line: what a case did is logged and counted once,
    when it happens, not again when a worker rebuilds the case from its history."""
    runtime, port = metrics_port
    url = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient() as http:
        before = parse((await http.get(url)).text)
    replayer = Replayer(workflows=[CaseWorkflow, RetentionWorkflow, NotificationWorkflow],
                        interceptors=[OperatorLog()],
                        data_converter=encrypted_data_converter(fixture_keys(replay=True)),
                        runtime=runtime)
    assert len(HISTORIES) >= 21
    configure_logging(json=True)  # as the worker does
    for path in HISTORIES:
        history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (path, result.replay_failure)
    async with httpx.AsyncClient() as http:
        after = parse((await http.get(url)).text)
    assert {name: after[name] for name in after if name.startswith("kbflow_")} == {
        name: before[name] for name in before if name.startswith("kbflow_")}
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()
             if line.startswith("{")]
    assert [line for line in lines if line.get("logger") == "kbflow.operator"] == []


# ---- refusal codes, the README's tables, the worker's metrics port ------------------------

CODE_CASES: list[tuple[RefusalCode, Any, Any]] = [
    # (code, events before, the refused event; admitted as the workflow's validator does)
    (RefusalCode.WRONG_SENDER, list, lambda: f.announce(sender=Party.IND)),
    (RefusalCode.NOT_NOW, lambda: [f.announce()], f.announce),
    (RefusalCode.NOT_AWAITED, lambda: [f.announce(), f.residence_ind()], f.residence_ind),
    (RefusalCode.NO_WEIGHING, lambda: [f.announce()], lambda: f.residence_ind(weigh=False)),
    (RefusalCode.DUPLICATE_CONFLICT, lambda: [f.announce(key="rvdk-announce-000042")],
     lambda: f.residence_ind(key="rvdk-announce-000042")),
    (RefusalCode.CLOSED, lambda: [f.announce(), f.residence_ind(), f.residence_dtv(),
                                  f.decision(investigate=False)], f.announce),
    (RefusalCode.V_NUMBER_CONTRADICTION, lambda: [f.announce(), f.residence_ind()],
     lambda: f.residence_dtv(v_number=(PersonVNumber(person=0, v_number=f.V_NUMBERS[2]),))),
    (RefusalCode.RULING_DATE, f.to_awaiting_ruling,
     lambda: f.ruling(ruled_on=dt.date(2999, 1, 1))),
]


@pytest.mark.parametrize(("code", "before", "refused"), CODE_CASES,
                         ids=[case[0].value for case in CODE_CASES])
def test_each_refusal_carries_its_code(code: RefusalCode, before: Any, refused: Any) -> None:
    case = started(*before())
    event = refused()
    with pytest.raises(EventRefused) as error:
        case.state.admit(event.name, event.event, case.now + dt.timedelta(hours=1))
    assert error.value.code is code, str(error.value)


def test_an_unknown_event_is_refused_as_unknown_event() -> None:
    with pytest.raises(EventRefused) as error:
        rule_of("no_such_event")
    assert error.value.code is RefusalCode.UNKNOWN_EVENT


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    return text[start:text.find("\n## ", start + 1)]


def test_the_readme_lists_every_series_with_its_labels_and_every_refusal_code() -> None:
    section = _readme_section("Logs and metrics")
    rows = re.findall(r"^\| `(kbflow_[a-z_]+)` \| ([^|]*) \|", section, re.MULTILINE)
    assert {name: tuple(re.findall(r"`([a-z_]+)`", labels)) for name, labels in rows} == {
        series.exposed_name: series.labels for series in metrics.SERIES}
    listed = section[section.index("The codes"):section.index("A worker that rebuilds")]
    assert re.findall(r"`([a-z_0-9]+)`", listed.split(":", 1)[1]) == [
        code.value for code in RefusalCode]


def _cli_worker(env: dict[str, str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    from starter.cli import app

    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stderr


def test_a_metrics_port_in_use_or_malformed_stops_the_worker_in_one_line(
    tmp_path: Path, restore_logging: None,
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _cli_worker({"KBFLOW_DATA_DIR": str(tmp_path),
                                 "KBFLOW_METRICS_PORT": str(port)})
    assert code == 1
    assert err.startswith(f"error: cannot serve metrics on port {port}: ")
    assert len(err.strip().splitlines()) == 1
    code, err = _cli_worker({"KBFLOW_DATA_DIR": str(tmp_path), "KBFLOW_METRICS_PORT": "http"})
    assert (code, err.strip()) == (1, "error: KBFLOW_METRICS_PORT: not a port number (1-65535)")
