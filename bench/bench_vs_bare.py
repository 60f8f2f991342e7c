"""kbflow against bare Temporal: ``python -m bench.bench_vs_bare`` (issue 9, point 6).

Starts one Temporal dev server as ``kbflow server`` runs it (SQLite in a file, WAL;
``--journal delete``: SQLite's default rollback journal instead) and two workers, each in
its own process (``bench.bench_worker``) so that its CPU time and memory can be read from
``/proc``: kbflow's worker as ``kbflow worker`` runs it, and a worker for the bare twin
(``bench.bare.BareCase``: the same number of updates and of activities per update, ~1 KB
payloads, the SDK's default converter, no codec, no store).

For every example (``examples/*.json``) and every round, ``--cases`` cases of it run end
to end, ``--concurrency`` at a time, first on one twin, then on the other (which goes
first alternates by round; round 0 warms up and is not counted). A case runs from its
start until its last event's update returned and, for a case that closes, its run
completed. Per batch it reads the worker's and the server's CPU time (user + system, all
threads, ``/proc/<pid>/stat``) before and after, and each case's history events and bytes
(``DescribeWorkflowExecution``, once each case is idle). Reported per case, as medians
over the rounds, with each ratio kbflow / bare and the range of the rounds' ratios:
wall time of a batch per case, p50 update latency, worker CPU ms, server CPU ms, history
events and bytes. A closing kbflow case's retention workflow (16 events, another run) is
not counted.

Then (``--idle-cases``, 0 to skip) the worker's memory with that many idle open cases
(started, delivered their report, waiting for an event): the RSS growth of a fresh
worker process, once with a sticky cache that holds them all and once bounded
(``--bounded-cache``), and the bare twin's. And (``--years``) how history events and bytes
of one case grow as its OTS is extended year after year (example 04 without its
extension, then a ruling, an advice request and an advice each year), on the
time-skipping test server.

Prints a table (``--json``: JSON); nothing here is asserted. No network beyond localhost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import HeaderCodecBehavior, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from bench.bare import PAYLOAD_CHARS, BareCase, BareEvent, BareStart
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow import search_attributes
from kbflow.case import CaseState, Phase
from kbflow.events import AgencyEvent, CaseStart
from kbflow.logs import configure_logging
from kbflow.process import Step
from kbflow.progress import Phrase
from kbflow.public import PublicText
from kbflow.scenario import Scenario, example_files
from kbflow.settings import Settings, installed_binary, workflow_id
from starter import inputs
from starter.cases import send_event
from starter.dev_server import SQLITE_PRAGMAS, DevServerConfig, SpawnedDevServer
from worker import build_worker
from workflows.case_workflow import CaseWorkflow

MODES = ("kbflow", "bare")
#: Bound for one case, and for a case's history to settle after it.
CASE_TIMEOUT = dt.timedelta(seconds=120)
SETTLE_POLL = 0.02
#: RPC errors of a server too busy to answer in time; the call is made again.
_TRANSIENT = frozenset({RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED,
                        RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED})
#: Bound for a worker to work through the backlog of the idle cases' starts.
IDLE_TIMEOUT = dt.timedelta(minutes=30)
#: Starts in flight at once while opening the idle cases.
IDLE_CONCURRENCY = 50
_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# ---- the processes measured -------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; fields[0] is state
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICK


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for process {pid}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class _JournalConfig(DevServerConfig):
    """``kbflow server``'s dev server without its SQLite pragmas (``--journal delete``)."""

    def command(self) -> list[str]:
        command = super().command()
        for pragma in SQLITE_PRAGMAS:
            at = command.index(pragma)
            del command[at - 1:at + 1]
        return command


@contextlib.asynccontextmanager
async def dev_server(data_dir: Path, journal: str) -> AsyncIterator[SpawnedDevServer]:
    """The dev server as ``kbflow server`` runs it (SQLite file in ``data_dir``), or
    without WAL; yields it running."""
    files = Settings(data_dir=data_dir)
    kind = DevServerConfig if journal == "wal" else _JournalConfig
    config = kind(host="127.0.0.1", port=_free_port(), ui_port=_free_port(),
                  namespace="default", db_file=files.dev_server_db_path)
    server = SpawnedDevServer(config, files.dev_server_log_path)
    try:
        await server.wait_ready(Settings(temporal_address=f"127.0.0.1:{config.port}"))
        yield server
    finally:
        server.stop()


