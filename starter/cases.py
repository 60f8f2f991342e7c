"""Talking to running cases: start one, send it an event, read its status.

Thin wrappers around the Temporal client that turn its errors into ``CaseError`` with a
one-line reason: Temporal unreachable, unknown or closed case, refused event (the
workflow's reason, which names the rule and never a personal value), no worker answering.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.outbox_store import Erasure, OutboxStore
from activities.pseudonyms import Pseudonymiser
from encryption.keys import MASTER_KEYS_ENV, KeyStore, KeyUnavailable
from kbflow import case_refs
from kbflow.case import CaseStatus, EventOutcome, Phase, TimelineEntry, event_digest
from kbflow.events import AgencyEvent, CaseStart, ErasureRequest
from kbflow.items import Role
from kbflow.settings import Settings, workflow_id
from worker import connect
from workflows.case_workflow import CaseWorkflow

#: How long a query may wait for a worker to answer.
QUERY_TIMEOUT = timedelta(seconds=10)
#: How long an event may wait for a worker to apply it and deliver its packets.
EVENT_TIMEOUT = timedelta(seconds=60)
#: What the subkey of the pseudonym key that derives case refs is for.
CASE_REF_PURPOSE = b"case refs from idempotency keys"


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
    keys_file = settings.data_dir / "master.keys"
    if not create_keys and not os.environ.get(MASTER_KEYS_ENV) and not keys_file.is_file():
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


@dataclass(frozen=True)
class Started:
    """What ``start_case`` did: started the case, or found the same start made before."""

    case_ref: str
    already_started: bool


def derived_case_ref(pseudonymise: Pseudonymiser, idempotency_key: str,
                     today: dt.date | None = None) -> str:
    """The case ref of a start with ``idempotency_key``, made this year: a keyed hash under
    a subkey of the worker's pseudonym key (``kbflow.case_refs.derived_case_ref``), so
    repeating a start gives the same ref and workflow id. (A repeat in another calendar
    year gives another ref; the one-open-case-per-child check then catches it.)"""
    year = (today or dt.date.today()).year
    return case_refs.derived_case_ref(pseudonymise.subkey(CASE_REF_PURPOSE),
                                      idempotency_key, year)


async def start_case(client: Client, settings: Settings, start: CaseStart, *,
                     open_cases_in: OutboxStore | None = None) -> Started:
    """Start ``CaseWorkflow`` for ``start`` on the task queue of ``settings``; idempotent.

    A case ref is never reused, not even after its case closed. When a case with the ref
    exists already (the same idempotency key, so the same derived ref), its recorded start
    is decoded and compared: the same start returns that case (``already_started``).

    With ``open_cases_in`` (the outbox store and its processing log), a start for a child
    who already has an open case is refused. The other cases are found by the child's
    pseudonym in the processing log, which lists a case once its step-1 packet is
    delivered; a case started moments earlier whose step-1 delivery is not yet written
    is not found (a window of about a second with a running worker, longer without one).

    Raises:
        CaseError: the idempotency key was used for another start; the ref belonged to an
            erased case (its start can no longer be read or repeated); a child has an
            open case already (only with ``open_cases_in``); Temporal errors.
    """
    wid = workflow_id(start.case_ref)
    if await asyncio.to_thread(KeyStore.open(settings.data_dir).is_destroyed, wid):
        raise _erased_start(start.case_ref)
    if open_cases_in is not None and not await _exists(client, start.case_ref):
        await _refuse_second_case(client, start, open_cases_in)
    try:
        await client.start_workflow(
            CaseWorkflow.run, start, id=wid, task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        return Started(start.case_ref, already_started=False)
    except WorkflowAlreadyStartedError:
        pass
    except RPCError as error:
        raise await _case_error(client, start.case_ref, error) from None
    if await _recorded_start(client, start.case_ref) != start:
        raise CaseError("idempotency_key: already used for another case start "
                        f"({start.case_ref}); use a new idempotency_key for a new case")
    return Started(start.case_ref, already_started=True)


def _erased_start(case_ref: str) -> CaseError:
    return CaseError(f"case {case_ref}: this idempotency_key started a case that was "
                     "erased; its start cannot be repeated; use a new idempotency_key")


async def _exists(client: Client, case_ref: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id(case_ref)).describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return False
        raise await _case_error(client, case_ref, error) from None
    return True


async def _recorded_start(client: Client, case_ref: str) -> CaseStart:
    """The ``CaseStart`` the case's run was started with: the input of its first history
    event, decoded with the client's converter (which holds the case's key).

    Raises:
        CaseError: the case's key is destroyed (erased), or its history cannot be read.
    """
    wid = workflow_id(case_ref)
    converter = client.data_converter.with_context(
        WorkflowSerializationContext(namespace=client.namespace, workflow_id=wid))
    try:
        async for event in client.get_workflow_handle(wid).fetch_history_events():
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [recorded] = await converter.decode(payloads, [CaseStart])
            if isinstance(recorded, CaseStart):
                return recorded
            break
    except KeyUnavailable:
        raise _erased_start(case_ref) from None
    except RPCError as error:
        raise await _case_error(client, case_ref, error) from None
    raise CaseError(f"case {case_ref}: its start cannot be read")


async def _refuse_second_case(client: Client, start: CaseStart, store: OutboxStore) -> None:
    """Raise if a child of ``start`` already has an open case (by pseudonym)."""
    for index, person in enumerate(start.persons):
        if person.role is not Role.CHILD:
            continue
        log = await asyncio.to_thread(store.processing_log,
                                      data_subject_id=store.pseudonymise(person))
        for case_ref in dict.fromkeys(entry.case_ref for entry in log):
            if case_ref != start.case_ref and await _is_open(client, case_ref):
                raise CaseError(f"child {index} already has open case {case_ref}; add "
                                "--second-case if a second case is intended")


async def _is_open(client: Client, case_ref: str) -> bool:
    """Whether the case's run is running and its phase is not closed. A running case whose
    status cannot be queried (no worker) counts as open."""
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id(case_ref))
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return False
        raise await _case_error(client, case_ref, error) from None
    if description.status is not WorkflowExecutionStatus.RUNNING:
        return False
    try:
        status = await handle.query(CaseWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError, KeyUnavailable):
        return True
    return status.phase is not Phase.CLOSED


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
