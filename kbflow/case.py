"""The case as a state machine: which event is allowed when, what it discloses, and what
the case waits for until when. Pure and deterministic: time and ids come in as arguments,
so ``workflows/case_workflow.py`` only orchestrates (PROCESS.md §3, §4).

Reading order follows PROCESS.md §3: ``CaseState.start`` is step 1; ``_RULES`` lists
every event with the phase it belongs to; ``_apply_<event>`` does the step.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
from collections.abc import Callable
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kbflow.events import (
    EVENTS,
    AgencyEvent,
    ApplicationRejected,
    CaseStart,
    CourtRulingEvent,
    ExtensionRuling,
    InvestigationDecision,
    InvestigationResult,
    Weighing,
)
from kbflow.items import CourtRequest, CourtRuling, Measure
from kbflow.packets import Packet, project_packet
from kbflow.process import (
    ESCALATION_GRACE,
    EXTENSION_QUESTION_LEAD,
    PROCESS_TABLE,
    Party,
    Step,
)
from kbflow.record import CaseRecord

_VIEW = ConfigDict(frozen=True, extra="forbid")


class EventRefused(ValueError):
    """An event that may not be applied now. The message names the field or rule and the
    reason, never a personal value; the case is unchanged."""


class Phase(StrEnum):
    """Where a case stands in PROCESS.md §3."""

    REPORTED = "reported"  # step 1 done; the RvdK decides to announce (step 2)
    ANNOUNCED = "announced"  # step 2 done; step 3 replies, then the RvdK's decision
    INVESTIGATING = "investigating"  # the RvdK investigates; step 5 next
    AWAITING_RULING = "awaiting_ruling"  # a measure was requested; step 6 next
    OTS = "ots"  # an OTS runs: steps 7-12, extension rulings
    CLOSED = "closed"


class EndState(StrEnum):
    """How a case ended."""

    NO_INVESTIGATION = "no_investigation"
    NO_MEASURE = "no_measure"
    MEASURE_REFUSED = "measure_refused"
    CUSTODY_TERMINATED = "custody_terminated"
    OTS_ENDED = "ots_ended"
    HANDED_OVER = "handed_over"
    ERASED = "erased"  # erased on request while still open


class Awaited(BaseModel):
    """Something the case waits for: ``party`` should send ``event`` (by ``due``, if set).

    At ``due`` the party is reminded; ``ESCALATION_GRACE`` later an escalation is recorded.
    """

    model_config = ConfigDict(extra="forbid")

    party: Party
    event: str
    step: Step | None
    since: dt.datetime
    due: dt.datetime | None = None
    reminded: bool = False
    escalated: bool = False

    @property
    def escalates_at(self) -> dt.datetime | None:
        """When an unanswered wait is escalated."""
        return None if self.due is None else self.due + ESCALATION_GRACE


TimelineKind = Literal[
    "event", "packet", "reminder", "escalation", "timer", "closed", "erasure"]


class TimelineEntry(BaseModel):
    """One line of the case's history; never personal data."""

    model_config = _VIEW

    at: dt.datetime
    kind: TimelineKind
    step: Step | None = None
    party: Party | None = None
    detail: str


class Reminder(BaseModel):
    """A reminder to a party that it is late (no personal data)."""

    model_config = _VIEW

    case_ref: str
    party: Party
    event: str
    step: Step | None
    due: dt.datetime
    notice_id: str


class PacketRef(BaseModel):
    """Where a packet went, without its contents."""

    model_config = _VIEW

    packet_id: str
    step: Step
    sender: Party
    recipient: Party


class EventOutcome(BaseModel):
    """What an accepted event did; returned to the sender. No personal data."""

    model_config = _VIEW

    event: str
    sender: Party
    duplicate: bool = Field(default=False, description="True if this key was seen before")
    packets: tuple[PacketRef, ...] = ()
    phase: Phase
    end_state: EndState | None = None


class CaseStatus(BaseModel):
    """The case at a glance (workflow query ``status``). No personal data."""

    model_config = _VIEW

    case_ref: str
    phase: Phase
    end_state: EndState | None
    steps_done: tuple[int, ...]
    awaiting: tuple[Awaited, ...]
    ots_ends_on: dt.date | None
    escalations: int
    closed_at: dt.datetime | None
    erased_at: dt.datetime | None = None


