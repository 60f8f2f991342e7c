"""Canaries: no personal value rests or travels in the clear.

Issue "Personal data encrypted wherever it rests or travels". Every example scenario runs
to its end state on a real Temporal dev server (SQLite file in a temp dir, output to a
log file) with a worker in this process. Before it runs, every personal value in it is
replaced by a unique canary:

- free text (names, addresses, places, relaas, residence status, procedure history,
  goals, means, ruling summaries, the GI's name and contact, reports, advice, handover
  progress, dossier documents, the VV application, the weighing's note and ``by``):
  ``CANARY-<n>-xq``;
- V-nummers: unique ten-digit numbers;
- dates (date of birth, VV filing date, removal date): unique distinctive dates in the
  1930s, looked for as their ISO text (``1931-02-07``), which is how JSON carries them.

Not canaried, because they are no personal data and Temporal or the outbox index keep them
readable on purpose: case refs and workflow ids, idempotency keys (the update ids), party
codes, roles and other enum values, booleans and numbers. ``test_every_text_is_canaried``
fails when an example gains a text field that is in neither list.

After the run every canary is looked for, as bytes, in: the Temporal SQLite files (after
the server stopped), the server's log, everything this process wrote to stdout/stderr
(the worker's JSON log, the SDK core, the codec server), every file in the data dir (the
outbox store among them), and ``temporal workflow show --output json`` of every case
without a codec. None may be found.

Progress is readable without the codec (issue 7): with a plain client (the default data
converter, no codec) every case's static summary, memo (``CaseProgress``), search
attributes, current details (the ``__temporal_workflow_metadata`` query), activity and
timer summaries, and ``status`` and ``awaiting`` query results read as what the case is;
those query answers (not in history) join the haystacks, the memo, summaries and search
attributes are in ``workflow show``'s.

Controls, so that the search can fail: the canaries are found in the history decoded by
the codec server (``temporal workflow show --codec-endpoint``), and in the packets the
outbox store hands back; a case started with the unencrypted converter leaves its canaries
in the SQLite file and in the codec-less ``workflow show``; the worker's log names every
case.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
import uvicorn
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.outbox_store import DecodeLog, OutboxStore
from encryption.codec_server import TOKEN_ENV, create_app
from encryption.keys import KeyStore
from encryption.operators import OperatorStore
from kbflow import search_attributes
from kbflow.events import CaseStart
from kbflow.logs import configure_logging
from kbflow.progress import MEMO_KEY, CaseProgress
from kbflow.public import PublicText
from kbflow.scenario import Scenario, example_files
from kbflow.settings import Settings, installed_binary, workflow_id
from starter import inputs
from starter.cases import case_status, send_event, start_case
from starter.dev_server import DevServerConfig, SpawnedDevServer
from worker import build_worker, connect
from workflows.case_workflow import CaseWorkflow

#: Keys whose text values are personal: each value becomes a ``CANARY-<n>-xq``.
PERSONAL_TEXT = frozenset({
    "name", "address", "place_of_residence",  # persons (and the GI's name)
    "concerns", "history", "assistance",  # relaas
    "residence_status", "procedure_history", "summary", "contact", "rvdk_report",
    "gi_report", "return_perspective", "transferability", "handover_progress",
    "document",  # vv_application
    "note", "by",  # weighing
})
#: Keys whose values are lists of personal texts.
PERSONAL_TEXT_LISTS = frozenset({"goals", "means", "dossier_documents"})
#: Keys whose values are personal dates (ISO text in JSON).
PERSONAL_DATES = frozenset({"date_of_birth", "filed_on", "removal_date"})
#: Keys whose text values are codes or ids, not personal data (see the module docstring).
NOT_PERSONAL = frozenset({"sender", "idempotency_key", "reporter", "role", "measure",
                          "court_request", "decision", "kind",
                          # a ruling's date must lie between the report and today, so no
                          # canary date can be planted; it travels encrypted with its event
                          "ruled_on"})

#: Upper bound for one ``temporal`` CLI call; a healthy call takes well under a second.
CLI_TIMEOUT = 60.0
#: Bounds for the readiness polls (a case becoming idle, the codec server starting).
IDLE_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
STEP_TIMEOUT = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Canary:
    """One planted value and where it was planted."""

    value: str
    where: str


@dataclass
class CanaryCase:
    """An example scenario with its personal values replaced by canaries."""

    name: str
    scenario: Scenario
    canaries: list[Canary]
    start: CaseStart | None = None

    @property
    def case_ref(self) -> str:
        assert self.start is not None
        return self.start.case_ref


class _Planter:
    """Hands out unique canaries: texts, V-nummers and dates."""

    def __init__(self) -> None:
        self.prefix = "CANARY"
        self._numbers = itertools.count(1)

    def text(self) -> str:
        return f"{self.prefix}-{next(self._numbers)}-xq"

    def v_number(self) -> str:
        # A bijection on 0..10**10-1 (the factor is prime to 10): unique, irregular digits.
        return f"{(next(self._numbers) * 2654435761) % 10**10:010d}"

    def date(self) -> str:
        # From 2010 on: a child's date of birth must make it under 18 when it is reported.
        return (dt.date(2010, 1, 1) + dt.timedelta(days=next(self._numbers))).isoformat()


def _plant(value: Any, path: str, planter: _Planter, canaries: list[Canary]) -> Any:
    """``value`` with every personal leaf replaced by a fresh canary (recorded in
    ``canaries``); raises AssertionError on a text leaf that is neither personal nor
    known to be a code."""
    key = path.rsplit(".", 1)[-1].split("[", 1)[0]

    def planted(new: str) -> str:
        canaries.append(Canary(new, path))
        return new

    if isinstance(value, dict):
        return {k: _plant(v, f"{path}.{k}", planter, canaries) for k, v in value.items()}
    if isinstance(value, list):
        if key in PERSONAL_TEXT_LISTS:
            return [planted(planter.text()) for _ in value]
        return [_plant(v, f"{path}[{i}]", planter, canaries) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value  # booleans, numbers, null: no personal data
    if key in PERSONAL_TEXT:
        return planted(planter.text())
    if key == "v_number":
        return planted(planter.v_number())
    if key in PERSONAL_DATES:
        return planted(planter.date())
    assert key in NOT_PERSONAL, f"{path}: text field neither canaried nor known not personal"
    return value


def canary_cases(planter: _Planter | None = None) -> list[CanaryCase]:
    """Every example scenario with canaries for its personal values."""
    planter = planter or _Planter()
    cases = []
    for path in example_files():
        document = Scenario.load(path).model_dump(mode="json")
        canaries: list[Canary] = []
        document["case"] = _plant(document["case"], f"{path.stem}:case", planter, canaries)
        for index, event in enumerate(document["events"]):
            event["body"] = _plant(event["body"], f"{path.stem}:events[{index}]."
                                                  f"{event['event']}", planter, canaries)
        cases.append(CanaryCase(path.stem, Scenario.model_validate(document), canaries))
    return cases


def control_case(planter: _Planter, case: CanaryCase) -> tuple[dict[str, Any], list[Canary]]:
    """``case``'s start planted afresh (texts ``CONTROL-<n>-xq``; V-nummers and dates
    that no canary of ``planter``'s earlier cases has), for the unencrypted control."""
    canaries: list[Canary] = []
    planter.prefix = "CONTROL"
    start = _plant(case.scenario.case, "control:case", planter, canaries)
    return start, canaries


