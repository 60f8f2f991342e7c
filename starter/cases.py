"""Talking to running cases: start one, send it an event, read its status.

Thin wrappers around the Temporal client that turn its errors into ``CaseError`` with a
one-line reason: Temporal unreachable, unknown or closed case, refused event (the
workflow's reason, which names the rule and never a personal value). An event that
Temporal holds but that is not applied yet is ``EventPendingError``: no worker polls the
task queue, or the case accepted the event and its deliveries are still being retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from activities.outbox_store import Erasure, OutboxStore
from activities.pseudonyms import Pseudonymiser
from encryption.keys import KeyStore, KeyUnavailable
from kbflow import case_refs
from kbflow.case import (
    CaseStatus,
    EventOutcome,
    Phase,
    RefusalCode,
    TimelineEntry,
    event_digest,
)
from kbflow.continued import CarriedCase, recorded_start_digest, start_digest
from kbflow.events import AgencyEvent, CaseStart, ErasureRequest
from kbflow.items import Role
from kbflow.process import Step
from kbflow.progress import Phrase
from kbflow.public import PublicText
from kbflow.retention import Retention, retention_workflow_id
from kbflow.settings import MASTER_KEYS_ENV, Settings, workflow_id
from worker import connect
from workflows.case_workflow import CaseWorkflow
from workflows.operator_log import refusal_code
from workflows.retention_workflow import RetentionWorkflow

#: How long a query may wait for a worker to answer.
QUERY_TIMEOUT = timedelta(seconds=10)
#: How long an event may wait for a worker to apply it and deliver its packets.
EVENT_TIMEOUT = timedelta(seconds=60)
#: What the subkey of the pseudonym key that derives case refs is for.
CASE_REF_PURPOSE = b"case refs from idempotency keys"
#: A worker polled the task queue within this time: it is taken to be running.
POLLER_SEEN_WITHIN = timedelta(seconds=90)
#: The end of every "pending" message.
RESEND_HINT = "re-send the same file to learn the outcome"

_R = TypeVar("_R")


class CaseError(Exception):
    """Something the command line cannot do for a case; the message says why, in one line."""


class EventRefusedError(CaseError):
    """The case refused an event; the message is the workflow's reason.

    Attributes:
        code: why, in one word (``kbflow.case.RefusalCode``, from the validator's
            ``ApplicationError`` detail); None when the refusal carried none (a late
            refusal by the update's handler: the case moved since validation).
    """

    def __init__(self, message: str, code: RefusalCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class _BrokenRun(CaseError):
    """The case's run fails every workflow task, so it takes no update."""


class EventPendingError(CaseError):
    """Temporal holds the event but it is not applied yet. The message names the likely
    cause (no worker polls the task queue, or the case accepted the event and its
    deliveries are still being retried) and ends with "re-send the same file to learn
    the outcome": the update id is derived from the body (``update_id``), so a re-send
    returns the outcome instead of applying the event twice.

    Attributes:
        accepted: the case accepted the event (its deliveries are pending); False: no
            worker took it up.
    """

    def __init__(self, message: str, *, accepted: bool) -> None:
        super().__init__(message)
        self.accepted = accepted


def data_dir_keys(settings: Settings, *, read_only: bool = False) -> KeyStore:
    """The data dir's key store (``read_only`` for commands that only read keys).

    Raises:
        CaseError: no master keys in the data dir (nor ``KBFLOW_MASTER_KEYS``), or
            malformed ones.
        StorageError: the key store cannot be opened.
    """
    _check_master_keys(settings)
    try:
        return KeyStore.open(settings, read_only=read_only)
    except ValueError as error:  # malformed KBFLOW_MASTER_KEYS or master.keys
        raise CaseError(str(error)) from None


def _check_master_keys(settings: Settings) -> None:
    keys_file = settings.master_keys_path
    if settings.kms is None and not settings.master_keys and not keys_file.is_file():
        raise CaseError(f"no master keys at {keys_file}; is KBFLOW_DATA_DIR the worker's? "
                        f"(or set {MASTER_KEYS_ENV})")


async def open_client(settings: Settings, *, create_keys: bool = False,
                      keys: KeyStore | None = None, runtime: Runtime | None = None) -> Client:
    """kbflow's Temporal client for ``settings``, encrypting with the data dir's keys
    (``keys``, e.g. a read-only ``KeyStore`` for commands that only read; default: the
    data dir's store, opened for writing).

    Only the demo (``create_keys``) may create keys: any other command with a wrong
    KBFLOW_DATA_DIR would encrypt under a fresh master key that no worker knows.

    Raises:
        StorageError: the key store cannot be opened.
        CaseError: no keys in the data dir, malformed master keys, or Temporal does not
            answer on TEMPORAL_ADDRESS.
    """
    if not create_keys:
        _check_master_keys(settings)
    try:
        return await connect(settings, keys, runtime)
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
    if await asyncio.to_thread(KeyStore.open(settings).is_destroyed, wid):
        raise _erased_start(start.case_ref)
    exists = await _exists(client, start.case_ref)
    if not exists and await retention_view(client, start.case_ref) is not None:
        # Closed, and its run's history deleted by the namespace's retention: the start
        # cannot be compared any more, and must not open the case a second time.
        raise CaseError(f"case {start.case_ref}: this idempotency_key started a case that "
                        "is closed; its start cannot be repeated; use a new idempotency_key")
    if open_cases_in is not None and not exists:
        await _refuse_second_case(client, start, open_cases_in)
    try:
        await client.start_workflow(
            CaseWorkflow.run, start, id=wid, task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=PublicText.of(Phrase.CASE, case_ref=start.case_ref,
                                         step=Step.REPORT, sender=start.reporter),
        )
        return Started(start.case_ref, already_started=False)
    except WorkflowAlreadyStartedError:
        pass
    except RPCError as error:
        raise await _case_error(client, start.case_ref, error) from None
    if await _recorded_start_digest(client, start.case_ref) != start_digest(start):
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


async def _recorded_start_digest(client: Client, case_ref: str) -> str:
    """The digest (``kbflow.continued.start_digest``) of the ``CaseStart`` the case was
    started with: from the input of its current run's first history event, decoded with
    the client's converter (which holds the case's key): the start itself, or the
    ``CarriedCase`` of a run that continued as new.

    Raises:
        CaseError: the case's key is destroyed (erased), or its history cannot be read.
    """
    wid = workflow_id(case_ref)
    converter = client.data_converter.with_context(
        WorkflowSerializationContext(namespace=client.namespace, workflow_id=wid))
    try:
        async for event in client.get_workflow_handle(wid).fetch_history_events():
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            # The converter validates a union as pydantic does; its hint is typed "type".
            either = cast(type, CaseStart | CarriedCase)
            [recorded] = await converter.decode(payloads, [either])
            if isinstance(recorded, CaseStart | CarriedCase):
                return recorded_start_digest(recorded)
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


async def _is_running(client: Client, handle: WorkflowHandle[Any, Any], case_ref: str) -> bool:
    """Whether the case's run is open in Temporal (False: closed, terminated or unknown).

    Raises:
        CaseError: another Temporal error.
    """
    return await _run_status(client, handle, case_ref) is WorkflowExecutionStatus.RUNNING


async def _is_open(client: Client, case_ref: str) -> bool:
    """Whether the case's run is running and its phase is not closed. A running case whose
    status cannot be queried (no worker) counts as open."""
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id(case_ref))
    if not await _is_running(client, handle, case_ref):
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
    """Send event ``name`` to the case as an update, with an update id derived from the
    body's idempotency key and content (``update_id``); returns what the case did.

    Waits at most ``timeout`` in all: first until the case accepts the event (a worker
    ran its validator), then until its packets are delivered.

    Raises:
        EventRefusedError: the case refused the event (the message is the reason).
        EventPendingError: Temporal holds the event, not applied within ``timeout``.
        CaseError: unknown or closed case, or erased.
    """
    handle = client.get_workflow_handle(workflow_id(case_ref))
    try:
        return await _staged_update(
            client, case_ref, timeout, "event",
            lambda: handle.start_update(name, body, id=update_id(name, body),
                                        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                                        result_type=EventOutcome))
    except KeyUnavailable:  # the first outcome of a repeat, under a destroyed key
        raise CaseError(f"case {case_ref}: erased; no event is accepted") from None


