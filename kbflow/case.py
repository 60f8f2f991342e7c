"""The case as a state machine: which event is allowed when, what it does, what it awaits
next (PROCESS.md §3, §4). Pure and deterministic: time and ids come in as arguments, so
``workflows/case_workflow.py`` only orchestrates.

Read it top to bottom against PROCESS.md §3:

1. the case's states: ``Phase`` and its typed sub-states (``VvStatus``, ``AdviceCycle``,
   ``ExtensionCycle``);
2. ``RULES``: one ``Rule`` per ``kbflow.events.Event``, in §3 order — its body model, the
   step it discloses in (senders, recipients, items and reply deadline come from
   ``kbflow.process.PROCESS_TABLE``), where it is allowed (``Allowed``), its named effect,
   the sub-states it sets and what it awaits next (``Next``);
3. ``CaseState``: ``start`` (step 1), ``check`` and ``apply`` (any event, by its rule),
   ``fire_timers`` (reply deadlines, the extension question, the end of an OTS);
4. the guards and effects the table names, in table order.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kbflow.events import (
    Advice,
    AdviceAvailability,
    AdviceAvailabilityRequest,
    AdviceRequest,
    AgencyEvent,
    AnnounceInvestigation,
    ApplicationRejected,
    CaseStart,
    CourtRulingEvent,
    Event,
    ExtensionAdviceRequest,
    ExtensionRuling,
    InvestigationDecision,
    InvestigationResult,
    RecordWeighing,
    ResidenceInformation,
    VNumberCorrection,
    WarmHandover,
    Weighing,
)
from kbflow.items import CourtRequest, CourtRuling, Measure
from kbflow.packets import Packet, project_packet
from kbflow.process import (
    ESCALATION_GRACE,
    EXTENSION_QUESTION_LEAD,
    PROCESS_TABLE,
    Item,
    Party,
    Step,
    reporters,
)
from kbflow.public import CaseRef, Public
from kbflow.record import CaseRecord

_VIEW = ConfigDict(frozen=True, extra="forbid")


class RefusalCode(StrEnum):
    """Why an event was refused, in one machine-readable word: what operator logs and the
    ``kbflow_events_refused_total`` metric carry (never the message, never a value)."""

    MALFORMED = "malformed"  # not the event's body shape, or a field out of its bounds
    TOO_LARGE = "too_large"  # over kbflow.items.BODY_MAX_BYTES
    UNKNOWN_EVENT = "unknown_event"
    WRONG_SENDER = "wrong_sender"
    NOT_IN_FLOW = "not_in_flow"  # an item outside the sender's flow (PROCESS.md §5)
    NO_WEIGHING = "no_weighing"  # the sender's first disclosure without its weighing
    UNKNOWN_PERSON = "unknown_person"  # a V-nummer for a person the case does not have
    CLOSED = "closed"  # the case is closed
    NOT_NOW = "not_now"  # out of order: wrong phase, cycle or guard
    NOT_AWAITED = "not_awaited"  # out of order: nothing of the kind awaited from the sender
    V_NUMBER_TWICE = "v_number_twice"  # one person given two V-nummers
    V_NUMBER_CONTRADICTION = "v_number_contradiction"
    DUPLICATE_CONFLICT = "duplicate_conflict"  # idempotency key reused for another event
    RULING_DATE = "ruling_date"  # ruled_on missing, in the future or before the report
    ERASING = "erasing"  # the case is being erased
    ERASED = "erased"  # an erase of a case erased already


class EventRefused(ValueError):
    """An event that may not be applied now. The message names the field or rule and the
    reason, never a personal value; the case is unchanged. ``code`` says why in one word
    (``RefusalCode``; the first reason's when the message lists several)."""

    def __init__(self, message: str, code: RefusalCode) -> None:
        super().__init__(message)
        self.code = code


# ---- 1. states --------------------------------------------------------------------------


class Phase(StrEnum):
    """Where a case stands in PROCESS.md §3."""

    REPORTED = "reported"  # step 1 done; the RvdK decides to announce (step 2)
    ANNOUNCED = "announced"  # step 2 done; step 3 replies, then the RvdK's decision
    INVESTIGATING = "investigating"  # the RvdK investigates; step 5 next
    AWAITING_RULING = "awaiting_ruling"  # a measure was requested; step 6 next
    OTS = "ots"  # an OTS runs: steps 7-12, extension rulings
    CLOSED = "closed"


#: Every phase in which a case is open.
OPEN = (Phase.REPORTED, Phase.ANNOUNCED, Phase.INVESTIGATING, Phase.AWAITING_RULING, Phase.OTS)


class VvStatus(StrEnum):
    """The residence-permit (VV) application as the case knows it (steps 4, 7, 12)."""

    NONE = "none"  # none filed as far as the case knows
    APPLIED = "applied"  # filed (step 7 asked about it): pending or granted
    REJECTED = "rejected"  # rejected or withdrawn (step 4)


class AdviceCycle(StrEnum):
    """Steps 7-9 during an OTS: is there a DT&V advice, and was one asked for."""

    NONE = "none"
    ASKED = "asked"  # step 7 question sent
    AVAILABLE = "available"  # step 7 answer: an advice exists
    NO_ADVICE = "no_advice"  # step 7 answer: none; IND may ask for one (step 8)
    REQUESTED = "requested"  # step 8 sent; DT&V advises (step 9)
    ADVISED = "advised"  # step 9 done


class ExtensionCycle(StrEnum):
    """Steps 10-11 after an OTS is extended."""

    NONE = "none"
    EXTENDED = "extended"  # the judge extended the OTS; IND may ask for a new advice
    REQUESTED = "requested"  # step 10 sent; DT&V advises (step 11)
    ADVISED = "advised"  # step 11 done


SubState = VvStatus | AdviceCycle | ExtensionCycle


class EndState(StrEnum):
    """How a case ended."""

    NO_INVESTIGATION = "no_investigation"
    NO_MEASURE = "no_measure"
    MEASURE_REFUSED = "measure_refused"
    CUSTODY_TERMINATED = "custody_terminated"
    OTS_ENDED = "ots_ended"
    HANDED_OVER = "handed_over"
    ERASED = "erased"  # erased on request while still open


# ---- 2. the rules -----------------------------------------------------------------------

#: A named check beyond phase and sub-state: ``None`` when allowed, else the reason.
Guard = Callable[["CaseState", AgencyEvent, dt.datetime], "str | None"]
#: A named effect: changes the case and returns the packets to deliver.
Effect = Callable[["CaseState", "Rule", AgencyEvent, dt.datetime, "NewId"], "list[Packet]"]
NewId = Callable[[], str]


@dataclass(frozen=True)
class Allowed:
    """Where an event is allowed: in one of ``phases``; if ``awaited``, only while the case
    awaits it from its sender; with the sub-state in the given values; and if ``guard`` is
    set, when it finds no reason against."""

    phases: tuple[Phase, ...]
    awaited: bool = False
    advice_cycle: tuple[AdviceCycle, ...] = ()
    extension_cycle: tuple[ExtensionCycle, ...] = ()
    guard: Guard | None = None


@dataclass(frozen=True)
class Next:
    """What an event awaits next: ``party`` should send ``event``; only if, after the
    effect, the case is in phase or sub-state ``when`` (if given). Its deadline is the
    step's ``reply_due`` in the process table."""

    party: Party
    event: Event
    when: Phase | SubState | None = None


@dataclass(frozen=True)
class Rule:
    """One row of the case rules: an event, its body model, the step it discloses in
    (``None``: it discloses nothing), where it is allowed, its effect, the sub-states it
    sets and what it awaits next. Who may send it: the step's senders in the process
    table, unless ``only`` names them."""

    event: Event
    model: type[AgencyEvent]
    step: Step | None
    allowed: Allowed
    effect: Effect
    sets: tuple[SubState, ...] = ()
    awaits: tuple[Next, ...] = ()
    only: tuple[Party, ...] = ()

    @property
    def senders(self) -> tuple[Party, ...]:
        """Who may send this event."""
        if self.only:
            return self.only
        assert self.step is not None
        return PROCESS_TABLE[self.step].senders


# The guards and effects named in the table are defined in section 4 below; the table
# refers to them by name so that "go to definition" leads from a row to its code.


def _table() -> tuple[Rule, ...]:
    S = Step
    R, IND, DTV = Party.RVDK, Party.IND, Party.DTV
    return (
        Rule(Event.WEIGHING, RecordWeighing, None,
             Allowed(OPEN), record_weighing,
             only=(R, IND, DTV, Party.VT, Party.COA, Party.AVIM)),
        # step 2: the RvdK announces; IND and DT&V reply (step 3), then the RvdK decides
        Rule(Event.ANNOUNCE_INVESTIGATION, AnnounceInvestigation, S.ANNOUNCE_INVESTIGATION,
             Allowed((Phase.REPORTED,)), announce_investigation,
             awaits=(Next(IND, Event.RESIDENCE_INFORMATION),
                     Next(DTV, Event.RESIDENCE_INFORMATION),
                     Next(R, Event.INVESTIGATION_DECISION))),
        Rule(Event.RESIDENCE_INFORMATION, ResidenceInformation, S.RESIDENCE_INFORMATION,
             Allowed((Phase.ANNOUNCED,), awaited=True), disclose),
        Rule(Event.INVESTIGATION_DECISION, InvestigationDecision, None,
             Allowed((Phase.ANNOUNCED,), guard=step_3_replies_in), decide_investigation,
             awaits=(Next(R, Event.INVESTIGATION_RESULT, when=Phase.INVESTIGATING),),
             only=(R,)),
        Rule(Event.APPLICATION_REJECTED, ApplicationRejected, S.REJECTION_OR_WITHDRAWAL,
             Allowed((Phase.ANNOUNCED, Phase.INVESTIGATING, Phase.AWAITING_RULING,
                      Phase.OTS)), disclose,
             sets=(VvStatus.REJECTED,)),
        Rule(Event.INVESTIGATION_RESULT, InvestigationResult, S.INVESTIGATION_RESULT,
             Allowed((Phase.INVESTIGATING,)), report_investigation_result,
             awaits=(Next(R, Event.COURT_RULING, when=Phase.AWAITING_RULING),)),
        Rule(Event.COURT_RULING, CourtRulingEvent, S.COURT_RULING,
             Allowed((Phase.AWAITING_RULING,), guard=rules_on_requested_measure),
             pass_on_court_ruling),
        # steps 7-9, during an OTS: is there an advice; if not, IND asks for one
        Rule(Event.ADVICE_AVAILABILITY_REQUEST, AdviceAvailabilityRequest,
             S.ADVICE_AVAILABILITY,
             Allowed((Phase.OTS,), advice_cycle=(AdviceCycle.NONE,)), disclose,
             sets=(VvStatus.APPLIED, AdviceCycle.ASKED),
             awaits=(Next(DTV, Event.ADVICE_AVAILABILITY),), only=(IND,)),
        Rule(Event.ADVICE_AVAILABILITY, AdviceAvailability, S.ADVICE_AVAILABILITY,
             Allowed((Phase.OTS,), awaited=True), answer_advice_availability,
             awaits=(Next(IND, Event.ADVICE_REQUEST, when=AdviceCycle.NO_ADVICE),),
             only=(DTV,)),
        Rule(Event.ADVICE_REQUEST, AdviceRequest, S.ADVICE_REQUEST,
             Allowed((Phase.OTS,), advice_cycle=(AdviceCycle.NO_ADVICE,)), disclose,
             sets=(AdviceCycle.REQUESTED,), awaits=(Next(DTV, Event.ADVICE),)),
        Rule(Event.ADVICE, Advice, S.ADVICE,
             Allowed((Phase.OTS,), awaited=True), disclose,
             sets=(AdviceCycle.ADVISED,)),
        # step 6 again, and steps 10-11: the OTS is extended (or not), IND asks again
        Rule(Event.EXTENSION_RULING, ExtensionRuling, S.COURT_RULING,
             Allowed((Phase.OTS,), guard=one_extension_per_period), pass_on_extension_ruling),
        Rule(Event.EXTENSION_ADVICE_REQUEST, ExtensionAdviceRequest,
             S.EXTENSION_ADVICE_REQUEST,
             Allowed((Phase.OTS,), extension_cycle=(ExtensionCycle.EXTENDED,)), disclose,
             sets=(ExtensionCycle.REQUESTED,), awaits=(Next(DTV, Event.EXTENSION_ADVICE),)),
        Rule(Event.EXTENSION_ADVICE, Advice, S.EXTENSION_ADVICE,
             Allowed((Phase.OTS,), awaited=True), disclose,
             sets=(ExtensionCycle.ADVISED,)),
        # step 12: no VV, so DT&V hands the case over; the case closes
        Rule(Event.WARM_HANDOVER, WarmHandover, S.WARM_HANDOVER,
             Allowed((Phase.OTS,), guard=no_vv_pending), hand_over),
        # not a step: the aliens chain corrects a V-nummer on record
        Rule(Event.V_NUMBER_CORRECTION, VNumberCorrection, None,
             Allowed(OPEN), correct_v_number, only=(IND, DTV)),
    )


# ---- 3. the case --------------------------------------------------------------------------


class Awaited(Public):
    """Something the case waits for: ``party`` should send ``event`` (by ``due``, if set).

    At ``due`` the party is reminded; ``ESCALATION_GRACE`` later an escalation is recorded.
    """

    model_config = ConfigDict(extra="forbid")

    party: Party
    event: Event
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
    event: Event
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
    duplicate: bool = Field(default=False, description=(
        "True if the case had applied an event with this idempotency key before and "
        "answers a repeat of it; a repeat of the very same body is answered by Temporal "
        "itself with the first outcome, as it was (false)"))
    packets: tuple[PacketRef, ...] = ()
    phase: Phase
    end_state: EndState | None = None


class CaseStatus(Public):
    """The case at a glance (workflow query ``status``). No personal data: a ``Public``
    model, so its payload is left in plaintext."""

    model_config = _VIEW

    case_ref: CaseRef
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


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months; a day past the target month's end is
    clamped to its last day (31 January + 1 month = 28 or 29 February)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return day.replace(year=year, month=month,
                       day=min(day.day, calendar.monthrange(year, month)[1]))


_add_months = add_months  # the name earlier code and tests use


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def event_digest(name: str, event: AgencyEvent) -> str:
    """A fingerprint of an event, to tell a true repeat from a reused idempotency key."""
    return hashlib.sha256(f"{name}\n{event.model_dump_json()}".encode()).hexdigest()


def rule_of(name: str) -> Rule:
    """The rule of the event named ``name``.

    Raises:
        EventRefused: no such event.
    """
    try:
        return RULES[Event(name)]
    except ValueError:
        raise EventRefused(
            f"event: unknown event '{name}'; known: {', '.join(RULES)}",
            RefusalCode.UNKNOWN_EVENT) from None


class CaseState(BaseModel):
    """One case's full state. Mutated only through ``start``, ``apply``, ``fire_timers``
    and ``erase``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    record: CaseRecord
    reported_at: dt.datetime | None = None
    phase: Phase = Phase.REPORTED
    end_state: EndState | None = None
    closed_at: dt.datetime | None = None
    weighings: dict[Party, Weighing] = Field(default_factory=dict)
    awaited: list[Awaited] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    seen: dict[str, _Seen] = Field(default_factory=dict)
    steps_done: list[int] = Field(default_factory=list)
    vv_status: VvStatus = VvStatus.NONE
    advice_cycle: AdviceCycle = AdviceCycle.NONE
    extension_cycle: ExtensionCycle = ExtensionCycle.NONE
    ots_ends_on: dt.date | None = None
    extension_question_raised: bool = False
    extension_ruled_for: dt.date | None = None  # the OTS end date an extension was ruled on
    erased_at: dt.datetime | None = None

    # ---- step 1 -------------------------------------------------------------------------
    @classmethod
    def start(
        cls, start: CaseStart, now: dt.datetime, new_id: NewId
    ) -> tuple[CaseState, list[Packet]]:
        """Open a case with the step-1 report; returns the state and the report's packets.
        The RvdK is then awaited to announce its investigation (step 2)."""
        record = CaseRecord.open(start)
        state = cls(record=record, reported_at=now, weighings={start.reporter: start.weighing})
        state._log(now, "event", "case reported", Step.REPORT, start.reporter)
        packets = state._disclose(Step.REPORT, start.reporter, now, new_id)
        state._await(Next(Party.RVDK, Event.ANNOUNCE_INVESTIGATION), now)
        return state, packets

    # ---- events -------------------------------------------------------------------------
    def check(self, name: str, event: AgencyEvent, now: dt.datetime) -> EventOutcome | None:
        """Whether ``event`` may be applied now, by its rule in ``RULES``.

        Returns:
            The earlier outcome if this is a repeat of an event already applied, else None.

        Raises:
            EventRefused: unknown event, closed case, wrong sender, reused idempotency key,
                an item outside the sender's flow, no weighing on record, or out of order;
                the message lists every reason found.
        """
        rule = rule_of(name)
        if not isinstance(event, rule.model):
            raise EventRefused(f"event: '{name}' needs a {rule.model.__name__} body",
                               RefusalCode.MALFORMED)
        seen = self.seen.get(event.idempotency_key)
        if seen is not None:
            if seen.digest != event_digest(name, event):
                raise EventRefused(
                    "idempotency_key: already used for a different event in this case",
                    RefusalCode.DUPLICATE_CONFLICT,
                )
            return seen.outcome
        if self.phase is Phase.CLOSED:
            raise EventRefused(f"case is closed ({self.end_state}); no event is accepted",
                               RefusalCode.CLOSED)
        if event.sender not in rule.senders:
            allowed = ", ".join(p.value for p in rule.senders)
            raise EventRefused(f"sender: {event.sender.value} may not send '{name}' "
                               f"(allowed: {allowed})", RefusalCode.WRONG_SENDER)
        problems: list[tuple[RefusalCode, str]] = []
        if rule.step is not None:
            allowed_items = PROCESS_TABLE[rule.step].flow_of(event.sender).items
            problems += [(RefusalCode.NOT_IN_FLOW,
                          f"{item.value}: not part of step {int(rule.step)} from "
                          f"{event.sender.value} (PROCESS.md §5)")
                         for item in event.item_values() if item not in allowed_items]
            if event.sender not in self.weighings and event.weighing is None:
                problems.append((
                    RefusalCode.NO_WEIGHING,
                    f"weighing: {event.sender.value} has no weighing on record for this "
                    "case; send it with this event or as a 'weighing' event first "
                    "(PROCESS.md §2)"))
        for index, number in enumerate(getattr(event, "v_number", None) or ()):
            if number.person >= len(self.record.persons):
                problems.append((RefusalCode.UNKNOWN_PERSON,
                                 f"v_number[{index}].person: the case has no person "
                                 f"{number.person} (it has {len(self.record.persons)})"))
        if problems:
            raise EventRefused("; ".join(text for _, text in problems), problems[0][0])
        order = self._order_problem(rule, event, now)
        if order:
            code, reason = order
            raise EventRefused(f"out of order: {reason}", code)
        return None

    def admit(self, name: str, event: AgencyEvent, now: dt.datetime) -> EventOutcome | None:
        """``check``, plus the rules for new events that a history recorded before them
        need not meet (so ``apply`` does not re-check them when a history replays): a
        V-nummer must not contradict the one on record, and a ruling carries its date,
        neither in the future nor before the case's report. The workflow's update
        validator and the CLI call this; ``apply`` calls ``check``.

        Raises:
            EventRefused: as ``check``, or for these rules (every reason listed).
        """
        earlier = self.check(name, event, now)
        if earlier is not None:
            return earlier
        problems: list[tuple[RefusalCode, str]] = []
        numbers = getattr(event, "v_number", None) or ()
        listed: set[int] = set()
        for index, number in enumerate(numbers):
            if number.person in listed:
                problems.append((RefusalCode.V_NUMBER_TWICE,
                                 f"v_number[{index}].person: person {number.person} is "
                                 "listed twice; give one V-nummer per person"))
            listed.add(number.person)
        if not isinstance(event, VNumberCorrection):
            contradictions = self.record.contradictions(numbers)
            if contradictions:
                problems += [(RefusalCode.V_NUMBER_CONTRADICTION, text) for text in (
                    *contradictions, "to correct a V-nummer on record, IND or DTV "
                    "sends 'v_number_correction' first")]
        if isinstance(event, CourtRulingEvent | ExtensionRuling):
            problem = self._ruling_date_problem(event.ruled_on, now)
            if problem:
                problems.append((RefusalCode.RULING_DATE, problem))
        if problems:
            raise EventRefused("; ".join(text for _, text in problems), problems[0][0])
        return None

    def apply(
        self, name: str, event: AgencyEvent, now: dt.datetime, new_id: NewId, *,
        ruling_dates: bool = True,
    ) -> tuple[EventOutcome, list[Packet]]:
        """Check and apply ``event`` by its rule; returns its outcome and the packets to
        deliver. ``ruling_dates``: an OTS runs from the ruling's ``ruled_on`` (False: from
        ``now``, as histories recorded before ruling dates did).

        A repeat returns the first outcome and no packets. Raises ``EventRefused`` as
        ``check`` does, before changing anything.
        """
        earlier = self.check(name, event, now)
        if earlier is not None:
            return earlier.model_copy(update={"duplicate": True}), []
        rule = rule_of(name)
        if event.weighing is not None:
            self.weighings[event.sender] = event.weighing
        self._log(now, "event", name, rule.step, event.sender)
        self._satisfy(event.sender, rule.event)
        self._ruling_dates = ruling_dates
        packets = rule.effect(self, rule, event, now, new_id)
        if self.phase is not Phase.CLOSED:
            for sub_state in rule.sets:
                self._set(sub_state)
            for wait in rule.awaits:
                if wait.when is None or self._is_in(wait.when):
                    self._await(wait, now)
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
                # The GI asks the judge; the RvdK passes the ruling on (step 6): reminded
                # two weeks before the OTS ends, escalated one week before.
                self.extension_question_raised = True
                self._log(now, "timer", f"extension question: OTS ends {self.ots_ends_on}",
                          Step.COURT_RULING, Party.RVDK)
                self._await(Next(Party.RVDK, Event.EXTENSION_RULING), now,
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
    _ruling_dates: bool = True

    def _order_problem(self, rule: Rule, event: AgencyEvent,
                       now: dt.datetime) -> tuple[RefusalCode, str] | None:
        allowed = rule.allowed
        if self.phase not in allowed.phases:
            expected = " or ".join(p.value for p in allowed.phases)
            return RefusalCode.NOT_NOW, f"the case is {self.phase.value}; expected {expected}"
        if allowed.awaited and not self._awaits(event.sender, rule.event):
            return (RefusalCode.NOT_AWAITED,
                    f"no '{rule.event}' is expected from {event.sender.value} now")
        if allowed.advice_cycle and self.advice_cycle not in allowed.advice_cycle:
            return RefusalCode.NOT_NOW, f"advice cycle is '{self.advice_cycle}'"
        if allowed.extension_cycle and self.extension_cycle not in allowed.extension_cycle:
            return RefusalCode.NOT_NOW, f"extension cycle is '{self.extension_cycle}'"
        if allowed.guard is not None:
            reason = allowed.guard(self, event, now)
            return None if reason is None else (RefusalCode.NOT_NOW, reason)
        return None

    def _ruling_date_problem(self, ruled_on: dt.date | None, now: dt.datetime) -> str | None:
        if ruled_on is None:
            return "ruled_on: required, the date of the ruling (YYYY-MM-DD)"
        if ruled_on > now.date():
            return "ruled_on: in the future"
        if self.reported_at is not None and ruled_on < self.reported_at.date():
            return "ruled_on: before the case was reported"
        return None

    def _is_in(self, state: Phase | SubState) -> bool:
        if isinstance(state, Phase):
            return self.phase is state
        if isinstance(state, VvStatus):
            return self.vv_status is state
        if isinstance(state, AdviceCycle):
            return self.advice_cycle is state
        return self.extension_cycle is state

    def _set(self, sub_state: SubState) -> None:
        if isinstance(sub_state, VvStatus):
            self.vv_status = sub_state
        elif isinstance(sub_state, AdviceCycle):
            self.advice_cycle = sub_state
        else:
            self.extension_cycle = sub_state

    def _log(self, now: dt.datetime, kind: TimelineKind, detail: str, step: Step | None = None,
             party: Party | None = None) -> None:
        self.timeline.append(
            TimelineEntry(at=now, kind=kind, step=step, party=party, detail=detail)
        )

    def _disclose(self, step: Step, sender: Party, now: dt.datetime,
                  new_id: NewId) -> list[Packet]:
        flow = PROCESS_TABLE[step].flow_of(sender)
        packets = [
            project_packet(self.record, step, sender, recipient,
                           packet_id=new_id(), created_at=now)
            for recipient in flow.recipients
        ]
        for packet in packets:
            items = ", ".join(sorted(item.value for item in packet.items)) or "NAW only"
            self._log(now, "packet", f"{items} to {packet.recipient.value}",
                      step, sender)
            if Item.V_NUMBER in packet.items:
                self.record = self.record.disclosed_v_numbers(
                    self.record.value_of(Item.V_NUMBER, sender), packet.recipient)
        if int(step) not in self.steps_done:
            self.steps_done.append(int(step))
        return packets

    def _await(self, wait: Next, now: dt.datetime, due: dt.datetime | None = None) -> None:
        step = RULES[wait.event].step
        reply_due = None if step is None else PROCESS_TABLE[step].reply_due
        if due is None and reply_due is not None:
            due = now + reply_due
        self.awaited.append(Awaited(party=wait.party, event=wait.event, step=step, since=now,
                                    due=due))

    def _awaits(self, party: Party, event: Event) -> bool:
        return any(w.party is party and w.event == event for w in self.awaited)

    def _satisfy(self, party: Party, event: Event) -> None:
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


# ---- 4. guards and effects, in table order ------------------------------------------------


def record_weighing(state: CaseState, rule: Rule, event: AgencyEvent, now: dt.datetime,
                    new_id: NewId) -> list[Packet]:
    """weighing: the weighing is recorded (by ``apply``); nothing is disclosed."""
    return []


def announce_investigation(state: CaseState, rule: Rule, event: AgencyEvent,
                           now: dt.datetime, new_id: NewId) -> list[Packet]:
    """Step 2: the case is announced; IND and DT&V get NAW + date of birth."""
    state.phase = Phase.ANNOUNCED
    return disclose(state, rule, event, now, new_id)


def disclose(state: CaseState, rule: Rule, event: AgencyEvent, now: dt.datetime,
             new_id: NewId) -> list[Packet]:
    """The event's §5 items enter the record; the rule's step discloses them to the flow's
    recipients (only what the flow allows, from what the sender knows)."""
    assert rule.step is not None
    state.record = state.record.merge(event)
    return state._disclose(rule.step, event.sender, now, new_id)


def step_3_replies_in(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
    """The RvdK decides once both step-3 replies are in or escalated (kbflow choice, §4)."""
    for wait in state.awaited:
        if wait.event is Event.RESIDENCE_INFORMATION and not wait.escalated:
            return (f"step 3 reply of {wait.party.value} is awaited until "
                    f"{wait.escalates_at:%Y-%m-%d}")
    return None


def decide_investigation(state: CaseState, rule: Rule, event: AgencyEvent, now: dt.datetime,
                         new_id: NewId) -> list[Packet]:
    """The RvdK investigates, or the case closes (no investigation)."""
    assert isinstance(event, InvestigationDecision)
    if event.investigate:
        state.phase = Phase.INVESTIGATING
    else:
        state._close(EndState.NO_INVESTIGATION, now)
    return []


def report_investigation_result(state: CaseState, rule: Rule, event: AgencyEvent,
                                now: dt.datetime, new_id: NewId) -> list[Packet]:
    """Step 5: the result is disclosed; a measure requested awaits the ruling, none closes."""
    assert isinstance(event, InvestigationResult)
    packets = disclose(state, rule, event, now, new_id)
    if event.court_request is CourtRequest.NONE:
        state._close(EndState.NO_MEASURE, now)
    else:
        state.phase = Phase.AWAITING_RULING
    return packets


def rules_on_requested_measure(state: CaseState, event: AgencyEvent,
                               now: dt.datetime) -> str | None:
    """The court rules on the measure the RvdK requested (step 5), or refuses it."""
    assert isinstance(event, CourtRulingEvent)
    requested = state.record.court_request
    if event.measure is not Measure.REFUSED and (
        requested is None or event.measure.value != requested.value
    ):
        return "measure: the court rules on the requested measure (or refuses it)"
    return None


def pass_on_court_ruling(state: CaseState, rule: Rule, event: AgencyEvent, now: dt.datetime,
                         new_id: NewId) -> list[Packet]:
    """Step 6: the ruling is disclosed. An OTS runs ``ots_months`` from the ruling's date;
    a custody-terminating measure ends the KB process; a refusal closes the case."""
    assert isinstance(event, CourtRulingEvent)
    ruled_on = _ruling_date(state, event.ruled_on, now)
    ends_on = None if event.ots_months is None else add_months(ruled_on, event.ots_months)
    ruling = CourtRuling(measure=event.measure, ruled_on=ruled_on, ots_ends_on=ends_on,
                         summary=event.summary, document=event.document)
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


def answer_advice_availability(state: CaseState, rule: Rule, event: AgencyEvent,
                               now: dt.datetime, new_id: NewId) -> list[Packet]:
    """Step 7 answer: an advice is available, or IND may ask for one (step 8)."""
    packets = disclose(state, rule, event, now, new_id)
    state.advice_cycle = (AdviceCycle.AVAILABLE if state.record.advice_available
                          else AdviceCycle.NO_ADVICE)
    return packets


def one_extension_per_period(state: CaseState, event: AgencyEvent,
                             now: dt.datetime) -> str | None:
    """BW 1:260: one extension (of at most a year) per OTS period."""
    ruled = state.extension_ruled_for
    if ruled is not None and now < _midnight(ruled):
        return "the extension of the current OTS period is ruled on already"
    return None


def pass_on_extension_ruling(state: CaseState, rule: Rule, event: AgencyEvent,
                             now: dt.datetime, new_id: NewId) -> list[Packet]:
    """Step 6 again: an extension runs ``ots_months`` from the current end date; a refusal
    lets the OTS end on its end date."""
    assert isinstance(event, ExtensionRuling)
    assert state.ots_ends_on is not None
    ends_on = state.ots_ends_on
    if event.ots_months is not None:
        ends_on = add_months(ends_on, event.ots_months)
    ruling = CourtRuling(measure=Measure.OTS, ruled_on=_ruling_date(state, event.ruled_on, now),
                         extension=event.extended, ots_ends_on=ends_on, summary=event.summary,
                         document=event.document)
    state.record = state.record.merge(event, court_ruling=ruling)
    packets = state._disclose(Step.COURT_RULING, event.sender, now, new_id)
    state.extension_ruled_for = state.ots_ends_on
    if event.extended:
        state.ots_ends_on = ends_on
        state.extension_question_raised = False
        state.extension_cycle = ExtensionCycle.EXTENDED
    else:
        state.extension_question_raised = True  # answered: the OTS ends on its end date
    return packets


def no_vv_pending(state: CaseState, event: AgencyEvent, now: dt.datetime) -> str | None:
    """Step 12 needs "geen VV": no application pending or granted."""
    if state.vv_status is VvStatus.APPLIED:
        return "a VV application is pending or granted; a warm handover needs no VV"
    return None


def hand_over(state: CaseState, rule: Rule, event: AgencyEvent, now: dt.datetime,
              new_id: NewId) -> list[Packet]:
    """Step 12: the handover's progress is disclosed; the case closes as handed over."""
    packets = disclose(state, rule, event, now, new_id)
    state._close(EndState.HANDED_OVER, now)
    return packets


def correct_v_number(state: CaseState, rule: Rule, event: AgencyEvent, now: dt.datetime,
                     new_id: NewId) -> list[Packet]:
    """The corrected V-nummers replace those on record, with the sender as their source."""
    assert isinstance(event, VNumberCorrection)
    state.record = state.record.with_v_numbers(event.v_number, event.sender, correct=True)
    return []


def _ruling_date(state: CaseState, ruled_on: dt.date | None, now: dt.datetime) -> dt.date:
    # Histories recorded before ruling dates (and their replays) count from ``now``.
    if state._ruling_dates and ruled_on is not None:
        return ruled_on
    return now.date()


#: The case rules, one per event, in PROCESS.md §3 order.
RULES: dict[Event, Rule] = {rule.event: rule for rule in _table()}

assert set(RULES) == set(Event), "every event has exactly one rule"
assert all(rule.only or rule.step for rule in RULES.values())
assert set(reporters()) <= set(RULES[Event.WEIGHING].senders)