def test_every_text_is_canaried() -> None:
    cases = canary_cases()  # raises on a text field that is neither personal nor a code
    values = [canary.value for case in cases for canary in case.canaries]
    assert len(values) == len(set(values))
    assert not any(a != b and a in b for a in values for b in values)
    for case in cases:  # the canaried scenario is still valid, so it runs as the original
        inputs.case_start(case.scenario.case)
        for item in case.scenario.events:
            inputs.event_body(item.event, item.body)


# ---- the run ------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class _HeadlessConfig(DevServerConfig):
    """``kbflow server``'s dev server, without the Web UI and logging at info level (so
    that its log has something in it to search)."""

    def command(self) -> list[str]:
        return [*super().command(), "--headless", "--log-level", "info"]


@contextlib.contextmanager
def _restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


@contextlib.contextmanager
def _codec_server(settings: Settings) -> Iterator[str]:
    """``encryption.codec_server`` in a uvicorn thread; yields its endpoint."""
    port = _free_port()
    app = create_app(KeyStore.open(settings), OperatorStore.open(settings, read_only=True),
                     DecodeLog(settings.outbox_path), [])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1",
                                           port=port, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, name="codec-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + IDLE_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "the codec server exited"
            assert time.monotonic() < deadline, "the codec server did not start"
            time.sleep(POLL_INTERVAL)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(IDLE_TIMEOUT)


async def _run_case(client: Client, settings: Settings, case: CanaryCase) -> None:
    """Start the case and send every event; check it ended as the scenario expects."""
    case.start = inputs.case_start(case.scenario.case)  # a fresh opaque case ref
    await start_case(client, settings, case.start)
    for item in case.scenario.events:
        await send_event(client, case.case_ref, item.event,
                         inputs.event_body(item.event, item.body), STEP_TIMEOUT)
    status = await case_status(client, case.case_ref, STEP_TIMEOUT)
    assert (status.phase, status.end_state, tuple(status.steps_done)) == (
        case.scenario.expected_phase, case.scenario.expected_end_state,
        case.scenario.expected_steps), case.name
    await _until_idle(client.get_workflow_handle(workflow_id(case.case_ref)))