class WorkerProcess:
    """A ``bench.bench_worker`` process; its stderr (the log lines) goes to a file."""

    def __init__(self, kind: str, address: str, task_queue: str, data_dir: Path,
                 max_cached_workflows: int | None = None, runner: str | None = None) -> None:
        self.kind, self.task_queue = kind, task_queue
        command = [sys.executable, "-m", "bench.bench_worker", kind, "--address", address,
                   "--task-queue", task_queue, "--data-dir", str(data_dir)]
        if max_cached_workflows is not None:
            command += ["--max-cached-workflows", str(max_cached_workflows)]
        if runner is not None and kind == "kbflow":
            command += ["--runner", runner]
        # beside the dev server's log (kbflow.settings names the data dir's own files)
        self.log_path = Settings(data_dir=data_dir).dev_server_log_path.with_name(
            f"bench-worker-{kind}-{task_queue[-8:]}.log")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_polling(self, client: Client, timeout: float = 60.0) -> None:
        """Until the worker polls its workflow task queue.

        Raises:
            RuntimeError: it exited, or did not poll within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        request = DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=self.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
        while not (await client.workflow_service.describe_task_queue(request)).pollers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.kind} worker did not start; see "
                                   f"{self.log_path}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---- the twins' plans -------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """One example as both twins run it: packets at the start and per event, and whether
    the case closes with its last event."""

    name: str
    scenario: Scenario
    start_packets: int
    event_packets: tuple[int, ...]
    closes: bool


def plan_of(path: Path) -> Plan:
    """The plan of the example at ``path``, from kbflow's pure case state machine."""
    scenario = Scenario.load(path)
    now = dt.datetime.now(dt.UTC)

    def new_id() -> str:
        return str(uuid.uuid4())

    state, sent = CaseState.start(inputs.case_start(scenario.case), now, new_id)
    per_event = []
    for item in scenario.events:
        _, packets = state.apply(item.event, inputs.event_body(item.event, item.body),
                                 now, new_id)
        per_event.append(len(packets))
    return Plan(path.stem, scenario, len(sent), tuple(per_event),
                state.phase is Phase.CLOSED)


@dataclass
class CaseRun:
    """One case: its wall time, its updates' latencies, its workflow."""

    seconds: float
    latencies: list[float]
    handle: WorkflowHandle[Any, Any]


class Driver(Protocol):
    """Runs one case of a plan on one twin."""

    async def run_case(self, plan: Plan) -> CaseRun: ...


class KbflowDriver:
    """Cases as the CLI starts them and sends their events (``starter.cases``; without
    its checks before a start), on kbflow's encrypting client."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    def _start(self, plan: Plan) -> tuple[CaseStart, list[tuple[str, AgencyEvent]]]:
        start = inputs.case_start(plan.scenario.case)
        return start, [(item.event, inputs.event_body(item.event, item.body))
                       for item in plan.scenario.events]

    async def start_only(self, plan: Plan) -> WorkflowHandle[Any, Any]:
        start, _ = self._start(plan)
        return await self.client.start_workflow(
            CaseWorkflow.run, start, id=workflow_id(start.case_ref),
            task_queue=self.task_queue, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=PublicText.of(Phrase.CASE, case_ref=start.case_ref,
                                         step=Step.REPORT, sender=start.reporter))

    async def run_case(self, plan: Plan) -> CaseRun:
        start, events = self._start(plan)
        began = time.perf_counter()
        handle = await self.client.start_workflow(
            CaseWorkflow.run, start, id=workflow_id(start.case_ref),
            task_queue=self.task_queue, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=PublicText.of(Phrase.CASE, case_ref=start.case_ref,
                                         step=Step.REPORT, sender=start.reporter))
        latencies = []
        for name, body in events:
            sent = time.perf_counter()
            await send_event(self.client, start.case_ref, name, body, CASE_TIMEOUT)
            latencies.append(time.perf_counter() - sent)
        if plan.closes:
            await handle.result()
        return CaseRun(time.perf_counter() - began, latencies, handle)


def _text(seed: str) -> str:
    return (seed + " ") * (PAYLOAD_CHARS // (len(seed) + 1)) + "x" * (
        PAYLOAD_CHARS % (len(seed) + 1))


class BareDriver:
    """The bare twin's cases: a start and updates with ~1 KB of text each."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    async def start_only(self, plan: Plan) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            BareCase.run, BareStart(data=_text("start"), packets=plan.start_packets),
            id=f"bare-{uuid.uuid4()}", task_queue=self.task_queue)

    async def run_case(self, plan: Plan) -> CaseRun:
        began = time.perf_counter()
        handle = await self.start_only(plan)
        latencies = []
        last = len(plan.event_packets) - 1
        for number, packets in enumerate(plan.event_packets):
            event = BareEvent(event_id=str(uuid.uuid4()), data=_text(f"event {number}"),
                              packets=packets, last=plan.closes and number == last)
            sent = time.perf_counter()
            await handle.execute_update(BareCase.event, event)
            latencies.append(time.perf_counter() - sent)
        if plan.closes:
            await handle.result()
        return CaseRun(time.perf_counter() - began, latencies, handle)


