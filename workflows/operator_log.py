"""The operator log and metrics of the case workflow, as a worker interceptor.

``OperatorLog`` (registered by ``worker.build_worker``) sees, without changing any
history:

- every agency event's update: refused by the validator or, rarely, by the handler
  ("event refused", with its ``kbflow.case.RefusalCode``), or accepted ("event
  accepted"); both counted (``kbflow_events_accepted_total``,
  ``kbflow_events_refused_total``);
- every escalation the case records (a timeline entry of kind ``escalation``): "reply
  escalated", counted in ``kbflow_escalations_total``;
- every activity attempt of kbflow's activities that raised: "activity attempt failed",
  counted in ``kbflow_delivery_failures_total`` (the activities themselves log and count
  what they delivered, reminded and erased: ``activities/delivery.py``).

Log lines carry the event name, sender, step, refusal code, case ref and workflow id;
never a field's value nor a refusal's message (it may quote a field). An event name that
is not one of kbflow's, or a sender that is not a party code, is logged and labelled as
``unknown``: a client could put anything there.

Replay-safe: workflow-side lines are written only when the workflow is not replaying
history (``workflow.unsafe.is_replaying_history_events``; an update validator never runs
on replay), and counters come from ``workflow.metric_meter()``, which counts nothing on
replay. Nothing here issues a command: the escalation watcher is a task that waits on a
condition only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ConfigDict
from temporalio import activity, workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from kbflow import metrics
from kbflow.case import EventOutcome, EventRefused, RefusalCode, TimelineEntry, rule_of
from kbflow.events import Event
from kbflow.process import Party

log = structlog.get_logger("kbflow.operator")

#: The workflow type whose updates and timeline are observed.
CASE_WORKFLOW = "CaseWorkflow"
#: The case workflow's update that erases a case (not an agency event).
ERASE_UPDATE = "erase"
#: kbflow's activities, whose failed attempts are counted.
KBFLOW_ACTIVITIES = frozenset({"deliver_packet", "send_reminder", "erase_case"})
_WORKFLOW_ID_PREFIX = "kb-case-"
_EVENT_NAMES = frozenset(event.value for event in Event)


class OperatorLog(Interceptor):
    """Logs and counts accepted and refused events, escalations and failed activity
    attempts (see the module docstring)."""

    def intercept_activity(
            self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityAttempts(next)

    def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _CaseEvents


def case_ref_of(workflow_id: str) -> str | None:
    """The case ref in a case workflow's id (``kb-case-<ref>``), or None."""
    if workflow_id.startswith(_WORKFLOW_ID_PREFIX):
        return workflow_id.removeprefix(_WORKFLOW_ID_PREFIX)
    return None


def event_label(name: str) -> str:
    """``name`` if it is one of kbflow's events, else ``unknown``."""
    return name if name in _EVENT_NAMES else metrics.UNKNOWN


def step_of(name: str) -> int | None:
    """The step (PROCESS.md §3) the event named ``name`` discloses in, or None."""
    if name not in _EVENT_NAMES:
        return None
    step = rule_of(name).step
    return None if step is None else int(step)


