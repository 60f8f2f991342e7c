"""``kbflow start`` end to end on the real Temporal dev server (issue 6 findings 3 and 7):
kbflow makes the case ref from the start's idempotency key, so a repeated start returns
the same case; the same key with another document is refused; a second open case for a
child is refused unless ``--second-case``; an implausible start is refused before
Temporal is contacted.

The CLI runs as subprocesses of the installed ``kbflow`` script (as in test_cli.py); the
worker runs in this process on its own task queue, with the CLI's data dir.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore
from kbflow import case_refs
from kbflow.scenario import EXAMPLES_DIR, Scenario
from kbflow.settings import Settings, workflow_id
from starter.cli import app
from tests import factories as f
from tests.test_cli import CLI_TIMEOUT, KBFLOW
from worker import build_worker, connect

STARTED = re.compile(r"^(?:started case|already started:) (KB-\S+)$", re.MULTILINE)
NFC_NAME = "Zo\u00eb \u00c7elik-Fictief"  # Zoë Çelik-Fictief, precomposed
#: How long the step-1 deliveries (and so the processing log's entries) may take.
DELIVERY_BOUND = 30.0


class Kbflow:
    """The CLI in one data dir and task queue, and a client like the worker's."""

    def __init__(self, dev_server: WorkflowEnvironment, data_dir: Path) -> None:
        # the worker's data dir: its keys exist before the CLI runs
        KeyStore.open(Settings(data_dir=data_dir))
        self.task_queue = f"kbflow-start-{uuid.uuid4()}"
        self.data_dir = data_dir
        self.settings = Settings(
            temporal_address=dev_server.client.service_client.config.target_host,
            namespace=dev_server.client.namespace, task_queue=self.task_queue,
            data_dir=data_dir)
        self.store = OutboxStore(self.settings)  # creates the pseudonym key
        self.env = {**os.environ, "TEMPORAL_ADDRESS": self.settings.temporal_address,
                    "TEMPORAL_NAMESPACE": self.settings.namespace,
                    "KBFLOW_TASK_QUEUE": self.task_queue, "KBFLOW_DATA_DIR": str(data_dir)}
        self.env.pop("KBFLOW_PSEUDONYM_KEY", None)
        self.env.pop("KBFLOW_MASTER_KEYS", None)

    async def __call__(self, *args: str, env: dict[str, str] | None = None
                       ) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [str(KBFLOW), *args], env=env or self.env, capture_output=True,
            text=True, timeout=CLI_TIMEOUT, check=False)

    async def start(self, path: Path, *options: str) -> str:
        done = await self("start", str(path), *options)
        assert done.returncode == 0, done.stderr
        match = STARTED.search(done.stdout)
        assert match, done.stdout
        return match.group(1)

    async def delivered(self, case_ref: str) -> None:
        """Wait (bounded) until the case's step-1 packets are in the processing log."""
        deadline = time.monotonic() + DELIVERY_BOUND
        while not await asyncio.to_thread(self.store.processing_log, case_ref):
            assert time.monotonic() < deadline, f"{case_ref}: step 1 not delivered"
            await asyncio.sleep(0.05)


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert not f.leaked(lines[0])
    return lines[0]


def _case(**changes: Any) -> dict[str, Any]:
    case = dict(Scenario.load(EXAMPLES_DIR / "03_ots_advice_requested.json").case)
    case["idempotency_key"] = f"vt-report-{uuid.uuid4().hex[:12]}"
    case.update(changes)
    return case


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


async def _started_events(client: Client, case_ref: str) -> int:
    history = await client.get_workflow_handle(workflow_id(case_ref)).fetch_history()
    return sum(1 for event in history.events
               if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)


async def test_the_same_start_twice_is_one_case(dev_server: WorkflowEnvironment,
                                                tmp_path: Path) -> None:
    cli = Kbflow(dev_server, tmp_path / "data")
    client = await connect(cli.settings)
    path = _write(tmp_path / "case.json", _case())
    async with build_worker(client, cli.task_queue, cli.store):
        first = await cli("start", str(path))
        assert first.returncode == 0, first.stderr
        ref = STARTED.search(first.stdout).group(1)  # type: ignore[union-attr]
        assert first.stdout.startswith(f"started case {ref}\n")
        assert case_refs.check_case_ref(ref) == ref
        again = await cli("start", str(path))
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(f"already started: {ref}\n")
        assert f"workflow id: kb-case-{ref}" in again.stdout
        # Pretty-printed, keys in another order: the same start.
        reordered = _write(tmp_path / "reordered.json",
                           dict(reversed(list(json.loads(path.read_text()).items()))))
        assert await cli.start(reordered) == ref
        await cli.delivered(ref)
        # The status shows one case; Temporal holds one run with one start.
        status = await cli("status", ref, "--json")
        assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["case_ref"] == ref
    assert await _started_events(client, ref) == 1


async def test_the_readmes_start_from_the_template(dev_server: WorkflowEnvironment,
                                                  tmp_path: Path) -> None:
    # README: `kbflow template case > case.json`, then `kbflow start case.json`.
    cli = Kbflow(dev_server, tmp_path / "data")
    template = await cli("template", "case")
    assert template.returncode == 0, template.stderr
    path = tmp_path / "case.json"
    path.write_text(template.stdout, encoding="utf-8")
    ref = await cli.start(path)
    assert case_refs.check_case_ref(ref) == ref