# ---- one batch --------------------------------------------------------------------------

@dataclass(frozen=True)
class History:
    """A run's history size once it is idle."""

    events: int
    bytes: int


async def settled_history(handle: WorkflowHandle[Any, Any],
                          timeout: dt.timedelta = CASE_TIMEOUT) -> History:
    """The run's history length and size, once no activity or workflow task is pending.

    Raises:
        TimeoutError: still busy after ``timeout``.
    """
    deadline = time.monotonic() + timeout.total_seconds()
    request = DescribeWorkflowExecutionRequest(
        namespace=handle._client.namespace, execution=WorkflowExecution(workflow_id=handle.id))
    while True:  # raw: nothing decoded (the test server's unset search attributes)
        try:
            raw = await handle._client.workflow_service.describe_workflow_execution(request)
        except RPCError as error:  # a busy server drops a call now and then: ask again
            if error.status not in _TRANSIENT or time.monotonic() > deadline:
                raise
            await asyncio.sleep(SETTLE_POLL)
            continue
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            info = raw.workflow_execution_info
            size = info.history_size_bytes or await _history_bytes(handle)
            return History(info.history_length, size)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{handle.id}: not idle within {timeout}")
        await asyncio.sleep(SETTLE_POLL)


async def _history_bytes(handle: WorkflowHandle[Any, Any]) -> int:
    """The serialized size of the run's history, read page by page (the time-skipping
    server reports no ``history_size_bytes``)."""
    size, token = 0, b""
    while True:
        page = await handle._client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=handle._client.namespace, next_page_token=token,
                execution=WorkflowExecution(workflow_id=handle.id)))
        size += sum(event.ByteSize() for event in page.history.events)
        token = page.next_page_token
        if not token:
            return size


@dataclass
class Batch:
    """``cases`` cases of one example on one twin, per case where it says so."""

    mode: str
    example: str
    cases: int
    wall_ms: float  # the batch's wall time / cases
    case_p50_ms: float  # median wall time of one case
    update_p50_ms: float
    worker_cpu_ms: float
    server_cpu_ms: float
    driver_cpu_ms: float
    events: float
    kbytes: float