async def without_key_here(client: Client, case_ref: str, settings: Settings) -> CaseError:
    """Why an event cannot be sent to a case that has no data key in this data dir:
    unknown to Temporal, or started with another data dir."""
    try:
        await client.get_workflow_handle(workflow_id(case_ref)).describe(
            rpc_timeout=QUERY_TIMEOUT)
    except RPCError as error:
        return await _case_error(client, case_ref, error)
    return CaseError(f"case {case_ref}: no data key for it in {settings.data_dir}; is "
                     "KBFLOW_DATA_DIR the worker's?")


class ErasedAlready(CaseError):
    """The case is erased already: ``erasure`` is its record (None: not readable). The
    message says when and why: ``case REF: erased already on DATE UTC (REASON); nothing
    left to erase``."""

    def __init__(self, case_ref: str, erasure: Erasure | None) -> None:
        self.case_ref, self.erasure = case_ref, erasure
        super().__init__(f"case {case_ref}: erased already" + (
            "" if erasure is None else
            f" on {erasure.at:%Y-%m-%d %H:%M} UTC ({erasure.reason})") +
            "; nothing left to erase")

    def is_outcome_of(self, request: ErasureRequest) -> bool:
        """Whether the erasure on record is ``request`` itself (same requester and
        reason): a re-run of a request that was pending, now carried out."""
        return (self.erasure is not None and self.erasure.reason == request.reason.value
                and self.erasure.requested_by == request.requested_by)