class _Seen(BaseModel):
    digest: str
    outcome: EventOutcome


def _add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return day.replace(year=year, month=month,
                       day=min(day.day, calendar.monthrange(year, month)[1]))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def event_digest(name: str, event: AgencyEvent) -> str:
    """A fingerprint of an event, to tell a true repeat from a reused idempotency key."""
    return hashlib.sha256(f"{name}\n{event.model_dump_json()}".encode()).hexdigest()


NewId = Callable[[], str]


class CaseState(BaseModel):
    """One case's full state. Mutated only through ``start``, ``apply`` and ``fire_timers``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    record: CaseRecord
    phase: Phase = Phase.REPORTED
    end_state: EndState | None = None
    closed_at: dt.datetime | None = None
    weighings: dict[Party, Weighing] = Field(default_factory=dict)
    awaited: list[Awaited] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    seen: dict[str, _Seen] = Field(default_factory=dict)
    steps_done: list[int] = Field(default_factory=list)
    vv_status: Literal["none", "applied", "rejected"] = "none"
    advice_cycle: Literal["none", "asked", "available", "no_advice", "requested", "advised"] = (
        "none"
    )
    extension_cycle: Literal["none", "extended", "requested", "advised"] = "none"
    ots_ends_on: dt.date | None = None
    extension_question_raised: bool = False
    extension_ruled_for: dt.date | None = None  # the OTS end date an extension was ruled on
    erased_at: dt.datetime | None = None

    # ---- step 1 -------------------------------------------------------------------------
    @classmethod
    def start(
        cls, start: CaseStart, now: dt.datetime, new_id: NewId
    ) -> tuple[CaseState, list[Packet]]:
        """Open a case with the step-1 report; returns the state and the report's packets."""
        record = CaseRecord.open(start)
        state = cls(record=record, weighings={start.reporter: start.weighing})
        state._log(now, "event", "case reported", Step.REPORT, start.reporter)
        packets = state._disclose(Step.REPORT, start.reporter, now, new_id)
        state._await(Party.RVDK, "announce_investigation", now)
        return state, packets

    # ---- events -------------------------------------------------------------------------
    def check(self, name: str, event: AgencyEvent, now: dt.datetime) -> EventOutcome | None:
        """Whether ``event`` may be applied now.

        Returns:
            The earlier outcome if this is a repeat of an event already applied, else None.

        Raises:
            EventRefused: unknown event, closed case, wrong sender, reused idempotency key,
                an item outside the sender's flow, no weighing on record, or out of order.
        """
        spec = EVENTS.get(name)
        if spec is None:
            raise EventRefused(f"event: unknown event '{name}'; known: {', '.join(EVENTS)}")
        if not isinstance(event, spec.model):
            raise EventRefused(f"event: '{name}' needs a {spec.model.__name__} body")
        seen = self.seen.get(event.idempotency_key)
        if seen is not None:
            if seen.digest != event_digest(name, event):
                raise EventRefused(
                    "idempotency_key: already used for a different event in this case"
                )
            return seen.outcome
        if self.phase is Phase.CLOSED:
            raise EventRefused(f"case is closed ({self.end_state}); no event is accepted")
        if event.sender not in spec.senders:
            allowed = ", ".join(p.value for p in spec.senders)
            raise EventRefused(f"sender: {event.sender.value} may not send '{name}' "
                               f"(allowed: {allowed})")
        if spec.step is not None:
            allowed_items = PROCESS_TABLE[spec.step].flow_of(event.sender).items
            for item in event.item_values():
                if item not in allowed_items:
                    raise EventRefused(f"{item.value}: not part of step {int(spec.step)} "
                                       f"from {event.sender.value} (PROCESS.md §5)")
            for number in getattr(event, "v_number", None) or ():
                if number.person >= len(self.record.persons):
                    raise EventRefused("v_number.person: the case has no person with that index")
            if event.sender not in self.weighings and event.weighing is None:
                raise EventRefused(
                    f"weighing: {event.sender.value} has no weighing on record for this case; "
                    "send it with this event or as a 'weighing' event first (PROCESS.md §2)"
                )
        rule = _RULES[name]
        reason = rule(self, event, now)
        if reason:
            raise EventRefused(f"out of order: {reason}")
        return None

    def apply(
        self, name: str, event: AgencyEvent, now: dt.datetime, new_id: NewId
    ) -> tuple[EventOutcome, list[Packet]]:
        """Check and apply ``event``; returns its outcome and the packets to deliver.

        A repeat returns the first outcome and no packets. Raises ``EventRefused`` as
        ``check`` does, before changing anything.
        """
        earlier = self.check(name, event, now)
        if earlier is not None:
            return earlier.model_copy(update={"duplicate": True}), []
        spec = EVENTS[name]
        if event.weighing is not None:
            self.weighings[event.sender] = event.weighing
        self._log(now, "event", name, spec.step, event.sender)
        self._satisfy(event.sender, name)
        packets = _APPLY[name](self, event, now, new_id)
        outcome = EventOutcome(
            event=name,
            sender=event.sender,
            packets=tuple(
                PacketRef(packet_id=p.packet_id, step=p.step, sender=p.sender,
                          recipient=p.recipient)
                for p in packets
            ),
            phase=self.phase,
            end_state=self.end_state,
        )
        self.seen[event.idempotency_key] = _Seen(
            digest=event_digest(name, event), outcome=outcome
        )
        return outcome, packets

    # ---- timers -------------------------------------------------------------------------
    def next_timer(self) -> dt.datetime | None:
        """The earliest moment a timer is due: a reminder, an escalation, the extension
        question or the end of the OTS. ``None`` when nothing is timed."""
        moments: list[dt.datetime] = []
        for wait in self.awaited:
            if wait.due is not None and not wait.reminded:
                moments.append(wait.due)
            elif wait.escalates_at is not None and not wait.escalated:
                moments.append(wait.escalates_at)
        if self.phase is Phase.OTS and self.ots_ends_on is not None:
            if not self.extension_question_raised:
                moments.append(self._extension_question_at())
            moments.append(_midnight(self.ots_ends_on))
        return min(moments, default=None)

    def fire_timers(self, now: dt.datetime, new_id: NewId) -> list[Reminder]:
        """Do what is due at ``now``: remind late parties, record escalations, raise the
        extension question (PROCESS.md §4), end an OTS that was not extended."""
        reminders: list[Reminder] = []
        for wait in list(self.awaited):
            if wait.due is not None and not wait.reminded and wait.due <= now:
                wait.reminded = True
                reminders.append(Reminder(case_ref=self.record.case_ref, party=wait.party,
                                          event=wait.event, step=wait.step, due=wait.due,
                                          notice_id=new_id()))
                self._log(now, "reminder", f"{wait.event} was due", wait.step, wait.party)
            escalate_at = wait.escalates_at
            if escalate_at is not None and not wait.escalated and escalate_at <= now:
                wait.escalated = True
                self._log(now, "escalation", f"{wait.event} still missing", wait.step,
                          wait.party)
        if self.phase is Phase.OTS and self.ots_ends_on is not None:
            if not self.extension_question_raised and self._extension_question_at() <= now:
                self.extension_question_raised = True
                self._log(now, "timer", f"extension question: OTS ends {self.ots_ends_on}",
                          Step.COURT_RULING, Party.RVDK)
                self._await(Party.RVDK, "extension_ruling", now,
                            due=_midnight(self.ots_ends_on) - 2 * ESCALATION_GRACE)
            if _midnight(self.ots_ends_on) <= now:
                self._close(EndState.OTS_ENDED, now)
        return reminders

    # ---- views --------------------------------------------------------------------------
    def status(self) -> CaseStatus:
        """The case at a glance, free of personal data."""
        return CaseStatus(
            case_ref=self.record.case_ref,
            phase=self.phase,
            end_state=self.end_state,
            steps_done=tuple(self.steps_done),
            awaiting=tuple(self.awaited),
            ots_ends_on=self.ots_ends_on,
            escalations=sum(1 for entry in self.timeline if entry.kind == "escalation"),
            closed_at=self.closed_at,
            erased_at=self.erased_at,
        )

    # ---- erasure ------------------------------------------------------------------------
    def erase(self, now: dt.datetime, reason: str) -> None:
        """Record the case's erasure; an open case closes as ``erased``. Its record stays in
        memory only until the run ends: the data key, history and packets are shredded."""
        if self.phase is not Phase.CLOSED:
            self._close(EndState.ERASED, now)
        self.erased_at = now
        self._log(now, "erasure", reason)

    # ---- helpers ------------------------------------------------------------------------
    def _log(self, now: dt.datetime, kind: TimelineKind, detail: str, step: Step | None = None,
             party: Party | None = None) -> None:
        self.timeline.append(
            TimelineEntry(at=now, kind=kind, step=step, party=party, detail=detail)
        )

    def _disclose(self, step: Step, sender: Party, now: dt.datetime, new_id: NewId,
                  record: CaseRecord | None = None) -> list[Packet]:
        flow = PROCESS_TABLE[step].flow_of(sender)
        packets = [
            project_packet(record or self.record, step, sender, recipient,
                           packet_id=new_id(), created_at=now)
            for recipient in flow.recipients
        ]
        for packet in packets:
            items = ", ".join(sorted(item.value for item in packet.items)) or "NAW only"
            self._log(now, "packet", f"{items} to {packet.recipient.value}",
                      step, sender)
        if int(step) not in self.steps_done:
            self.steps_done.append(int(step))
        return packets

    def _await(self, party: Party, event: str, now: dt.datetime,
               due: dt.datetime | None = None) -> None:
        step = EVENTS[event].step
        if due is None and step is not None and PROCESS_TABLE[step].reply_due is not None:
            reply_due = PROCESS_TABLE[step].reply_due
            assert reply_due is not None
            due = now + reply_due
        self.awaited.append(Awaited(party=party, event=event, step=step, since=now, due=due))

    def _awaits(self, party: Party, event: str) -> bool:
        return any(w.party is party and w.event == event for w in self.awaited)

    def _satisfy(self, party: Party, event: str) -> None:
        self.awaited = [w for w in self.awaited if not (w.party is party and w.event == event)]

    def _close(self, end_state: EndState, now: dt.datetime) -> None:
        self.phase = Phase.CLOSED
        self.end_state = end_state
        self.closed_at = now
        self.awaited = []
        self._log(now, "closed", end_state.value)

    def _extension_question_at(self) -> dt.datetime:
        assert self.ots_ends_on is not None
        return _midnight(self.ots_ends_on) - EXTENSION_QUESTION_LEAD