async def run_batch(driver: Driver, plan: Plan, mode: str, cases: int, concurrency: int,
                    worker_pid: int, server_pid: int) -> Batch:
    """Run ``cases`` cases of ``plan``, ``concurrency`` at a time; measure them."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> CaseRun:
        async with gate:
            return await driver.run_case(plan)

    cpu = (cpu_seconds(worker_pid), cpu_seconds(server_pid), time.process_time())
    began = time.perf_counter()
    runs = await asyncio.gather(*(one() for _ in range(cases)))
    wall = time.perf_counter() - began
    histories = await asyncio.gather(*(settled_history(run.handle) for run in runs))
    worker, server, driver_cpu = (cpu_seconds(worker_pid) - cpu[0],
                                  cpu_seconds(server_pid) - cpu[1],
                                  time.process_time() - cpu[2])
    latencies = [latency for run in runs for latency in run.latencies]
    ms = 1000.0 / cases
    return Batch(
        mode=mode, example=plan.name, cases=cases, wall_ms=wall * ms,
        case_p50_ms=statistics.median(run.seconds for run in runs) * 1000.0,
        update_p50_ms=statistics.median(latencies) * 1000.0 if latencies else 0.0,
        worker_cpu_ms=worker * ms, server_cpu_ms=server * ms, driver_cpu_ms=driver_cpu * ms,
        events=statistics.mean(h.events for h in histories),
        kbytes=statistics.mean(h.bytes for h in histories) / 1024)


# ---- idle cases -------------------------------------------------------------------------

@dataclass(frozen=True)
class IdleResult:
    """A fresh worker's memory before and after ``cases`` idle open cases."""

    mode: str
    cache: int
    cases: int
    rss_before_mb: float
    rss_after_mb: float
    seconds: float

    @property
    def kb_per_case(self) -> float:
        return (self.rss_after_mb - self.rss_before_mb) * 1024 / self.cases


async def _cpu_settled(pid: int, timeout: float = 300.0) -> None:
    """Until process ``pid`` uses under 2% of a core over a second (its work is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        if cpu_seconds(pid) - before < 0.02:
            return


async def idle_memory(mode: str, cache: int, cases: int, plan: Plan, address: str,
                      data_dir: Path, clients: dict[str, Client],
                      progress: Callable[[str], None],
                      runner: str | None = None) -> IdleResult:
    """Open ``cases`` cases of ``plan`` (start only) on a fresh worker with a sticky cache
    of ``cache`` runs; its RSS before (after 20 warm-up cases) and after."""
    task_queue = f"bench-idle-{mode}-{uuid.uuid4()}"
    worker = WorkerProcess(mode, address, task_queue, data_dir, max_cached_workflows=cache,
                           runner=runner)
    driver: KbflowDriver | BareDriver = (KbflowDriver if mode == "kbflow" else BareDriver)(
        clients[mode], task_queue)
    try:
        await worker.wait_polling(clients[mode])
        gate = asyncio.Semaphore(IDLE_CONCURRENCY)

        async def start(_: int) -> WorkflowHandle[Any, Any]:
            async with gate:
                return await driver.start_only(plan)

        warm = await asyncio.gather(*(start(n) for n in range(20)))
        await asyncio.gather(*(settled_history(handle) for handle in warm))
        await _cpu_settled(worker.pid)
        before = rss_bytes(worker.pid)
        began = time.perf_counter()
        handles: list[WorkflowHandle[Any, Any]] = []
        for chunk in range(0, cases, 1000):
            handles += await asyncio.gather(*(start(n) for n in
                                              range(chunk, min(cases, chunk + 1000))))
            progress(f"idle {mode} (cache {cache}): {len(handles)} started")
        # The starts return at once; the worker works through its backlog meanwhile.
        await asyncio.gather(*(settled_history(handle, IDLE_TIMEOUT)
                               for handle in handles[-50:]))
        await _cpu_settled(worker.pid)
        seconds = time.perf_counter() - began
        after = rss_bytes(worker.pid)
    finally:
        worker.stop()
    mb = 1024.0 * 1024.0
    return IdleResult(mode, cache, cases, before / mb, after / mb, seconds)


# ---- OTS years --------------------------------------------------------------------------

@dataclass(frozen=True)
class YearRow:
    """One case's history after ``years`` extensions of its OTS."""

    years: int
    events: int
    kbytes: float