async def erase_running_case(client: Client, case_ref: str, request: ErasureRequest,
                             timeout: timedelta = EVENT_TIMEOUT) -> Erasure | None:
    """Ask a running case, or a closed case's retention workflow, to erase it now (their
    ``erase`` update).

    An open case, or a closed one whose run (started before the retention workflow)
    still keeps it, erases itself; a closed case in retention is erased by its
    ``RetentionWorkflow``.

    Returns:
        The erasure record, or None if neither runs (terminated, unknown, or closed
        before retention existed): the caller erases the stored data directly then.

    Raises:
        EventRefusedError: the case or its retention workflow refused.
        EventPendingError: Temporal holds the request, not carried out within ``timeout``
            (no worker, or the erasure activity is being retried).
        ErasedAlready: the retention workflow erased the case already (its record says
            when and why).
        CaseError: another Temporal error.
    """
    handle = client.get_workflow_handle(workflow_id(case_ref))
    if await _is_running(client, handle, case_ref):
        try:
            return await _erase_by_update(client, case_ref, request, timeout, handle,
                                          CaseWorkflow.erase)
        except EventRefusedError as refused:
            if retention_workflow_id(case_ref) not in str(refused):
                raise
            # It closed and handed the case to its retention workflow meanwhile.
    retention = client.get_workflow_handle_for(RetentionWorkflow.run,
                                               retention_workflow_id(case_ref))
    state = await _run_status(client, retention, case_ref)
    if state is WorkflowExecutionStatus.COMPLETED:
        raise ErasedAlready(case_ref, await _retention_result(retention))
    if state is WorkflowExecutionStatus.RUNNING:
        return await _erase_by_update(client, case_ref, request, timeout, retention,
                                      RetentionWorkflow.erase)
    return None


async def _erase_by_update(client: Client, case_ref: str, request: ErasureRequest,
                           timeout: timedelta, handle: WorkflowHandle[Any, Any],
                           update: Any) -> Erasure | None:
    """The ``erase`` update on ``handle`` (a case or its retention workflow); a run whose
    workflow task keeps failing is terminated instead (None: erase the data directly)."""
    try:
        erasure: Erasure = await _staged_update(
            client, case_ref, timeout, "erasure",
            lambda: handle.start_update(update, request,
                                        wait_for_stage=WorkflowUpdateStage.ACCEPTED))
        return erasure
    except _BrokenRun:
        # The run's workflow task keeps failing (e.g. a start that a client bypassing the
        # CLI sent and the workflow cannot decode): it can take no update, so erasure ends
        # the run, and the caller erases the stored data directly.
        await handle.terminate(reason=f"erased on request ({request.reason.value}); its "
                                      "workflow task kept failing")
        return None


