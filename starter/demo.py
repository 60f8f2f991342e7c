"""``kbflow demo``: every example scenario, end to end, on a real Temporal.

Starts what is missing and stops what it started: the dev server when nothing answers on
TEMPORAL_ADDRESS (state in the data dir, so the cases stay browsable with
``kbflow server``), and an in-process worker when it started the server or no other
worker polls the task queue. Each example runs as a fresh case with a new opaque case
ref, so running the demo again never collides with earlier cases. Logs and notes carry
case refs, steps and parties, never personal values.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.outbox_store import OutboxStore
from kbflow.case import Phase
from kbflow.packets import Packet
from kbflow.scenario import example_files
from kbflow.settings import Settings, workflow_id
from starter import inputs
from starter.cases import CaseError, case_status, case_timeline, open_client, send_event, start_case
from starter.dev_server import DevServerConfig, SpawnedDevServer, answers
from worker import build_worker

#: Identity prefix of the demo's own worker, so that a later demo does not mistake the
#: poller it left in the server's poller list for a running worker.
DEMO_IDENTITY_PREFIX = "kbflow-demo"
#: A poller last seen longer ago than this is taken to be gone (idle workers re-poll
#: every minute).
POLLER_FRESHNESS = dt.timedelta(seconds=90)
#: How long one call on a case (an event, a query) may wait for a worker.
STEP_TIMEOUT = dt.timedelta(seconds=60)
#: How long to wait for the last deliveries of a case to reach the outbox.
DELIVERY_WAIT = 15.0

Note = Callable[[str], None]


@dataclass
class CaseResult:
    """How one example ran."""

    file: Path
    title: str
    case_ref: str | None = None
    phase: str | None = None
    end_state: str | None = None
    steps: tuple[int, ...] = ()
    as_expected: bool = False
    problem: str | None = None
    packets: list[Packet] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The case as ``kbflow demo --json`` prints it (no personal data)."""
        return {"case_ref": self.case_ref, "title": self.title, "end_state": self.end_state,
                "phase": self.phase, "steps": list(self.steps),
                "as_expected": self.as_expected, "problem": self.problem}


@dataclass
class DemoReport:
    """What the demo did."""

    cases: list[CaseResult]
    workflows_url: str
    started_server: bool
    started_worker: bool
    seconds: float

    @property
    def ok(self) -> bool:
        """Every example ended as expected."""
        return bool(self.cases) and all(case.as_expected for case in self.cases)


async def run_demo(settings: Settings, ui_port: int, note: Note) -> DemoReport:
    """Run every file of ``kbflow.scenario.example_files()`` as a fresh case.

    Raises:
        DevServerError: the dev server it had to start did not come up.
        CaseError: Temporal does not answer.
    """
    began = time.monotonic()
    config = DevServerConfig.from_settings(settings, ui_port)
    async with contextlib.AsyncExitStack() as stack:
        started_server = not await answers(settings.temporal_address)
        if started_server:
            log_path = settings.dev_server_log_path
            note(f"starting the Temporal dev server on {settings.temporal_address} "
                 f"(state {config.db_file}, log {log_path})")
            server = SpawnedDevServer(config, log_path)
            stack.callback(_stop_server, server, note)  # exit stack: stopped last
            await server.wait_ready(settings)
        client = await open_client(settings, create_keys=True)
        started_worker = started_server or not await _other_worker_polls(client, settings)
        if started_worker:
            note(f"running a worker in-process on task queue {settings.task_queue}")
            await stack.enter_async_context(_in_process_worker(client, settings))
        else:
            note(f"using the worker that polls task queue {settings.task_queue}")
        store = OutboxStore(settings)
        cases = await asyncio.gather(*(_run_case(client, settings, store, path)
                                       for path in example_files()))
    return DemoReport(cases=list(cases), workflows_url=config.workflows_url(),
                      started_server=started_server, started_worker=started_worker,
                      seconds=time.monotonic() - began)