async def ots_years(years: Sequence[int], data_dir: Path,
                    progress: Callable[[str], None]) -> list[YearRow]:
    """Example 04 without its extension, then ``max(years)`` yearly extensions (ruling,
    advice request, advice), each just after the extension question; the case's history
    after each of ``years``. On the time-skipping test server, with an in-process
    worker."""
    plan = plan_of(next(p for p in example_files() if p.stem.startswith("04")))
    keys = KeyStore.open(Settings(data_dir=data_dir))
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(installed_binary("temporal-test-server")),
        data_converter=encrypted_data_converter(keys))
    rows = [YearRow(0, 0, 0.0)]
    try:
        client = environment.client
        await search_attributes.register(client)  # the test server knows none
        task_queue = f"bench-years-{uuid.uuid4()}"
        store = OutboxStore(Settings(data_dir=data_dir), keys=keys)
        async with build_worker(client, task_queue, store):
            start = inputs.case_start(plan.scenario.case)
            handle = await client.start_workflow(
                CaseWorkflow.run, start, id=workflow_id(start.case_ref),
                task_queue=task_queue)
            items = list(plan.scenario.events)
            extension = [item for item in items if item.event.startswith("extension_")]
            for item in items:
                if item not in extension:
                    await send_event(client, start.case_ref, item.event,
                                     inputs.event_body(item.event, item.body), CASE_TIMEOUT)
            # No run id: a case continues as new at each extension (a run per period).
            current = client.get_workflow_handle(handle.id)
            await settled_history(handle)
            rows = [_year_row(await case_history(client, handle.id), 0)]
            for year in range(1, max(years) + 1):
                if year > 1:  # until the extension question of the current period
                    status = await current.query(CaseWorkflow.status)
                    assert status.ots_ends_on is not None
                    now = await environment.get_current_time()
                    question = dt.datetime.combine(status.ots_ends_on, dt.time(),
                                                   tzinfo=dt.UTC) - dt.timedelta(days=60)
                    if question > now:
                        await environment.sleep(question - now)
                today = (await environment.get_current_time()).date().isoformat()
                for item in extension:
                    body = {**item.body, "idempotency_key": f"{item.body['idempotency_key']}"
                                                            f"-y{year}"}
                    if "ruled_on" in body:
                        body["ruled_on"] = today
                    await send_event(client, start.case_ref, item.event,
                                     inputs.event_body(item.event, body), CASE_TIMEOUT)
                if year in years:
                    await settled_history(handle)
                    rows.append(_year_row(await case_history(client, handle.id), year))
                    progress(f"OTS year {year}: {rows[-1].events} events")
    finally:
        await environment.shutdown()
    return rows


async def case_history(client: Client, workflow: str) -> History:
    """Events and bytes of every run of a case: its current run and each run it
    continued as new from (``continued_execution_run_id`` of each run's first event)."""
    events, size, run_id = 0, 0, None
    while True:
        history = await client.get_workflow_handle(workflow, run_id=run_id).fetch_history()
        events += len(history.events)
        size += sum(event.ByteSize() for event in history.events)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return History(events, size)
        run_id = started.continued_execution_run_id


def _year_row(history: History, years: int) -> YearRow:
    return YearRow(years, history.events, history.bytes / 1024)


# ---- the whole run ----------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """The command line's options."""

    cases: int
    concurrency: int
    rounds: int
    examples: tuple[str, ...]
    journal: str
    idle_cases: int
    bounded_cache: int
    years: tuple[int, ...]
    profile: Path | None = None
    runner: str | None = None


@dataclass
class Results:
    """Everything measured."""

    options: Options
    batches: list[Batch] = field(default_factory=list)
    idle: list[IdleResult] = field(default_factory=list)
    years: list[YearRow] = field(default_factory=list)
    seconds: float = 0.0
    machine: str = field(default_factory=lambda: _machine())


