"""Talking to running cases: start one, send it an event, read its status.

Thin wrappers around the Temporal client that turn its errors into ``CaseError`` with a
one-line reason: Temporal unreachable, unknown or closed case, refused event (the
workflow's reason, which names the rule and never a personal value), no worker answering.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.outbox_store import Erasure
from encryption.keys import KeyUnavailable
from kbflow.case import CaseStatus, EventOutcome, TimelineEntry, event_digest
from kbflow.events import AgencyEvent, CaseStart, ErasureRequest
from kbflow.settings import MASTER_KEYS_ENV, Settings, workflow_id
from worker import connect
from workflows.case_workflow import CaseWorkflow

#: How long a query may wait for a worker to answer.
QUERY_TIMEOUT = timedelta(seconds=10)
#: How long an event may wait for a worker to apply it and deliver its packets.
EVENT_TIMEOUT = timedelta(seconds=60)


class CaseError(Exception):
    """Something the command line cannot do for a case; the message says why, in one line."""


class EventRefusedError(CaseError):
    """The case refused an event; the message is the workflow's reason."""


async def open_client(settings: Settings, *, create_keys: bool = False) -> Client:
    """kbflow's Temporal client for ``settings``, encrypting with the data dir's keys.

    Only the demo (``create_keys``) may create keys: any other command with a wrong
    KBFLOW_DATA_DIR would encrypt under a fresh master key that no worker knows.

    Raises:
        CaseError: no keys in the data dir, malformed master keys, or Temporal does not
            answer on TEMPORAL_ADDRESS.
    """
    keys_file = settings.master_keys_path
    if not create_keys and not settings.master_keys and not keys_file.is_file():
        raise CaseError(f"no master keys at {keys_file}; is KBFLOW_DATA_DIR the worker's? "
                        f"(or set {MASTER_KEYS_ENV})")
    try:
        return await connect(settings)
    except ValueError as error:  # malformed KBFLOW_MASTER_KEYS or master.keys
        raise CaseError(str(error)) from None
    except RuntimeError:
        raise CaseError(
            f"cannot reach Temporal at {settings.temporal_address} (namespace "
            f"{settings.namespace}); start it with `kbflow server` or set TEMPORAL_ADDRESS"
        ) from None


