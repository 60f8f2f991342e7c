"""The automatic no-``WorkflowTaskFailed`` check of ``tests/conftest.py`` fires.

A workflow that fails its task on purpose (a ``RuntimeError`` in workflow code: the SDK
fails the task and the server retries it, the run never ends) runs on a task queue of its
own, on the session's time-skipping server and on a dev server; the checker names its
workflow id and its failure message. These are the only deliberate fault-injection tests,
marked ``workflow_task_failures`` so that the automatic check does not count them.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import PollWorkflowTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from encryption.keys import KeyStore
from tests.conftest import (
    FAULT_INJECTION_MARKER,
    HistoryCheck,
    assert_no_workflow_task_failed,
    check_server_at,
    history_check,
    time_skipping_server,
    workflow_task_failures,
)

MESSAGE = "deliberate workflow task failure (fault injection)"


@workflow.defn(sandboxed=False)
class FailsItsTask:
    """Fails every workflow task it runs."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError(MESSAGE)


@workflow.defn(sandboxed=False)
class Succeeds:
    """Completes in its first task."""

    @workflow.run
    async def run(self) -> str:
        return "done"


async def _until_task_failed(handle: WorkflowHandle[FailsItsTask, None]) -> None:
    """Bounded poll until the run's history holds a failed workflow task."""
    for _ in range(1000):
        history = await handle.fetch_history()
        if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
               for e in history.events):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{handle.id}: no workflow task failed")


async def _fail_one(client: Client, check: HistoryCheck) -> str:
    """Run a workflow that fails its task (and one that succeeds) on a task queue of their
    own; check what ``check`` and ``workflow_task_failures`` say. Returns the failing
    workflow's id."""
    task_queue = f"kbflow-fault-{uuid.uuid4()}"
    workflow_id = f"fault-injection-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[FailsItsTask, Succeeds],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        fine = await client.execute_workflow(Succeeds.run, id=f"fine-{workflow_id}",
                                             task_queue=task_queue)
        assert fine == "done"
        handle = await client.start_workflow(FailsItsTask.run, id=workflow_id,
                                             task_queue=task_queue)
        await _until_task_failed(handle)

        [*found] = await workflow_task_failures(client, workflow_id)
        assert found and all(workflow_id in line and MESSAGE in line for line in found), found
        assert await workflow_task_failures(client, f"fine-{workflow_id}") == []

        new = await check.new_failures()
        assert new and all(workflow_id in line for line in new), new
        pattern = f"(?s)failed workflow task.*{workflow_id}.*RuntimeError: {re.escape(MESSAGE)}"
        with pytest.raises(AssertionError, match=pattern):
            assert_no_workflow_task_failed(new, "this server")
        await handle.terminate(reason="fault injection checked")
    # An open run is checked again each time; once closed, one last time, then never.
    again = await check.new_failures()
    assert again and all(workflow_id in line for line in again), again
    assert (await check.new_failures()) == []
    return workflow_id


@pytest.mark.workflow_task_failures
async def test_the_check_names_a_failed_workflow_task_on_the_time_skipping_server(
    keys: KeyStore,
) -> None:
    # A time-skipping server of its own: after a workflow task failed on it, the test
    # server can stop skipping time for later workflows, so the session's is left alone.
    async with time_skipping_server(keys) as own:
        await _fail_one(own.client, history_check(own))


@pytest.mark.workflow_task_failures
async def test_the_check_names_a_failed_workflow_task_on_the_dev_server(
    dev_server: WorkflowEnvironment,
) -> None:
    workflow_id = await _fail_one(dev_server.client, history_check(dev_server))
    # As a spawned dev server is checked before it stops: a client of its own, in a thread.
    address = dev_server.client.service_client.config.target_host
    found = check_server_at(address, ("default", dev_server.client.namespace))
    assert any(workflow_id in line and MESSAGE in line for line in found), found
    assert check_server_at("127.0.0.1:1", ("default",))[0].startswith(
        "could not check the Temporal server at 127.0.0.1:1")


def test_the_marker_is_registered(pytestconfig: pytest.Config) -> None:
    assert any(line.startswith(f"{FAULT_INJECTION_MARKER}:")
               for line in pytestconfig.getini("markers"))



async def test_a_terminate_during_a_running_task_is_not_a_failure(
    dev_server: WorkflowEnvironment,
) -> None:
    # Terminating while a workflow task runs makes the server fail that task with
    # FORCE_CLOSE_COMMAND and then write the termination: no workflow code failed. The
    # task is taken with a bare poll (no worker), so it is running when the terminate comes.
    client = dev_server.client
    task_queue = f"kbflow-terminate-{uuid.uuid4()}"
    workflow_id = f"terminate-mid-task-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow("HoldsItsTask", id=workflow_id, task_queue=task_queue)
    polled = await client.workflow_service.poll_workflow_task_queue(
        PollWorkflowTaskQueueRequest(namespace=client.namespace,
                                     task_queue=TaskQueue(name=task_queue),
                                     identity="a test taking the task by hand"))
    assert polled.workflow_execution.workflow_id == workflow_id
    await handle.terminate(reason="terminated mid-task")
    events = [(e.event_type, e.workflow_task_failed_event_attributes.cause)
              for e in (await handle.fetch_history()).events]
    forced = (EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
              WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND)
    assert events[-2:] == [forced, (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED, 0)]
    assert await workflow_task_failures(client, workflow_id) == []