async def _run_status(client: Client, handle: WorkflowHandle[Any, Any],
                      case_ref: str) -> WorkflowExecutionStatus | None:
    """The status of ``handle``'s run (None: no such workflow).

    Raises:
        CaseError: another Temporal error.
    """
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return None
        raise await _case_error(client, case_ref, error) from None
    return description.status


async def _retention_result(handle: WorkflowHandle[Any, Erasure]) -> Erasure | None:
    """The erasure record a completed retention workflow returned (None: unreadable)."""
    try:
        return await handle.result()
    except (KeyUnavailable, ValueError, RPCError):
        return None


@dataclass(frozen=True)
class RetentionView:
    """A closed case's retention workflow, read without a worker: its input (when the
    case closed, how long it is kept, how it ended) and, once it has erased the case,
    its result.

    Attributes:
        workflow_id: the retention workflow's id.
        retention: its input (no personal data).
        running: it still keeps the case.
        erasure: the erasure it recorded, once completed.
    """

    workflow_id: str
    retention: Retention
    running: bool
    erasure: Erasure | None


async def retention_view(client: Client, case_ref: str) -> RetentionView | None:
    """The case's retention workflow as ``RetentionView``, from its history and result,
    so no worker is needed. None: the case has none (open, or closed before retention
    workflows existed), or its input cannot be read.

    Raises:
        CaseError: a Temporal error other than an unknown workflow.
    """
    wid = retention_workflow_id(case_ref)
    handle = client.get_workflow_handle_for(RetentionWorkflow.run, wid)
    state = await _run_status(client, handle, case_ref)
    if state is None:
        return None
    converter = client.data_converter.with_context(
        WorkflowSerializationContext(namespace=client.namespace, workflow_id=wid))
    retention: Retention | None = None
    try:
        async for event in handle.fetch_history_events():
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [decoded] = await converter.decode(payloads, [Retention])
            retention = decoded if isinstance(decoded, Retention) else None
            break
    except (KeyUnavailable, ValueError):
        return None
    except RPCError as error:
        raise await _case_error(client, case_ref, error) from None
    if retention is None:
        return None
    completed = state is WorkflowExecutionStatus.COMPLETED
    return RetentionView(wid, retention, running=state is WorkflowExecutionStatus.RUNNING,
                         erasure=await _retention_result(handle) if completed else None)


async def _staged_update(client: Client, case_ref: str, timeout: timedelta, what: str,
                         start: Callable[[], Awaitable[WorkflowUpdateHandle[_R]]]) -> _R:
    """Start an update, wait until it is ACCEPTED, then until it COMPLETED, both within
    ``timeout``; tell the stages apart when the deadline passes."""
    task = asyncio.current_task()
    accepted = False
    try:
        # The client polls for each stage until it has it, however long that takes;
        # the deadline bounds the whole wait, not one poll.
        async with asyncio.timeout(timeout.total_seconds()):
            update = await start()
            accepted = True
            return await update.result()
    except WorkflowUpdateFailedError as failed:
        cause = failed.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
        code = refusal_code(cause) if isinstance(cause, ApplicationError) else None
        raise EventRefusedError(f"refused: {reason}", code) from None
    except (TimeoutError, RPCTimeoutOrCancelledError):
        # The client reports any cancellation as RPCTimeoutOrCancelledError: only our
        # deadline is a timeout; a cancellation from outside stays one.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None
        raise await _pending(client, case_ref, timeout, what,
                                 accepted=accepted) from None
    except RPCError as error:
        if error.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED):
            raise await _pending(client, case_ref, timeout, what,
                                 accepted=accepted) from None
        if (error.status is RPCStatusCode.FAILED_PRECONDITION
                and "workflow task in failed state" in error.message.lower()):
            raise _BrokenRun(f"case {case_ref}: its workflow task keeps failing, so it "
                             "takes no event; the worker's log names the cause, and "
                             "`kbflow erase` still erases it") from None
        raise await _case_error(client, case_ref, error) from None


