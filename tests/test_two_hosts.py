"""Workers on several hosts (issue 9): two worker processes with working directories of
their own and no shared file, one Temporal dev server and one PostgreSQL.

A case is driven through the CLI (from a third directory) across both workers: the first
worker alone takes the first events, then the second joins and the first is killed
(SIGKILL, mid-case: no graceful shutdown), and the second finishes the case. At the end
every packet the case rules give is delivered exactly once, with one processing-log line
per data subject and disclosure, and no kbflow state lies in any host's directory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.sealed import PartyKeys
from kbflow.case import CaseState
from kbflow.process import Party
from kbflow.scenario import EXAMPLES_DIR, Scenario
from kbflow.settings import Settings, workflow_id

KBFLOW = Path(sys.executable).parent / "kbflow"
#: Upper bound for one CLI call (an event is applied within seconds; after a worker was
#: killed, Temporal hands its sticky task to the other worker after a few seconds more).
CLI_TIMEOUT = 120
#: How long a worker may take to start polling.
WORKER_START_TIMEOUT = 60.0
SCENARIO = EXAMPLES_DIR / "03_ots_advice_requested.json"
#: Events the first worker takes alone (then the second joins and the first is killed).
FIRST_WORKER_EVENTS = 3


@dataclass
class Host:
    """One host: its own working directory (data dir) and environment."""

    name: str
    directory: Path
    env: dict[str, str]

    def files(self) -> list[Path]:
        return sorted(path for path in self.directory.rglob("*") if path.is_file())


def _expected_packets(scenario: Scenario, ref: str) -> Counter[tuple[int, str, str, int]]:
    """(step, sender, recipient, number of persons) of every packet the case rules give
    for ``scenario``, from the pure state machine (``kbflow.case``)."""
    now = dt.datetime.now(dt.UTC)
    counter = iter(range(10_000))
    state, packets = CaseState.start(scenario.start(ref), now,
                                     lambda: f"id-{next(counter)}")
    for item in scenario.events:
        _, more = state.apply(item.event, item.parsed(), now, lambda: f"id-{next(counter)}")
        packets += more
    return Counter((int(p.step), p.sender.value, p.recipient.value, len(p.body["persons"]))
                   for p in packets)


def _host(name: str, root: Path, common: dict[str, str], public_keys: Path) -> Host:
    directory = root / name
    keys = directory / "party-keys"
    keys.mkdir(parents=True)
    for public in public_keys.glob("*.pub"):  # each host gets its own copy of the config
        shutil.copy(public, keys / public.name)
    env = {**common, "KBFLOW_DATA_DIR": str(directory), "KBFLOW_PARTY_KEYS_DIR": str(keys)}
    return Host(name=name, directory=directory, env=env)


async def _start_worker(host: Host, log: IO[str]) -> subprocess.Popen[str]:
    worker = subprocess.Popen([str(KBFLOW), "worker"], env=host.env, cwd=host.directory,
                              stdout=log, stderr=log, text=True)
    return worker


async def _cli(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [str(KBFLOW), *args], env=host.env, cwd=host.directory,
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


async def _update_accepted(server: WorkflowEnvironment, ref: str, count: int) -> None:
    """Wait (bounded) until the case's history holds ``count`` accepted updates."""
    handle = server.client.get_workflow_handle(workflow_id(ref))
    for _ in range(600):
        history = await handle.fetch_history()
        accepted = [event for event in history.events
                    if event.HasField("workflow_execution_update_accepted_event_attributes")]
        if len(accepted) >= count:
            return
        await asyncio.sleep(0.05)  # polling a condition, bounded (30 s)
    raise AssertionError(f"update {count} was never accepted")


def _log_lines(path: Path, message: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if f'"{message}"' in line]


async def test_a_case_driven_across_two_hosts_delivers_every_packet_once(
        dev_server: WorkflowEnvironment, postgres_url: str, tmp_path: Path) -> None:
    scenario = Scenario.load(SCENARIO)
    ops = tmp_path / "ops-party-keys"  # ops make the parties' key pairs once
    for party in Party:
        PartyKeys(ops).public_key(party)
    common = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_server.client.namespace,
        "KBFLOW_TASK_QUEUE": f"kbflow-hosts-{uuid.uuid4()}",
        "KBFLOW_STORE_URL": postgres_url,
        "KBFLOW_MASTER_KEYS": f"mk-hosts:{secrets.token_hex(32)}",
        "KBFLOW_PSEUDONYM_KEY": secrets.token_hex(32),
    }
    first, second, desk = (_host(name, tmp_path, common, ops)
                           for name in ("host-a", "host-b", "case-desk"))
    before = {host.name: host.files() for host in (first, second, desk)}
    logs = {host.name: tmp_path / f"{host.name}.log" for host in (first, second)}
    workers: list[subprocess.Popen[str]] = []
    try:
        with logs[first.name].open("w") as first_log, logs[second.name].open("w") as second_log:
            workers.append(await _start_worker(first, first_log))
            case_file = _write(tmp_path / "case.json", scenario.case)
            started = await _cli(desk, "start", str(case_file))
            assert started.returncode == 0, started.stderr
            match = re.search(r"started case (KB-\S+)$", started.stdout, re.MULTILINE)
            assert match, started.stdout
            ref = match.group(1)

            for index, item in enumerate(scenario.events):
                body = _write(tmp_path / f"event-{index:02d}.json", item.body)
                sending = asyncio.create_task(
                    _cli(desk, "event", ref, item.event, str(body), "--wait", "110"))
                if index == FIRST_WORKER_EVENTS:
                    # Mid-case and mid-event: the first worker holds the case (sticky) and
                    # has accepted this event; its deliveries may be running on it.
                    await _update_accepted(dev_server, ref, index + 1)
                    workers[0].kill()  # no graceful shutdown: a host lost
                    await asyncio.to_thread(workers[0].wait, 30)
                sent = await sending
                assert sent.returncode == 0, (item.event, sent.stdout, sent.stderr)
                assert sent.stdout.startswith(f"accepted: {item.event}"), sent.stdout
                if index == FIRST_WORKER_EVENTS - 1:
                    assert _log_lines(logs[first.name], "packet delivered")
                    workers.append(await _start_worker(second, second_log))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=60)

    assert _log_lines(logs[second.name], "packet delivered")
    reader = Settings(data_dir=tmp_path / "reader", store_url=postgres_url,
                      party_keys_dir=ops, pseudonym_key=common["KBFLOW_PSEUDONYM_KEY"],
                      master_keys=common["KBFLOW_MASTER_KEYS"])
    store = OutboxStore(reader, read_only=True)
    packets = store.packets(ref)
    delivered = Counter((int(p.step), p.sender.value, p.recipient.value, len(p.body["persons"]))
                        for p in packets)
    assert delivered == _expected_packets(scenario, ref)
    assert len({p.packet_id for p in packets}) == len(packets)
    log = store.processing_log(case_ref=ref)
    lines = Counter((entry.packet_id, entry.data_subject_id) for entry in log)
    assert set(lines.values()) == {1}  # one line per data subject and disclosure
    assert len(log) == sum(len(p.body["persons"]) for p in packets)
    assert {entry.packet_id for entry in log} == {p.packet_id for p in packets}

    # Nothing of kbflow's state was written to any host's own directory.
    for host in (first, second, desk):
        assert host.files() == before[host.name], host.name
