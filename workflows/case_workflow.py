"""``CaseWorkflow``: one run per case, from the step-1 report until the case closes.

Orchestration only (PROCESS.md §3): the rules live in ``kbflow.case.CaseState``. This
module waits for agency events (Temporal updates with validators), delivers the packets
each event yields (activities), and sleeps on durable timers (reply deadlines, the OTS
extension question and end date). When the case closes, the run hands it to its
``RetentionWorkflow`` (``workflows/retention_workflow.py``), which keeps it for the retention
period and then crypto-shreds it, and completes; an ``erase`` update while the case is open
crypto-shreds it here. Runs from before ``CLOSED_PATCH`` keep the case in retention
themselves.

Agency events arrive as updates named after ``kbflow.events.Event`` (one dynamic
handler; each event's rule is in ``kbflow.case.RULES``): a malformed, oversized,
out-of-order or wrong-sender event is refused by the validator, synchronously, with a
reason, and never enters history.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.delivery import DeliveryActivities, ErasureOrder
    from activities.outbox_store import Erasure
    from kbflow.case import (
        Awaited,
        CaseState,
        CaseStatus,
        EventOutcome,
        EventRefused,
        Phase,
        RefusalCode,
        Reminder,
        TimelineEntry,
        rule_of,
    )
    from kbflow.continued import CarriedCase, start_digest
    from kbflow.errors import describe
    from kbflow.events import (
        AgencyEvent,
        CaseStart,
        ErasureReason,
        ErasureRequest,
        Event,
        body_size_problem,
    )
    from kbflow.packets import Packet
    from kbflow.process import RETENTION_AFTER_CLOSE
    from kbflow.progress import (
        MEMO_KEY,
        CaseProgress,
        Phrase,
        details_of,
        progress_of,
        search_attribute_updates,
        typed_search_attributes,
    )
    from kbflow.public import PublicText
    from kbflow.retention import Retention, retention_reason, retention_workflow_id
    from workflows.details import set_details
    from workflows.retention_workflow import RetentionWorkflow

DELIVERY_TIMEOUT = timedelta(seconds=30)
DELIVERY_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))
#: workflow.patched id of the retention timer and erasure after a case closes. Runs whose
#: history predates it (tests/histories/before-retention/) end when the case closes.
RETENTION_PATCH = "retention-then-erasure"
#: workflow.patched id of OTS periods counted from the ruling's date (``ruled_on``). Runs
#: whose history predates it counted from when kbflow heard of the ruling.
RULING_DATE_PATCH = "ots-from-ruling-date"
_RULINGS = (Event.COURT_RULING, Event.EXTENSION_RULING)
#: workflow.patched id of the plausibility check of a case start (no date of birth after
#: the report, every child under 18 on it). Runs started before it were not checked.
PLAUSIBLE_START_PATCH = "plausible-start"
#: workflow.patched id of the case's progress in its memo (``kbflow.progress.MEMO_KEY``)
#: and search attributes (``kbflow.search_attributes``), upserted on every change. Runs
#: started before it run on without them.
PROGRESS_PATCH = "progress-visible"

#: workflow.patched id of the hand-over of a closed case to its ``RetentionWorkflow``: the
#: case's run completes when the protocol ends. Runs whose history predates it (including
#: runs already sleeping in retention) keep, then erase, the case themselves.
CLOSED_PATCH = "closed-means-closed"

#: workflow.patched id of continue-as-new: a run hands the whole case (``CarriedCase``)
#: to a new run of the same workflow id when Temporal suggests it (history count or
#: size) and when an extension ruling starts a new OTS period, once every update handler
#: has finished. Runs started before it never continue as new.
CONTINUE_PATCH = "continue-as-new"


def _refusal(refused: EventRefused) -> ApplicationError:
    """A validator's refusal as the client receives it: its message (the rule and the
    reason, never a value), its ``RefusalCode`` as the one detail, type ``EventRefused``,
    not retryable. A validator's refusal never enters the history (no patch needed)."""
    return ApplicationError(str(refused), refused.code.value, type="EventRefused",
                            non_retryable=True)