@dataclass(frozen=True)
class CaseView:
    """What ``kbflow status`` shows of a case.

    Attributes:
        case_ref: the case.
        status: its status; None for an erased case whose status cannot be read any more
            (its run did not end with a readable result, e.g. terminated, then erased).
        timeline: its timeline; None when erased, or when no worker answered for a
            closed case.
        erasure: the erasure on record in the data dir, if any.
        erased: the case's data is erased (an erasure record, a destroyed data key, or
            a status saying so).
        retention: the closed case's retention workflow, if it has one (it says when
            the data will be, or was, erased).
    """

    case_ref: str
    status: CaseStatus | None
    timeline: list[TimelineEntry] | None
    erasure: Erasure | None
    erased: bool
    retention: RetentionView | None = None


async def case_view(client: Client, case_ref: str, *, erasure: Erasure | None = None,
                    key_destroyed: bool = False,
                    timeout: timedelta = QUERY_TIMEOUT) -> CaseView:
    """The case's status and timeline, for every way a case can have ended.

    An erased case (``erasure`` on record, or its data key destroyed) is never queried:
    a worker would have to replay a history it can no longer decode (ERROR logs), or
    could answer from its cache. Its status then comes from its run's result (written
    after erasure under the system key) if it completed after erasure, else from its
    retention workflow's input (the status as it closed), else from the erasure record.
    A completed case answers from its result without a worker; a closed case's
    retention workflow (when and whether it is erased) is read without a worker too.

    Raises:
        CaseError: unknown case, a query failed, or no worker answered within ``timeout``
            for an open case.
    """
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id(case_ref))
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise await _case_error(client, case_ref, error, timeout) from None
        # The namespace's retention deleted the closed run's history; a retention
        # workflow still knows how the case ended.
        retention = await retention_view(client, case_ref)
        if retention is not None:
            erasure = erasure or retention.erasure
            return CaseView(case_ref, _as_closed(retention, erasure), None, erasure,
                            erased=erasure is not None or key_destroyed, retention=retention)
        if erasure is not None or key_destroyed:
            return CaseView(case_ref, None, None, erasure, erased=True)  # history gone too
        raise await _case_error(client, case_ref, error, timeout) from None
    completed = description.status is WorkflowExecutionStatus.COMPLETED
    retention = await retention_view(client, case_ref) if completed else None
    if retention is not None and retention.erasure is not None:
        erasure = erasure or retention.erasure
    if erasure is not None or key_destroyed:
        status = await _result_if_readable(handle) if completed else None
        if status is None and retention is not None:
            status = _as_closed(retention, erasure)
        elif status is not None and status.erased_at is None and erasure is not None:
            # The result of a run that handed the case to its retention workflow is its
            # status as it closed (plaintext: no personal data); the erasure came later.
            status = status.model_copy(update={"erased_at": erasure.at})
        return CaseView(case_ref, status, None, erasure, erased=True, retention=retention)
    status = await _status(client, handle, case_ref, completed, timeout)
    if status.erased_at is not None:  # erased, but this data dir holds no record of it
        return CaseView(case_ref, status, None, erasure, erased=True)
    try:
        timeline = await case_timeline(client, case_ref, timeout)
    except CaseError:  # the status is known; the timeline needs a worker that can answer
        timeline = None
    return CaseView(case_ref, status, timeline, erasure, erased=False, retention=retention)


def _as_closed(retention: RetentionView, erasure: Erasure | None) -> CaseStatus:
    """The case's status as it closed (its retention workflow's input), erased or not."""
    return retention.retention.final_status.model_copy(
        update={"erased_at": None if erasure is None else erasure.at})


async def _result_if_readable(handle: WorkflowHandle[Any, CaseStatus]) -> CaseStatus | None:
    try:
        return await handle.result()
    except (KeyUnavailable, ValueError, RPCError):  # a result under the destroyed key
        return None


async def _status(client: Client, handle: WorkflowHandle[Any, CaseStatus], case_ref: str,
                  completed: bool, timeout: timedelta) -> CaseStatus:
    try:
        if completed:
            return await handle.result()
        return await handle.query(CaseWorkflow.status, rpc_timeout=timeout)
    except RPCError as error:
        raise await _case_error(client, case_ref, error, timeout) from None
    except WorkflowQueryFailedError:
        raise CaseError(f"case {case_ref}: a worker could not answer the status query "
                        "(see the worker's log)") from None
    except (KeyUnavailable, ValueError):
        raise CaseError(f"case {case_ref}: erased; its history can no longer be read") from None