async def test_the_same_key_with_another_start_is_refused(dev_server: WorkflowEnvironment,
                                                          tmp_path: Path) -> None:
    cli = Kbflow(dev_server, tmp_path / "data")
    client = await connect(cli.settings)
    case = _case()
    other = {**case, "relaas": {**case["relaas"], "concerns": "Iets anders, verzonnen."}}
    async with build_worker(client, cli.task_queue, cli.store):
        ref = await cli.start(_write(tmp_path / "case.json", case))
        refused = _one_line_error(await cli("start", str(_write(tmp_path / "other.json",
                                                                 other))))
    assert refused == (f"error: idempotency_key: already used for another case start ({ref}); "
                       "use a new idempotency_key for a new case")
    assert await _started_events(client, ref) == 1


async def test_a_second_open_case_for_a_child(dev_server: WorkflowEnvironment,
                                              tmp_path: Path) -> None:
    cli = Kbflow(dev_server, tmp_path / "data")
    client = await connect(cli.settings)
    async with build_worker(client, cli.task_queue, cli.store):
        case = _case()
        persons = [dict(person) for person in case["persons"]]
        child = next(i for i, person in enumerate(persons) if person["role"] == "child")
        persons[child]["name"] = NFC_NAME
        first = await cli.start(_write(tmp_path / "first.json", {**case, "persons": persons}))
        await cli.delivered(first)
        # Another report on the same child: the name typed in NFD, in capitals, another key.
        persons[child]["name"] = "  " + unicodedata.normalize("NFD", NFC_NAME).upper() + " "
        second = _write(tmp_path / "second.json", {**_case(), "persons": persons})
        refused = _one_line_error(await cli("start", str(second)))
        assert refused == (f"error: child {child} already has open case {first}; add "
                           "--second-case if a second case is intended")
        confirmed = await cli.start(second, "--second-case")
        assert confirmed != first
        assert (await cli("start", str(second))).stdout.startswith(
            f"already started: {confirmed}")  # a repeat of the second is no third case
        # Another child is not held back by this one's case.
        other = _case()
        other["persons"] = [{**person, "name": f"Ander Kind {index}", "date_of_birth":
                             "2015-05-05"} if person["role"] == "child" else person
                            for index, person in enumerate(case["persons"])]
        assert await cli.start(_write(tmp_path / "other.json", other)) not in (first,
                                                                                confirmed)
    assert await _started_events(client, confirmed) == 1


async def test_a_closed_case_does_not_block_a_new_one(dev_server: WorkflowEnvironment,
                                                      tmp_path: Path) -> None:
    cli = Kbflow(dev_server, tmp_path / "data")
    client = await connect(cli.settings)
    async with build_worker(client, cli.task_queue, cli.store):
        first = await cli.start(_write(tmp_path / "first.json", _case()))
        await cli.delivered(first)
        await client.get_workflow_handle(workflow_id(first)).terminate(reason="test")
        second = await cli.start(_write(tmp_path / "second.json", _case()))
    assert second != first


def _invoke(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str) -> str:
    """Run the CLI in this process, with nothing answering on TEMPORAL_ADDRESS: a refusal
    before Temporal names the rule, not Temporal. Returns the one error line."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(data_dir))
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 1, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert not f.leaked(lines[0])
    return lines[0]


@pytest.mark.parametrize(("change", "reason"), [
    ({"date_of_birth": "2031-05-01"}, "persons[0].date_of_birth: in the future"),
    ({"date_of_birth": "1960-04-02"}, "persons[0]: a child must be under 18 on the report date"),
], ids=["born-in-the-future", "adult-child"])
def test_an_implausible_start_is_refused_before_temporal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, str],
        reason: str) -> None:
    case = _case()
    case["persons"] = [{**case["persons"][0], **change}, *case["persons"][1:]]
    assert case["persons"][0]["role"] == "child"
    data_dir = tmp_path / "data"
    KeyStore.open(Settings(data_dir=data_dir))
    path = _write(tmp_path / "case.json", case)
    line = _invoke(monkeypatch, data_dir, "start", str(path))
    assert line == f"error: {path}: implausible CaseStart: {reason}"
    assert change["date_of_birth"][:4] not in line


@pytest.mark.parametrize(("changes", "reason"), [
    ({"case_ref": "KB-2026-AYSE1985"}, "case_ref: kbflow generates case refs; leave it out"),
    ({"idempotency_key": None}, "idempotency_key"),
    ({"retention_days": "3"}, "retention_days"),
], ids=["own-ref", "no-key", "retention-as-text"])
def test_a_start_document_is_refused_before_temporal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any],
        reason: str) -> None:
    case = {key: value for key, value in {**_case(), **changes}.items() if value is not None}
    path = _write(tmp_path / "case.json", case)
    line = _invoke(monkeypatch, tmp_path / "none", "start", str(path))
    assert line.startswith(f"error: {path}: invalid case start: ") and reason in line
    assert "AYSE1985" not in line


def test_the_option_case_ref_is_gone(tmp_path: Path) -> None:
    path = _write(tmp_path / "case.json", _case())
    done = CliRunner().invoke(app, ["start", str(path), "--case-ref", "KB-2026-ZOE2016"])
    assert done.exit_code == 2 and "No such option" in done.stderr


def test_a_mistyped_ref_is_caught_before_temporal(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ref = case_refs.new_case_ref(dt.date(2026, 12, 1))
    typo = ref[:-1] + ("C" if ref[-1] != "C" else "H")
    for command in (["status", typo], ["event", typo, "weighing", "body.json"],
                    ["packets", typo], ["inbox", "IND", "--case", typo],
                    ["erase", typo, "--requested-by", "RvdK-01", "--reason", "court-order"]):
        line = _invoke(monkeypatch, tmp_path / "none", *command)
        assert line == "error: case ref: check character does not match; mistyped?", command