@workflow.defn
class CaseWorkflow:
    """One child-protection case in the aliens chain (PROCESS.md §3, category 3)."""

    @workflow.init
    def __init__(self, start: CaseStart | CarriedCase) -> None:
        if isinstance(start, CarriedCase):  # a continued run: the case as the last one left it
            self._start_digest, self._state = start.start_digest, start.state
            self._pending: list[Packet] = []
            self._retention = start.retention
            self._progress: CaseProgress | None = start.progress
            self._run = start.run
        else:
            self._start_digest = start_digest(start)
            self._state, self._pending = CaseState.start(start, workflow.now(), self._new_id)
            self._retention = (RETENTION_AFTER_CLOSE if start.retention_days is None
                               else timedelta(days=start.retention_days))
            self._progress = None
            self._run = 1
        self._changes = 0
        self._erasure_request: ErasureRequest | None = None
        self._erasure: Erasure | None = None
        self._deliveries_in_flight = 0
        self._visible = False  # run() decides, once: PROGRESS_PATCH
        self._continues = False  # run() decides, once: CONTINUE_PATCH
        self._period_ends_on = self._state.ots_ends_on  # the OTS period this run began in
        self._handed_over = False

    @workflow.run
    async def run(self, start: CaseStart | CarriedCase) -> CaseStatus:
        """Check the start is plausible, deliver the report (step 1), wait on events and
        timers until the case closes, then hand it to its retention workflow (which keeps
        it for the retention period, then erases it) and complete. An ``erase`` update
        while the case is open erases it here, at once.

        A long case continues as new (``CONTINUE_PATCH``): when Temporal suggests it, and
        when an extension ruling starts a new OTS period, the run hands the whole case to
        a new run (``CarriedCase``, ``_continue_as_new``). A continued run starts from that
        state: no start check, no step 1, its timers re-armed from the carried absolute
        times.

        Returns:
            The final ``CaseStatus`` (no personal data). Written under the case's key:
            readable after erasure only when this run erased the case (then under the
            system key); a closed case's retention workflow keeps it in its input.
        """
        self._visible = workflow.patched(PROGRESS_PATCH)
        if isinstance(start, CaseStart) and workflow.patched(PLAUSIBLE_START_PATCH):
            # The CLI checks this before it starts a case; a client that bypasses it gets a
            # failed run with the reason, before anything is disclosed.
            problem = start.implausibility(workflow.now().date())
            if problem:
                raise ApplicationError(f"case start refused: {problem}",
                                       type="ImplausibleStart", non_retryable=True)
        self._continues = workflow.patched(CONTINUE_PATCH)
        packets, self._pending = self._pending, []
        await self._deliver(packets)
        while self._state.phase is not Phase.CLOSED and self._erasure_request is None:
            if self._continues and self._continue_due():
                await self._continue_as_new()  # returns only if the case closed meanwhile
                continue
            self._show_progress()
            await self._wait_for_event_until(self._state.next_timer())
            for reminder in self._state.fire_timers(workflow.now(), self._new_id):
                await self._remind(reminder)
        # Decided as the loop ends, so that a run already sleeping in retention (no
        # CLOSED_PATCH marker in its history) replays and finishes the old way.
        if self._erasure_request is None and workflow.patched(CLOSED_PATCH):
            await self._hand_over_to_retention()
        elif workflow.patched(RETENTION_PATCH):
            await self._keep_then_erase()
        self._show_progress()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state.status()

    def _continue_due(self) -> bool:
        """Whether this run should hand the case to a new one: Temporal suggests it (the
        history's event count or size passed the server's ``limit.historyCount`` /
        ``limit.historySize.suggestContinueAsNew``), or a ruling started a new OTS period
        (an extension ruling moved the OTS end date), so that a case that lasts until the
        child is 18 holds one OTS period per run. The first run keeps the first period:
        most cases never reach an extension and so stay in one run (with the static
        summary their start gave it, which a continued run does not have)."""
        if self._period_ends_on is None:  # no OTS yet, or the first ruling's period
            self._period_ends_on = self._state.ots_ends_on
        new_period = self._state.ots_ends_on != self._period_ends_on
        return new_period or workflow.info().is_continue_as_new_suggested()

    async def _continue_as_new(self) -> None:
        """Continue as new with the whole case (``CarriedCase``), same workflow id.

        First waits until every update handler has finished (an accepted event's packets
        delivered, its outcome returned): Temporal fails updates still running when a
        run ends, while updates it has not yet handed to this run are retried by the
        client on the new run, where the carried state (seen idempotency keys included)
        validates them. Events accepted meanwhile are carried too. Returns without
        continuing if meanwhile the case closed or an ``erase`` arrived (whose handler
        waits for this run's erasure); the run then ends as it would have.

        Raises:
            ContinueAsNewError: always, otherwise (the SDK's way to end the run).
        """
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() or self._erasure_request is not None)
        if self._state.phase is Phase.CLOSED or self._erasure_request is not None:
            return
        self._show_progress()
        progress = self._progress if self._visible else None
        carried = CarriedCase(start_digest=self._start_digest, state=self._state,
                              retention=self._retention, progress=progress,
                              run=self._run + 1)
        workflow.continue_as_new(
            carried,
            # The progress just shown, so the new run starts with it and upserts only
            # what changes; None keeps the run's (a run without PROGRESS_PATCH has none).
            memo=None if progress is None else {MEMO_KEY: progress},
            search_attributes=None if progress is None else typed_search_attributes(progress),
        )

    async def _hand_over_to_retention(self) -> None:
        """Start the closed case's ``RetentionWorkflow`` (a child that outlives this run)
        and wait until it has started: from then on it keeps and erases the case, and this
        run may complete. Its input holds no personal data."""
        self._handed_over = True  # erase updates go to the retention workflow from now on
        # Packets of the closing event are delivered first: an erasure during retention
        # must not destroy the key under a delivery still being retried.
        await workflow.wait_condition(lambda: self._deliveries_in_flight == 0)
        closed_at = self._state.closed_at or workflow.now()
        try:
            await workflow.start_child_workflow(
                RetentionWorkflow.run,
                Retention(case_ref=self._state.record.case_ref, closed_at=closed_at,
                          retention=self._retention, final_status=self._state.status()),
                id=retention_workflow_id(self._state.record.case_ref),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=PublicText.of(Phrase.RETENTION,
                                             case_ref=self._state.record.case_ref),
            )
        except WorkflowAlreadyStartedError:
            # A run reset to before its closing closes again: the case is kept already.
            workflow.logger.info("retention workflow already started")

    async def _keep_then_erase(self) -> None:
        """Keep a closed case for its retention period (GDPR art. 5(1)(e)), or until an
        ``erase`` update, then crypto-shred it."""
        if self._erasure_request is None:
            closed_at = self._state.closed_at or workflow.now()
            self._show_progress()
            while self._erasure_request is None and workflow.now() < closed_at + self._retention:
                await self._wait_for_event_until(closed_at + self._retention)
        request = self._erasure_request or ErasureRequest(
            requested_by="kbflow-retention-timer", reason=ErasureReason.RETENTION_ENDED)
        reason = request.reason.value
        if request.reason is ErasureReason.RETENTION_ENDED:
            reason = retention_reason(self._retention)
        # Packets of events accepted before the request are delivered first: after the
        # key is destroyed they could not be encrypted any more.
        await workflow.wait_condition(lambda: self._deliveries_in_flight == 0)
        self._state.erase(workflow.now(), reason)
        self._erasure = await workflow.execute_activity_method(
            DeliveryActivities.erase_case,
            ErasureOrder(case_ref=self._state.record.case_ref, reason=reason,
                         requested_by=request.requested_by),
            start_to_close_timeout=DELIVERY_TIMEOUT,
            retry_policy=DELIVERY_RETRY,
            summary=PublicText.of(Phrase.ERASE),
        )

    # ---- agency events ----------------------------------------------------------------
    @workflow.update(dynamic=True, description="An agency event; see kbflow.case.RULES")
    async def on_event(self, name: str, args: Sequence[RawValue]) -> EventOutcome:
        """Apply the event named ``name`` and deliver its packets.

        Returns:
            ``EventOutcome``: the packets sent (ids and parties), the phase after the event,
            ``duplicate=True`` for a repeat of an idempotency key.
        """
        event = self._decode(name, args)
        ruling_dates = name in _RULINGS and workflow.patched(RULING_DATE_PATCH)
        try:
            outcome, packets = self._state.apply(name, event, workflow.now(), self._new_id,
                                                 ruling_dates=ruling_dates)
        except EventRefused as refused:  # only if the state moved since validation
            raise ApplicationError(str(refused), type="EventRefused",
                                   non_retryable=True) from None
        self._changes += 1
        await self._deliver(packets)
        return outcome

    @on_event.validator
    def validate_event(self, name: str, args: Sequence[RawValue]) -> None:
        """Refuse a malformed, oversized, unknown, wrong-sender, out-of-order or unweighed
        event, a contradicting V-nummer or a ruling without a plausible date, and every
        event once the case is to be erased."""
        try:
            if self._erasure_request is not None:
                raise EventRefused("the case is being erased; no event is accepted",
                                   RefusalCode.ERASING)
            event = self._decode(name, args)
            problem = body_size_problem(event, name)
            if problem:
                raise EventRefused(problem, RefusalCode.TOO_LARGE)
            self._state.admit(name, event, workflow.now())
        except EventRefused as refused:
            raise _refusal(refused) from None

    @workflow.update
    async def erase(self, request: ErasureRequest) -> Erasure:
        """Erase the case now (an open case closes as ``erased``): destroy its data key,
        remove its packets, record the erasure; the run then ends.

        Returns:
            The erasure record (no personal data).
        """
        if self._erasure_request is None:
            self._erasure_request = request
            self._changes += 1
        await workflow.wait_condition(lambda: self._erasure is not None)
        assert self._erasure is not None
        return self._erasure

    @erase.validator
    def validate_erase(self, request: ErasureRequest) -> None:
        """Refuse an erasure once the case is erased already, or once it is handed to
        its retention workflow (which takes the erasure instead)."""
        if self._state.erased_at is not None:
            raise _refusal(EventRefused("erase: the case is erased already",
                                        RefusalCode.ERASED))
        if self._handed_over:
            raise _refusal(EventRefused(
                "erase: the case is closed and kept by workflow "
                f"{retention_workflow_id(self._state.record.case_ref)}; send the erasure "
                "there", RefusalCode.CLOSED))

    # ---- queries ----------------------------------------------------------------------
    @workflow.query
    def status(self) -> CaseStatus:
        """Phase, end state, steps done, what is awaited, OTS end; no personal data."""
        return self._state.status()

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        """Every event, packet, reminder, escalation and timer of the case, in order."""
        return list(self._state.timeline)

    @workflow.query
    def awaiting(self) -> list[Awaited]:
        """Which party is awaited for which event, until when."""
        return list(self._state.awaited)

    # ---- helpers ----------------------------------------------------------------------
    async def _wait_for_event_until(self, due: datetime | None) -> None:
        """Sleep (durably) until an event changes the case or ``due`` passes."""
        now = workflow.now()
        if due is not None and due <= now:
            return
        seen = self._changes
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._changes != seen,
                timeout=None if due is None else due - now,
                timeout_summary=PublicText.of(Phrase.NEXT_DEADLINE),
            )

    @staticmethod
    def _new_id() -> str:
        return str(workflow.uuid4())

    @staticmethod
    def _decode(name: str, args: Sequence[RawValue]) -> AgencyEvent:
        model = rule_of(name).model
        if len(args) != 1:
            raise EventRefused(f"event: '{name}' takes exactly one body",
                               RefusalCode.MALFORMED)
        try:
            event = workflow.payload_converter().from_payload(args[0].payload, model)
        except ValidationError as errors:
            raise EventRefused(f"{name}: {describe(errors, model)}",
                               RefusalCode.MALFORMED) from None
        except Exception:
            raise EventRefused(f"{name}: the body is not a JSON object of the "
                               f"{name} shape", RefusalCode.MALFORMED) from None
        assert isinstance(event, AgencyEvent)
        return event

    async def _deliver(self, packets: list[Packet]) -> None:
        self._deliveries_in_flight += 1
        try:
            await self._deliver_all(packets)
        finally:
            self._deliveries_in_flight -= 1

    async def _deliver_all(self, packets: list[Packet]) -> None:
        await asyncio.gather(*(
            workflow.execute_activity_method(
                DeliveryActivities.deliver_packet,
                packet,
                start_to_close_timeout=DELIVERY_TIMEOUT,
                retry_policy=DELIVERY_RETRY,
                summary=PublicText.of(Phrase.DELIVERY, step=packet.step,
                                      sender=packet.sender, recipient=packet.recipient),
            )
            for packet in packets
        ))

    async def _remind(self, reminder: Reminder) -> None:
        await workflow.execute_activity_method(
            DeliveryActivities.send_reminder,
            reminder,
            start_to_close_timeout=DELIVERY_TIMEOUT,
            retry_policy=DELIVERY_RETRY,
            summary=PublicText.of(Phrase.REMINDER, party=reminder.party,
                                  event=reminder.event),
        )

    def _show_progress(self) -> None:
        """Show where the case stands: its current details (always) and, for runs with
        ``PROGRESS_PATCH``, its memo and search attributes, upserted when they changed."""
        state = self._state
        progress = progress_of(state, workflow.now())
        kept_until = None if state.closed_at is None else state.closed_at + self._retention
        set_details(details_of(progress, kept_until, state.erased_at))
        if self._visible and progress != self._progress:
            updates = search_attribute_updates(progress, since=self._progress)
            self._progress = progress
            workflow.upsert_memo({MEMO_KEY: progress})
            if updates:
                workflow.upsert_search_attributes(updates)