async def case_status(client: Client, case_ref: str,
                      timeout: timedelta = QUERY_TIMEOUT) -> CaseStatus:
    """The case's ``status`` query.

    A closed case answers from its result without a worker.

    Raises:
        CaseError: unknown case, erased, the query failed, or no worker answered within
            ``timeout``.
    """
    handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id(case_ref))
    try:
        description = await handle.describe()
    except RPCError as error:
        raise await _case_error(client, case_ref, error, timeout) from None
    return await _status(client, handle, case_ref,
                         description.status is WorkflowExecutionStatus.COMPLETED, timeout)


async def case_timeline(client: Client, case_ref: str,
                        timeout: timedelta = QUERY_TIMEOUT) -> list[TimelineEntry]:
    """The case's ``timeline`` query (needs a worker, also for a closed case). Never ask
    it of an erased case (``case_view`` does not).

    Raises:
        CaseError: unknown case, the query failed, or no worker answered within
            ``timeout``.
    """
    handle = client.get_workflow_handle(workflow_id(case_ref))
    try:
        return await handle.query(CaseWorkflow.timeline, rpc_timeout=timeout)
    except RPCError as error:
        raise await _case_error(client, case_ref, error, timeout) from None
    except WorkflowQueryFailedError:  # a closed case is queried by replay: not after erasure
        raise CaseError(f"case {case_ref}: its history can no longer be read "
                        "(erased, or a worker failed to replay it)") from None
    except (KeyUnavailable, ValueError):
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
        return CaseError(f"case {case_ref}: no worker answered within "
                         f"{timeout.total_seconds():.0f} s; is `kbflow worker` running on "
                         "this task queue (KBFLOW_TASK_QUEUE)?")
    return CaseError(f"case {case_ref}: Temporal error {error.status.name}: {error.message}")


async def _pending(client: Client, case_ref: str, timeout: timedelta, what: str, *,
                   accepted: bool) -> EventPendingError:
    """Why an update was not done within ``timeout``: accepted but its deliveries are
    retried, or not accepted (no worker polls the case's task queue, or none answered)."""
    waited = f"{timeout.total_seconds():.0f} s"
    hint = RESEND_HINT if what == "event" else "run the same command again to learn the outcome"
    if accepted:
        work = "deliveries" if what == "event" else "erasure activity"
        return EventPendingError(
            f"case {case_ref}: pending: the case accepted the {what}, but its {work} "
            f"did not finish within {waited} (the worker is retrying, e.g. after a "
            f"storage fault; see its log); {hint}", accepted=True)
    queue, pollers = await _pollers(client, case_ref)
    if pollers == 0:
        cause = (f"no worker polls task queue {queue}; start `kbflow worker` (with "
                 "KBFLOW_TASK_QUEUE set alike)")
    elif pollers is None:
        cause = (f"no worker took the {what} up; is `kbflow worker` running on this task "
                 "queue")
    else:
        cause = (f"{pollers} worker(s) polled task queue {queue} within "
                 f"{POLLER_SEEN_WITHIN.total_seconds():.0f} s but none took the {what} up "
                 "(stopped, busy, or failing on this case; see the worker's log)")
    return EventPendingError(f"case {case_ref}: pending: the {what} is not applied within "
                             f"{waited}: {cause}; {hint}", accepted=False)


async def _pollers(client: Client, case_ref: str) -> tuple[str, int | None]:
    """The case's task queue and how many workers poll it for workflow tasks (None: not
    known)."""
    try:
        description = await client.get_workflow_handle(workflow_id(case_ref)).describe(
            rpc_timeout=QUERY_TIMEOUT)
        queue = description.task_queue
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            timeout=QUERY_TIMEOUT)
    except RPCError:
        return "?", None
    # The server lists a poller for minutes after its worker stopped; a live worker
    # polls again at least every minute (long poll).
    recent = dt.datetime.now(dt.UTC) - POLLER_SEEN_WITHIN
    return queue, sum(1 for poller in response.pollers
                      if poller.last_access_time.ToDatetime(dt.UTC) >= recent)