async def _read_without_codec(client: Client, case: CanaryCase) -> bytes:
    """Everything a viewer without the codec sees of ``case``'s progress, checked to be
    readable and to say where the case stands; returns the query answers' bytes (the
    rest is in its history) for the canary search."""
    handle = client.get_workflow_handle(workflow_id(case.case_ref))
    expected = case.scenario.expected_phase.value
    # The memo and search attributes are upserted by a workflow task after the last
    # event's update completed (a closing case: after its retention workflow started):
    # polled, bounded, until they show the phase.
    deadline = time.monotonic() + IDLE_TIMEOUT
    while True:
        described = await handle.describe()
        shown = (await described.memo()).get(MEMO_KEY) or {}
        phase = described.typed_search_attributes.get(search_attributes.PHASE)
        if (shown.get("phase"), phase) == (expected, expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    # The case's first run: a continued run (continue-as-new) has no static summary.
    first = client.get_workflow_handle(
        workflow_id(case.case_ref),
        run_id=described.raw_description.workflow_execution_info.first_run_id)
    first_summary = await (await first.describe()).static_summary()
    assert first_summary == (
        f"case {case.case_ref}: step 1 report by {case.scenario.case['reporter']}")
    progress = CaseProgress.model_validate((await described.memo())[MEMO_KEY])
    assert (progress.case_ref, progress.phase.value) == (case.case_ref, expected)
    attributes = {pair.key.name: pair.value for pair in described.typed_search_attributes}
    assert attributes["KbflowPhase"] == expected
    assert attributes["KbflowLastStep"] == max(case.scenario.expected_steps)
    status = await handle.query("status")
    awaiting = await handle.query("awaiting")
    assert (status["case_ref"], status["phase"], tuple(status["steps_done"])) == (
        case.case_ref, expected, case.scenario.expected_steps)
    assert awaiting == status["awaiting"]
    metadata = await handle.query("__temporal_workflow_metadata",
                                  result_type=WorkflowMetadata)
    assert metadata.current_details.startswith(f"phase: {expected}\n")
    summaries = []
    async for event in first.fetch_history_events():
        if event.user_metadata.HasField("summary"):
            summaries.append(client.data_converter.payload_converter.from_payload(
                event.user_metadata.summary, str))
    assert summaries[0] == first_summary  # the started event's
    assert f"step 1: {case.scenario.case['reporter']} to RVDK" in summaries
    assert "next deadline" in summaries
    assert all(PublicText.parse(summary) for summary in summaries)
    return json.dumps([status, awaiting, metadata.current_details]).encode()


async def _until_idle(handle: WorkflowHandle[Any, Any]) -> None:
    """Bounded poll until no activity and no workflow task is pending: every delivery the
    case scheduled (the step-1 report runs in the background) is in the outbox."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while True:
        raw = (await handle.describe()).raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        assert time.monotonic() < deadline, f"{handle.id} did not become idle"
        await asyncio.sleep(POLL_INTERVAL)


async def _show(address: str, workflow: str, *codec: str) -> bytes:
    """``temporal workflow show --output json`` of every run of ``workflow`` (a case that
    continued as new has several) with no configuration but the arguments, each followed
    by every payload's data and metadata as the bytes they stand for (the JSON output
    gives them in base64)."""
    query = f"WorkflowId = '{workflow}'"
    listed = await _temporal("workflow", "list", "--query", query, address=address)
    shown = []
    for run in json.loads(listed):
        out = await _temporal("workflow", "show", "-w", workflow,
                              "-r", run["execution"]["runId"], *codec, address=address)
        shown += [out, *_payload_bytes(json.loads(out))]
    return b"\n".join(shown)


async def _temporal(*args: str, address: str) -> bytes:
    """The output of the ``temporal`` CLI (``--output json``), configured by nothing but
    its arguments."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    process = await asyncio.create_subprocess_exec(
        str(installed_binary("temporal")), *args,
        "--address", address, "--namespace", "default", "--output", "json",
        "--disable-config-file", "--disable-config-env",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode == 0, err.decode(errors="replace")
    return out


def _payload_bytes(node: Any) -> Iterator[bytes]:
    """The base64-decoded data and metadata of every payload in a history's JSON form."""
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and isinstance(node.get("data", ""), str):
            yield base64.b64decode(node.get("data", ""))
            yield from (base64.b64decode(v) for v in node["metadata"].values())
        for value in node.values():
            yield from _payload_bytes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payload_bytes(value)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder.parent)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