async def start_case(client: Client, settings: Settings, start: CaseStart) -> WorkflowHandle:
    """Start ``CaseWorkflow`` for ``start`` on the task queue of ``settings``.

    A case ref is never reused, not even after its case closed.

    Raises:
        CaseError: a case with this ref exists already.
    """
    try:
        return await client.start_workflow(
            CaseWorkflow.run, start, id=workflow_id(start.case_ref),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise CaseError(f"case {start.case_ref}: a case with this ref exists already; "
                        "leave out --case-ref to get a fresh one") from None


def update_id(name: str, body: AgencyEvent) -> str:
    """The update id of an event: its idempotency key plus a digest of its content.

    Temporal answers a repeated update id with the first result without asking the
    workflow, so the id must change with the content: a true repeat then gets the first
    outcome, while a reused key with another body reaches the validator and is refused.
    """
    return f"{body.idempotency_key}-{event_digest(name, body)[:16]}"


async def send_event(client: Client, case_ref: str, name: str, body: AgencyEvent,
                     timeout: timedelta = EVENT_TIMEOUT) -> EventOutcome:
    """Send event ``name`` to the case as an update, with the body's idempotency key as
    update id; returns what the case did.

    Raises:
        EventRefusedError: the case refused the event (the message is the reason).
        CaseError: unknown or closed case, or no worker answered within ``timeout``.
    """
    handle = client.get_workflow_handle(workflow_id(case_ref))
    task = asyncio.current_task()
    try:
        # The client polls for the update's result until it has one, however long that
        # takes; the deadline bounds the whole wait, not one poll.
        async with asyncio.timeout(timeout.total_seconds()):
            return await handle.execute_update(name, body, id=update_id(name, body),
                                               result_type=EventOutcome)
    except WorkflowUpdateFailedError as failed:
        cause = failed.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise EventRefusedError(f"refused: {reason}") from None
    except (TimeoutError, RPCTimeoutOrCancelledError):
        # The client reports any cancellation as RPCTimeoutOrCancelledError: only our
        # deadline is a timeout; a cancellation from outside stays one.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None
        raise _no_worker(case_ref, timeout) from None
    except RPCError as error:
        raise await _case_error(client, case_ref, error, timeout) from None
    except KeyUnavailable:  # the first outcome of a repeat, under a destroyed key
        raise CaseError(f"case {case_ref}: erased; no event is accepted") from None


async def erase_running_case(client: Client, case_ref: str, request: ErasureRequest,
                             timeout: timedelta = EVENT_TIMEOUT) -> Erasure | None:
    """Ask a running case to erase itself (the ``erase`` update).

    Returns:
        The erasure record, or None if no run of the case is open (closed earlier,
        terminated, or unknown): the caller erases the stored data directly then.

    Raises:
        CaseError: the case refused, or no worker answered within ``timeout``.
    """
    handle = client.get_workflow_handle(workflow_id(case_ref))
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return None
        raise await _case_error(client, case_ref, error, timeout) from None
    if description.status is not WorkflowExecutionStatus.RUNNING:
        return None
    try:
        async with asyncio.timeout(timeout.total_seconds()):
            return await handle.execute_update(CaseWorkflow.erase, request)
    except WorkflowUpdateFailedError as failed:
        cause = failed.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise EventRefusedError(f"refused: {reason}") from None
    except (TimeoutError, RPCTimeoutOrCancelledError):
        raise _no_worker(case_ref, timeout) from None
    except RPCError as error:
        raise await _case_error(client, case_ref, error, timeout) from None


async def case_status(client: Client, case_ref: str,
                      timeout: timedelta = QUERY_TIMEOUT) -> CaseStatus:
    """The case's ``status`` query.

    A closed case answers from its result without a worker.

    Raises:
        CaseError: unknown case, or no worker answered within ``timeout``.
    """
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id(case_ref))
    try:
        description = await handle.describe()
        if description.status is WorkflowExecutionStatus.COMPLETED:
            return await handle.result()
        return await handle.query(CaseWorkflow.status, rpc_timeout=timeout)
    except RPCError as error:
        raise await _case_error(client, case_ref, error, timeout) from None
    except KeyUnavailable:
        raise CaseError(f"case {case_ref}: erased; its history can no longer be read") from None


async def case_timeline(client: Client, case_ref: str,
                        timeout: timedelta = QUERY_TIMEOUT) -> list[TimelineEntry]:
    """The case's ``timeline`` query (needs a worker, also for a closed case).

    Raises:
        CaseError: unknown case, or no worker answered within ``timeout``.
    """
    handle = client.get_workflow_handle(workflow_id(case_ref))
    try:
        return await handle.query(CaseWorkflow.timeline, rpc_timeout=timeout)
    except RPCError as error:
        raise await _case_error(client, case_ref, error, timeout) from None
    except WorkflowQueryFailedError:  # a closed case is queried by replay: not after erasure
        raise CaseError(f"case {case_ref}: its history can no longer be read "
                        "(erased, or a worker failed to replay it)") from None
    except KeyUnavailable:
        raise CaseError(f"case {case_ref}: erased; its history can no longer be read") from None


async def _case_error(client: Client, case_ref: str, error: RPCError,
                      timeout: timedelta | None = None) -> CaseError:
    """Turn a failed call on a case into a one-line reason."""
    if error.status is RPCStatusCode.NOT_FOUND:
        try:
            description = await client.get_workflow_handle(workflow_id(case_ref)).describe()
        except RPCError:
            return CaseError(f"case {case_ref}: unknown case (no workflow "
                             f"{workflow_id(case_ref)})")
        status = description.status.name.lower() if description.status else "closed"
        return CaseError(f"case {case_ref}: the case is closed (workflow {status}); "
                         "no event is accepted")
    if timeout is not None and error.status in (RPCStatusCode.CANCELLED,
                                                RPCStatusCode.DEADLINE_EXCEEDED):
        return _no_worker(case_ref, timeout)
    return CaseError(f"case {case_ref}: Temporal error {error.status.name}: {error.message}")


def _no_worker(case_ref: str, timeout: timedelta) -> CaseError:
    return CaseError(f"case {case_ref}: no worker answered within "
                     f"{timeout.total_seconds():.0f} s; is `kbflow worker` running on this "
                     "task queue (KBFLOW_TASK_QUEUE)?")