# ---- order rules: None when allowed, else the reason --------------------------------------
Rule = Callable[[CaseState, AgencyEvent, dt.datetime], str | None]


def _in_phase(*phases: Phase) -> Rule:
    def rule(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
        if state.phase in phases:
            return None
        return f"the case is {state.phase.value}; expected {' or '.join(p.value for p in phases)}"

    return rule


def _awaited(name: str) -> Rule:
    def rule(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
        if state._awaits(event.sender, name):
            return None
        return f"no '{name}' is expected from {event.sender.value} now"

    return rule


def _decision_rule(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
    if state.phase is not Phase.ANNOUNCED:
        return f"the case is {state.phase.value}; expected announced"
    for wait in state.awaited:
        if wait.event == "residence_information" and not wait.escalated:
            return (f"step 3 reply of {wait.party.value} is awaited until "
                    f"{wait.escalates_at:%Y-%m-%d}")
    return None


def _court_ruling_rule(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
    assert isinstance(event, CourtRulingEvent)
    if state.phase is not Phase.AWAITING_RULING:
        return f"the case is {state.phase.value}; expected awaiting_ruling"
    requested = state.record.court_request
    if event.measure is not Measure.REFUSED and (
        requested is None or event.measure.value != requested.value
    ):
        return "measure: the court rules on the requested measure (or refuses it)"
    return None


def _extension_rule(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
    if state.phase is not Phase.OTS:
        return f"the case is {state.phase.value}; expected ots"
    ruled = state.extension_ruled_for
    if ruled is not None and now < _midnight(ruled):
        # BW 1:260: one extension (of at most a year) per OTS period
        return "the extension of the current OTS period is ruled on already"
    return None


def _cycle(attr: str, *allowed: str) -> Rule:
    def rule(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
        if state.phase is not Phase.OTS:
            return f"the case is {state.phase.value}; expected ots"
        value = getattr(state, attr)
        if value in allowed:
            return None
        return f"{attr.replace('_', ' ')} is '{value}'"

    return rule


def _handover_rule(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
    if state.phase is not Phase.OTS:
        return f"the case is {state.phase.value}; expected ots"
    if state.vv_status == "applied":
        return "a VV application is pending or granted; a warm handover needs no VV"
    return None


_RULES: dict[str, Rule] = {
    "weighing": lambda state, event, now: None,
    "announce_investigation": _in_phase(Phase.REPORTED),
    "residence_information": _awaited("residence_information"),
    "investigation_decision": _decision_rule,
    "application_rejected": _in_phase(Phase.ANNOUNCED, Phase.INVESTIGATING,
                                      Phase.AWAITING_RULING, Phase.OTS),
    "investigation_result": _in_phase(Phase.INVESTIGATING),
    "court_ruling": _court_ruling_rule,
    "advice_availability_request": _cycle("advice_cycle", "none"),
    "advice_availability": _awaited("advice_availability"),
    "advice_request": _cycle("advice_cycle", "no_advice"),
    "advice": _awaited("advice"),
    "extension_ruling": _extension_rule,
    "extension_advice_request": _cycle("extension_cycle", "extended"),
    "extension_advice": _awaited("extension_advice"),
    "warm_handover": _handover_rule,
}


# ---- transitions: update the record and phase, return the packets ------------------------
Transition = Callable[[CaseState, AgencyEvent, dt.datetime, NewId], list[Packet]]


def _record_weighing(state: CaseState, event: AgencyEvent, now: dt.datetime,
                     new_id: NewId) -> list[Packet]:
    return []


def _announce(state: CaseState, event: AgencyEvent, now: dt.datetime,
              new_id: NewId) -> list[Packet]:
    state.phase = Phase.ANNOUNCED
    for party in PROCESS_TABLE[Step.RESIDENCE_INFORMATION].senders:
        state._await(party, "residence_information", now)
    state._await(Party.RVDK, "investigation_decision", now)
    return state._disclose(Step.ANNOUNCE_INVESTIGATION, event.sender, now, new_id)


def _disclosing(step: Step, then: Callable[[CaseState, AgencyEvent, dt.datetime], None]
                | None = None) -> Transition:
    """A transition that merges the event's items into the record, then discloses them."""

    def transition(state: CaseState, event: AgencyEvent, now: dt.datetime,
                   new_id: NewId) -> list[Packet]:
        state.record = state.record.merge(event)
        packets = state._disclose(step, event.sender, now, new_id)
        if then is not None:
            then(state, event, now)
        return packets

    return transition


def _decide(state: CaseState, event: AgencyEvent, now: dt.datetime,
            new_id: NewId) -> list[Packet]:
    assert isinstance(event, InvestigationDecision)
    if event.investigate:
        state.phase = Phase.INVESTIGATING
        state._await(Party.RVDK, "investigation_result", now)
    else:
        state._close(EndState.NO_INVESTIGATION, now)
    return []


def _after_rejection(state: CaseState, event: AgencyEvent, now: dt.datetime) -> None:
    assert isinstance(event, ApplicationRejected)
    state.vv_status = "rejected"


def _after_result(state: CaseState, event: AgencyEvent, now: dt.datetime) -> None:
    assert isinstance(event, InvestigationResult)
    if event.court_request is CourtRequest.NONE:
        state._close(EndState.NO_MEASURE, now)
    else:
        state.phase = Phase.AWAITING_RULING
        state._await(Party.RVDK, "court_ruling", now)


def _court_ruling(state: CaseState, event: AgencyEvent, now: dt.datetime,
                  new_id: NewId) -> list[Packet]:
    assert isinstance(event, CourtRulingEvent)
    today = now.date()
    ends_on = None if event.ots_months is None else _add_months(today, event.ots_months)
    ruling = CourtRuling(measure=event.measure, ruled_on=today, ots_ends_on=ends_on,
                         summary=event.summary)
    state.record = state.record.merge(event, court_ruling=ruling)
    packets = state._disclose(Step.COURT_RULING, event.sender, now, new_id)
    if event.measure is Measure.OTS:
        state.phase = Phase.OTS
        state.ots_ends_on = ends_on
    elif event.measure is Measure.CUSTODY_TERMINATION:
        state._close(EndState.CUSTODY_TERMINATED, now)  # PROCESS.md step 6: ends the KB process
    else:
        state._close(EndState.MEASURE_REFUSED, now)
    return packets


def _extension_ruling(state: CaseState, event: AgencyEvent, now: dt.datetime,
                      new_id: NewId) -> list[Packet]:
    assert isinstance(event, ExtensionRuling)
    assert state.ots_ends_on is not None
    ends_on = state.ots_ends_on
    if event.ots_months is not None:
        ends_on = _add_months(ends_on, event.ots_months)
    ruling = CourtRuling(measure=Measure.OTS, ruled_on=now.date(), extension=event.extended,
                         ots_ends_on=ends_on, summary=event.summary)
    state.record = state.record.merge(event, court_ruling=ruling)
    packets = state._disclose(Step.COURT_RULING, event.sender, now, new_id)
    state.extension_ruled_for = state.ots_ends_on
    if event.extended:
        state.ots_ends_on = ends_on
        state.extension_question_raised = False
        state.extension_cycle = "extended"
    else:
        state.extension_question_raised = True  # answered: the OTS ends on its end date
    return packets


def _set(attr: str, value: str, then_await: tuple[Party, str] | None = None
         ) -> Callable[[CaseState, AgencyEvent, dt.datetime], None]:
    def then(state: CaseState, event: AgencyEvent, now: dt.datetime) -> None:
        setattr(state, attr, value)
        if then_await is not None:
            state._await(*then_await, now)

    return then


def _after_availability(state: CaseState, event: AgencyEvent, now: dt.datetime) -> None:
    if state.record.advice_available:
        state.advice_cycle = "available"
    else:
        state.advice_cycle = "no_advice"
        state._await(Party.IND, "advice_request", now)


def _after_handover(state: CaseState, event: AgencyEvent, now: dt.datetime) -> None:
    state._close(EndState.HANDED_OVER, now)


def _ask_availability(state: CaseState, event: AgencyEvent, now: dt.datetime) -> None:
    state.vv_status = "applied"
    state.advice_cycle = "asked"
    state._await(Party.DTV, "advice_availability", now)


_APPLY: dict[str, Transition] = {
    "weighing": _record_weighing,
    "announce_investigation": _announce,
    "residence_information": _disclosing(Step.RESIDENCE_INFORMATION),
    "investigation_decision": _decide,
    "application_rejected": _disclosing(Step.REJECTION_OR_WITHDRAWAL, _after_rejection),
    "investigation_result": _disclosing(Step.INVESTIGATION_RESULT, _after_result),
    "court_ruling": _court_ruling,
    "advice_availability_request": _disclosing(Step.ADVICE_AVAILABILITY, _ask_availability),
    "advice_availability": _disclosing(Step.ADVICE_AVAILABILITY, _after_availability),
    "advice_request": _disclosing(Step.ADVICE_REQUEST,
                                  _set("advice_cycle", "requested", (Party.DTV, "advice"))),
    "advice": _disclosing(Step.ADVICE, _set("advice_cycle", "advised")),
    "extension_ruling": _extension_ruling,
    "extension_advice_request": _disclosing(
        Step.EXTENSION_ADVICE_REQUEST,
        _set("extension_cycle", "requested", (Party.DTV, "extension_advice"))),
    "extension_advice": _disclosing(Step.EXTENSION_ADVICE, _set("extension_cycle", "advised")),
    "warm_handover": _disclosing(Step.WARM_HANDOVER, _after_handover),
}