def _py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling process ``pid`` into ``output`` as collapsed stacks, until SIGINT;
    ``bench.profile_summary`` reads it. Only the thread holding the GIL is sampled
    (``--gil``): the samples are where Python's CPU time goes (what C code does without
    the GIL, SQLite's writes and the SDK core's Rust threads, is not in them). Sampling
    costs the worker some CPU: a profiled run's figures are not the benchmark's."""
    return subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record",
                             "--pid", str(pid), "--rate", "250", "--format", "raw",
                             "--gil", "--threads", "--output", str(output)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def _workers(address: str, data_dir: Path,
             runner: str | None = None) -> Iterator[dict[str, WorkerProcess]]:
    workers: dict[str, WorkerProcess] = {}
    try:
        for mode in MODES:
            workers[mode] = WorkerProcess(mode, address, f"bench-{mode}-{uuid.uuid4()}",
                                          data_dir, runner=runner)
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


async def bench(options: Options, data_dir: Path, progress: Callable[[str], None],
                checkpoint: Callable[[Results], None] = lambda _: None) -> Results:
    """Everything ``options`` asks for; see the module's docstring. ``checkpoint`` gets
    the results so far after each part (the main rounds, the OTS years, each idle
    worker), so that a long run interrupted later keeps them."""
    began = time.monotonic()
    results = Results(options)

    def done_part() -> None:
        results.seconds = time.monotonic() - began
        checkpoint(results)

    plans = [plan_of(path) for path in example_files()
             if not options.examples or path.stem[:2] in options.examples
             or path.stem in options.examples]
    keys = KeyStore.open(Settings(data_dir=data_dir))  # the master keys, before the worker
    async with dev_server(data_dir, options.journal) as server:
        address = f"127.0.0.1:{server.config.port}"
        clients = {
            "kbflow": await Client.connect(address, data_converter=encrypted_data_converter(keys),
                                           header_codec_behavior=HeaderCodecBehavior.CODEC),
            "bare": await Client.connect(address),
        }
        server_pid = server.process.pid
        if options.rounds:
            with _workers(address, data_dir, options.runner) as workers:
                for worker in workers.values():
                    await worker.wait_polling(clients[worker.kind])
                profiler = None
                drivers: dict[str, Driver] = {
                    "kbflow": KbflowDriver(clients["kbflow"], workers["kbflow"].task_queue),
                    "bare": BareDriver(clients["bare"], workers["bare"].task_queue)}
                for round_number in range(options.rounds + 1):
                    order = MODES if round_number % 2 else MODES[::-1]
                    cases = options.concurrency if round_number == 0 else options.cases
                    for plan in plans:
                        for mode in order:
                            batch = await run_batch(drivers[mode], plan, mode, cases,
                                                    options.concurrency, workers[mode].pid,
                                                    server_pid)
                            if round_number > 0:  # round 0 warms up
                                results.batches.append(batch)
                    progress(f"round {round_number}/{options.rounds} done"
                             + (" (warm-up)" if round_number == 0 else ""))
                    if round_number == 0 and options.profile is not None:
                        profiler = _py_spy(workers["kbflow"].pid, options.profile)
                if profiler is not None:
                    profiler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                    profiler.wait(60)
            done_part()
        if options.years:
            results.years = await ots_years(options.years, data_dir, progress)
            done_part()
        if options.idle_cases:
            idle_plan = next(p for p in plans if p.name.startswith("03")) if any(
                p.name.startswith("03") for p in plans) else plans[0]
            for mode, cache in (("kbflow", options.idle_cases), ("kbflow", options.bounded_cache),
                                ("bare", options.idle_cases)):
                results.idle.append(await idle_memory(
                    mode, cache, options.idle_cases, idle_plan, address, data_dir, clients,
                    progress, options.runner))
                done_part()
    results.seconds = time.monotonic() - began
    return results


# ---- report -----------------------------------------------------------------------------

METRICS = (("wall_ms", "wall"), ("update_p50_ms", "update p50"),
           ("worker_cpu_ms", "worker CPU"), ("server_cpu_ms", "server CPU"),
           ("events", "events"), ("kbytes", "bytes"))


@dataclass(frozen=True)
class Ratio:
    """A metric of both twins: medians over the rounds, their ratio, the rounds' range."""

    kbflow: float
    bare: float
    low: float
    high: float

    @property
    def ratio(self) -> float:
        return self.kbflow / self.bare if self.bare else float("nan")


def _rounds(batches: list[Batch], mode: str, example: str | None) -> list[dict[str, float]]:
    """Per round, each metric of ``mode`` (per case; ``example`` None: all examples'
    cases together)."""
    chosen = [b for b in batches if b.mode == mode and (example is None or b.example == example)]
    if example is not None:
        return [dataclasses.asdict(b) for b in chosen]
    by_round: dict[int, list[Batch]] = {}
    per_example: dict[str, int] = {}
    for batch in chosen:
        number = per_example.get(batch.example, 0)
        per_example[batch.example] = number + 1
        by_round.setdefault(number, []).append(batch)
    return [{name: statistics.mean(getattr(b, name) for b in round_batches)
             for name, _ in METRICS} for round_batches in by_round.values()]