async def _run_case(client: Client, settings: Settings, store: OutboxStore,
                    path: Path) -> CaseResult:
    result = CaseResult(file=path, title=path.stem)
    try:
        scenario = inputs.scenario(path)
        result.title = scenario.title
        start = inputs.case_start(scenario.case, source=path.name)
        result.case_ref = start.case_ref
        await start_case(client, settings, start)
        for number, item in enumerate(scenario.events, start=1):
            body = inputs.event_body(item.event, item.body,
                                     source=f"{path.name} event {number}")
            await send_event(client, start.case_ref, item.event, body, STEP_TIMEOUT)
        status = await case_status(client, start.case_ref, STEP_TIMEOUT)
        result.phase = status.phase.value
        result.end_state = status.end_state.value if status.end_state else None
        result.steps = tuple(status.steps_done)
        result.as_expected = (status.phase is scenario.expected_phase
                              and status.end_state == scenario.expected_end_state
                              and tuple(status.steps_done) == tuple(scenario.expected_steps))
        if not result.as_expected:
            expected_end = scenario.expected_end_state
            result.problem = (
                f"expected phase {scenario.expected_phase.value}, end state "
                f"{expected_end.value if expected_end else None}, steps "
                f"{list(scenario.expected_steps)}"
            )
        result.packets = await _delivered(client, store, start.case_ref)
        if status.phase is Phase.CLOSED:
            await _completed(client, start.case_ref)
    except (inputs.InputError, CaseError) as error:
        result.problem = str(error)
    except Exception as error:  # one broken case must not hide the others' results
        result.problem = f"{type(error).__name__}: {error}"
    return result


async def _delivered(client: Client, store: OutboxStore, case_ref: str) -> list[Packet]:
    """The case's packets in the outbox, once every packet it projected is delivered
    (bounded: a worker with another data dir delivers elsewhere)."""
    timeline = await case_timeline(client, case_ref, STEP_TIMEOUT)
    projected = sum(1 for entry in timeline if entry.kind == "packet")
    deadline = time.monotonic() + DELIVERY_WAIT
    while True:
        packets = await asyncio.to_thread(store.packets, case_ref)
        if len(packets) >= projected or time.monotonic() > deadline:
            return packets
        await asyncio.sleep(0.1)


async def _completed(client: Client, case_ref: str) -> None:
    """Wait (bounded) until a closed case's run has completed (it hands the case to its
    retention workflow first), so that the demo's worker does not stop before it has."""
    handle = client.get_workflow_handle(workflow_id(case_ref))
    deadline = time.monotonic() + DELIVERY_WAIT
    while time.monotonic() < deadline:
        if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.1)


async def _other_worker_polls(client: Client, settings: Settings) -> bool:
    """Whether a worker other than a demo's polled the workflow task queue lately.

    An idle worker polls again at least every minute; the server keeps listing a stopped
    one for some minutes, so only pollers seen within ``POLLER_FRESHNESS`` count. A worker
    stopped just before the demo can still count: its cases then time out with a hint.
    """
    response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=settings.namespace,
        task_queue=TaskQueue(name=settings.task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    ))
    now = dt.datetime.now(dt.UTC)
    return any(
        not poller.identity.startswith(DEMO_IDENTITY_PREFIX)
        and now - poller.last_access_time.ToDatetime(tzinfo=dt.UTC) < POLLER_FRESHNESS
        for poller in response.pollers
    )


@contextlib.asynccontextmanager
async def _in_process_worker(client: Client, settings: Settings) -> Any:
    """A worker (``worker.build_worker``) on the settings' task queue and outbox, running
    while the context is open; it stops gracefully on exit."""
    identity = f"{DEMO_IDENTITY_PREFIX}-{os.getpid()}@{socket.gethostname()}"
    demo_client = await Client.connect(
        settings.temporal_address, namespace=settings.namespace,
        data_converter=client.data_converter, identity=identity,
    )
    async with build_worker(demo_client, settings.task_queue,
                            OutboxStore(settings)) as worker:
        yield worker


def _stop_server(server: SpawnedDevServer, note: Note) -> None:
    code = server.stop()
    note(f"stopped the Temporal dev server (exit code {code})")