async def test_no_canary_in_the_clear(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    planter = _Planter()
    cases = canary_cases(planter)
    control_start, control_canaries = control_case(planter, cases[0])
    temporal_dir, data_dir = tmp_path / "temporal", tmp_path / "data"
    port = _free_port()
    settings = Settings(temporal_address=f"127.0.0.1:{port}",
                        task_queue=f"kbflow-canary-{uuid.uuid4()}", data_dir=data_dir)
    config = _HeadlessConfig(host="127.0.0.1", port=port,
                             ui_port=_free_port(), namespace="default",
                             db_file=temporal_dir / "temporal.sqlite")
    server_log = tmp_path / "temporal-server.log"
    server = SpawnedDevServer(config, server_log)
    decoded: dict[str, bytes] = {}
    clear: dict[str, bytes] = {}
    packets: dict[str, str] = {}
    try:
        await server.wait_ready(settings)
        with _restored_logging():
            configure_logging(json=True)  # as the worker does; capfd sees its stderr
            client = await connect(settings)
            store = OutboxStore(settings)
            async with build_worker(client, settings.task_queue, store):
                await asyncio.gather(*(_run_case(client, settings, case) for case in cases))
                without_codec = await Client.connect(settings.temporal_address)
                public = await asyncio.gather(*(_read_without_codec(without_codec, case)
                                                for case in cases))
            # Control: a case started without the codec, on a queue no worker polls.
            plain = await Client.connect(settings.temporal_address,
                                         data_converter=pydantic_data_converter)
            control = inputs.case_start(control_start)
            handle = await plain.start_workflow(
                CaseWorkflow.run, control, id=workflow_id(control.case_ref),
                task_queue=f"{settings.task_queue}-unpolled")
            await handle.terminate(reason="canary control")
            workflows = [workflow_id(case.case_ref) for case in cases]
            shown = await asyncio.gather(*(_show(settings.temporal_address, w)
                                           for w in [*workflows, handle.id]))
            clear = {f"workflow show {w} (no codec)": out
                     for w, out in zip(workflows, shown[:-1], strict=True)}
            control_shown = shown[-1]
            token = OperatorStore.open(settings).issue("canary-ops")  # an operator's own
            with _codec_server(settings) as endpoint:
                codec = ("--codec-endpoint", endpoint, "--codec-auth", f"Bearer {token}")
                shown = await asyncio.gather(*(_show(settings.temporal_address, w, *codec)
                                               for w in workflows))
            decoded = dict(zip(workflows, shown, strict=True))
            packets = {case.name: "".join(p.model_dump_json()
                                          for p in store.packets(case.case_ref))
                       for case in cases}
    finally:
        server.stop()
    captured = capfd.readouterr()
    process_log = (captured.out + captured.err).encode()
    (tmp_path / "process.log").write_bytes(process_log)  # for a look after a failure

    # Controls: the search finds what is there.
    database = b"".join(_files(temporal_dir).values())
    for canary in control_canaries:
        assert canary.value.encode() in database, f"SQLite files: plaintext {canary} not found"
        assert canary.value.encode() in control_shown, f"workflow show: {canary} not found"
    assert server_log.stat().st_size > 0
    assert b'"packet delivered"' in process_log
    for case in cases:
        assert case.case_ref.encode() in process_log, f"no log of {case.name}"
        assert case.case_ref.encode() in database
        history = decoded[workflow_id(case.case_ref)]
        missing = [c for c in case.canaries if c.value.encode() not in history]
        assert not missing, f"{case.name}: not in the decoded history: {missing}"
        names = [c for c in case.canaries if c.where.endswith(".name")
                 and ".persons[" in c.where]
        assert names and all(c.value in packets[case.name] for c in names), (
            f"{case.name}: the outbox store does not hand back its packets decrypted")

    # The test itself: no canary in the clear anywhere.
    haystacks = {
        **{f"Temporal {name}": data for name, data in _files(temporal_dir).items()},
        "Temporal server log": server_log.read_bytes(),
        "this process's stdout/stderr (worker log)": process_log,
        **{f"data dir {name}": data for name, data in _files(data_dir).items()},
        **clear,
        **{f"progress of {case.name} read without the codec": data
           for case, data in zip(cases, public, strict=True)},
    }
    found: dict[str, list[str]] = {}
    every = [c for case in cases for c in case.canaries]
    for where, data in haystacks.items():
        hits = [c for c in every if c.value.encode() in data]
        if hits:
            found[where] = [f"{c.value} ({c.where})" for c in hits[:5]]
            found[where].append(f"... {len(hits)} of {len(every)} canaries")
    assert not found, "personal values in the clear:\n" + "\n".join(
        f"{where}: {', '.join(hits)}" for where, hits in found.items())