def ratios(batches: list[Batch], example: str | None) -> dict[str, Ratio]:
    """Every metric of ``example`` (None: all, each example weighted alike)."""
    kbflow, bare = _rounds(batches, "kbflow", example), _rounds(batches, "bare", example)
    found = {}
    for name, _ in METRICS:
        each = [k[name] / b[name] for k, b in zip(kbflow, bare, strict=True) if b[name]]
        found[name] = Ratio(statistics.median(k[name] for k in kbflow),
                            statistics.median(b[name] for b in bare),
                            min(each, default=float("nan")), max(each, default=float("nan")))
    return found


def as_json(results: Results) -> dict[str, Any]:
    """The results as JSON values."""
    examples = sorted({b.example for b in results.batches})
    return {
        "options": dataclasses.asdict(results.options),
        "machine": results.machine,
        "seconds": round(results.seconds),
        "per_case": {example or "all": {
            name: {**dataclasses.asdict(r), "ratio": r.ratio}
            for name, r in ratios(results.batches, example).items()}
            for example in ([*examples, None] if examples else [])},
        "batches": [dataclasses.asdict(b) for b in results.batches],
        "idle": [{**dataclasses.asdict(i), "kb_per_case": i.kb_per_case}
                 for i in results.idle],
        "years": [dataclasses.asdict(y) for y in results.years],
    }


def from_json(document: dict[str, Any]) -> Results:
    """Results read back from ``as_json``'s output (``--report``)."""
    options = dict(document["options"])
    options["examples"] = tuple(options["examples"])
    options["years"] = tuple(options["years"])
    options["profile"] = None
    options.setdefault("runner", None)
    results = Results(Options(**options), seconds=document["seconds"],
                      machine=document["machine"])
    results.batches = [Batch(**batch) for batch in document["batches"]]
    results.idle = [IdleResult(**{k: v for k, v in idle.items() if k != "kb_per_case"})
                    for idle in document["idle"]]
    results.years = [YearRow(**row) for row in document["years"]]
    return results


def _machine() -> str:
    return (f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, {platform.machine()}, "
            f"Python {platform.python_version()}")


def report(results: Results) -> str:
    """The tables."""
    options = results.options
    lines = [f"kbflow against bare Temporal — {results.machine}, dev server (SQLite, "
             f"journal {options.journal}), {options.cases} cases of each example per round, "
             f"{options.concurrency} at a time, {options.rounds} rounds, "
             f"{results.seconds:.0f} s", ""]
    examples = sorted({b.example for b in results.batches})
    if examples:
        lines.append("Per case, kbflow / bare (median of the rounds; [lowest-highest "
                     "round])")
        lines.append(f"{'example':<26}" + "".join(f"{label:>18}" for _, label in METRICS))
        for example in [*examples, None]:
            found = ratios(results.batches, example)
            label = example or f"all {len(examples)} examples"
            lines.append(f"{label:<26}" + "".join(
                f"{f'{r.ratio:.2f} [{r.low:.2f}-{r.high:.2f}]':>18}"
                for r in found.values()))
        lines += ["", "Per case, kbflow | bare (median of the rounds; ms, events, KB)",
                  f"{'example':<26}" + "".join(f"{label:>18}" for _, label in METRICS)]
        for example in [*examples, None]:
            found = ratios(results.batches, example)
            label = example or f"all {len(examples)} examples"
            lines.append(f"{label:<26}" + "".join(
                f"{f'{r.kbflow:.1f} | {r.bare:.1f}':>18}" for r in found.values()))
        driver = {mode: statistics.median(b.driver_cpu_ms for b in results.batches
                                          if b.mode == mode) for mode in MODES}
        lines.append(f"(the benchmark's own client CPU per case, median batch: kbflow "
                     f"{driver['kbflow']:.1f} ms, bare {driver['bare']:.1f} ms)")
    if results.idle:
        lines += ["", "Worker memory with idle open cases (RSS of a fresh worker process)",
                  f"{'worker':<10}{'sticky cache':>14}{'cases':>8}{'RSS before':>12}"
                  f"{'RSS after':>11}{'KB per case':>13}{'started in':>12}"]
        for idle in results.idle:
            lines.append(f"{idle.mode:<10}{idle.cache:>14}{idle.cases:>8}"
                         f"{idle.rss_before_mb:>9.0f} MB{idle.rss_after_mb:>8.0f} MB"
                         f"{idle.kb_per_case:>13.1f}{idle.seconds:>10.0f} s")
    if results.years:
        base = results.years[0]
        lines += ["", "One case's history as its OTS is extended (time-skipping server)",
                  f"{'OTS years':<10}{'events':>8}{'KB':>8}{'events/year':>13}{'KB/year':>9}"]
        for row in results.years:
            per = max(row.years, 1)
            lines.append(f"{row.years:<10}{row.events:>8}{row.kbytes:>8.0f}" + (
                f"{(row.events - base.events) / per:>13.0f}"
                f"{(row.kbytes - base.kbytes) / per:>9.1f}" if row.years else
                f"{'-':>13}{'-':>9}"))
    return "\n".join(lines)