class _SenderOnly(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    sender: Party


def _sender_of(args: Sequence[Any]) -> str:
    """The party code in a dynamic update's body (``[name, [RawValue]]``), or ``unknown``."""
    try:
        raw = args[1][0]
        if not isinstance(raw, RawValue):
            return metrics.UNKNOWN
        body = workflow.payload_converter().from_payload(raw.payload, _SenderOnly)
        return str(body.sender.value)
    except Exception:  # any malformed body: the validator says why, not this
        return metrics.UNKNOWN


class _Timeline(Protocol):
    def timeline(self) -> list[TimelineEntry]: ...


def refusal_code(error: ApplicationError) -> RefusalCode | None:
    """The ``RefusalCode`` an ``ApplicationError`` of type ``EventRefused`` carries as its
    first detail, or None (another error, or a code this version does not know)."""
    if error.type != "EventRefused" or not error.details:
        return None
    try:
        return RefusalCode(str(error.details[0]))
    except ValueError:
        return None


def _live() -> bool:
    """Not replaying recorded history: a line written now is written once."""
    return not workflow.unsafe.is_replaying_history_events()


class _CaseEvents(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type == CASE_WORKFLOW:
            instance = workflow.instance()
            if callable(getattr(instance, "timeline", None)):
                # A background task with no command: it only waits on a condition.
                asyncio.get_running_loop().create_task(self._watch_escalations(instance))
        return await super().execute_workflow(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        try:
            super().handle_update_validator(input)
        except EventRefused as refused:
            if workflow.info().workflow_type == CASE_WORKFLOW:
                self._refused(input, refused.code)
            raise
        except ApplicationError as error:
            # The case's validators raise their refusals as ApplicationError (type
            # EventRefused) with the RefusalCode as the one detail, for the client.
            code = refusal_code(error)
            if code is not None and workflow.info().workflow_type == CASE_WORKFLOW:
                self._refused(input, code)
            raise

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        try:
            result = await super().handle_update_handler(input)
        except ApplicationError as error:
            # The handler re-raises a late refusal (the case moved since validation) as an
            # ApplicationError; the EventRefused it came from is its context.
            refused = error.__context__
            if isinstance(refused, EventRefused) and _live():
                self._refused(input, refused.code)
            raise
        if isinstance(result, EventOutcome) and _live():
            self._accepted(input, result)
        return result

    # ---- what is logged and counted ------------------------------------------------------
    @staticmethod
    def _context() -> dict[str, Any]:
        workflow_id = workflow.info().workflow_id
        return {"case_ref": case_ref_of(workflow_id), "workflow_id": workflow_id}

    def _refused(self, input: HandleUpdateInput, code: RefusalCode) -> None:
        if input.update == ERASE_UPDATE:
            log.info("erasure refused", code=code.value, **self._context())
            return
        name, sender = event_label(input.update), _sender_of(input.args)
        log.info("event refused", event_name=name, sender=sender, step=step_of(name),
                 code=code.value, **self._context())
        metrics.EVENTS_REFUSED.add(workflow.metric_meter(),
                                   {"event": name, "sender": sender, "code": code.value})

    def _accepted(self, input: HandleUpdateInput, outcome: EventOutcome) -> None:
        name = event_label(outcome.event)
        log.info("event accepted", event_name=name, sender=outcome.sender.value,
                 step=step_of(name),
                 duplicate=outcome.duplicate, packets=len(outcome.packets),
                 phase=outcome.phase.value, **self._context())
        metrics.EVENTS_ACCEPTED.add(workflow.metric_meter(), {
            "event": name, "sender": outcome.sender.value,
            "duplicate": str(outcome.duplicate).lower()})

    async def _watch_escalations(self, instance: _Timeline) -> None:
        seen = [len(instance.timeline())]  # entries handled so far

        def grown() -> bool:
            return len(instance.timeline()) > seen[0]

        while True:
            await workflow.wait_condition(grown)
            entries = instance.timeline()[seen[0]:]
            seen[0] += len(entries)
            for entry in entries:
                if entry.kind == "escalation":
                    self._escalated(entry)

    def _escalated(self, entry: TimelineEntry) -> None:
        awaited = entry.detail.removesuffix(" still missing")
        name = event_label(awaited)
        party = entry.party.value if entry.party is not None else metrics.UNKNOWN
        if _live():
            log.warning("reply escalated", party=party, awaited_event=name,
                        step=None if entry.step is None else int(entry.step),
                        **self._context())
        metrics.ESCALATIONS.add(workflow.metric_meter(), {"party": party, "event": name})


class _ActivityAttempts(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as error:
            info = activity.info()
            if info.activity_type in KBFLOW_ACTIVITIES:
                kind = (error.type if isinstance(error, ApplicationError) and error.type
                        else type(error).__name__)
                log.warning("activity attempt failed", activity=info.activity_type,
                            attempt=info.attempt, error=kind,
                            case_ref=case_ref_of(info.workflow_id or ""),
                            workflow_id=info.workflow_id)
                metrics.DELIVERY_FAILURES.add(activity.metric_meter(), {"error": kind})
            raise