async def main_async(options: Options, keep: Path | None,
                     json_out: Path | None = None) -> Results:
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def checkpoint(results: Results) -> None:
        if json_out is not None:
            json_out.write_text(json.dumps(as_json(results), indent=2, default=str))

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return await bench(options, keep, progress, checkpoint)
    with tempfile.TemporaryDirectory(prefix="kbflow-bench-bare-") as folder:
        return await bench(options, Path(folder), progress, checkpoint)


def _years(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.bench_vs_bare``."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_vs_bare",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=40,
                        help="cases of each example per round and twin (default 40)")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="cases in flight at once (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="counted rounds after one warm-up round (default 3; 0: none)")
    parser.add_argument("--examples", default="",
                        help="only these examples, by number or name, comma-separated "
                             "(default: all)")
    parser.add_argument("--journal", choices=("wal", "delete"), default="wal",
                        help="the dev server's SQLite journal: WAL as `kbflow server` "
                             "runs it (default), or SQLite's default rollback journal")
    parser.add_argument("--idle-cases", type=int, default=10_000,
                        help="idle open cases for the memory figures (default 10000; 0: "
                             "skip)")
    parser.add_argument("--bounded-cache", type=int, default=1000,
                        help="the bounded sticky cache of the memory figures (default "
                             "1000, the SDK's default)")
    parser.add_argument("--years", type=_years, default=(1, 2, 4, 8),
                        help="OTS years to report history sizes at (default 1,2,4,8; '': "
                             "skip)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--kbflow-runner", choices=("sandbox", "passthrough", "unsandboxed"),
                        default=None,
                        help="run kbflow's worker with another workflow runner (default: "
                             "worker.py's); the bare twin keeps the SDK's default sandbox")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="also write the JSON to this file (after each part of the "
                             "run, so that an interrupted run keeps what it measured)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="sample kbflow's worker with py-spy during the counted rounds "
                             "into this file (collapsed stacks; `python -m "
                             "bench.profile_summary FILE` sums them up)")
    parser.add_argument("--report", type=Path, default=None, metavar="JSON_FILE",
                        help="measure nothing: print the tables of an earlier run's JSON")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the data dir (server database, worker logs) here")
    args = parser.parse_args(argv)
    options = Options(cases=args.cases, concurrency=args.concurrency, rounds=args.rounds,
                      examples=tuple(e.strip() for e in args.examples.split(",") if e.strip()),
                      journal=args.journal, idle_cases=args.idle_cases,
                      bounded_cache=args.bounded_cache, years=args.years,
                      profile=args.profile, runner=args.kbflow_runner)
    if args.report is not None:
        print(report(from_json(json.loads(args.report.read_text()))))
        return
    configure_logging(json=True, level=logging.WARNING)  # the in-process years worker
    results = asyncio.run(main_async(options, args.keep, args.json_out))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(as_json(results), indent=2, default=str))
    print(json.dumps(as_json(results), indent=2, default=str) if args.json
          else report(results))


if __name__ == "__main__":
    main()
