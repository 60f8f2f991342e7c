"""The case state machine (kbflow/case.py), pure: a fixed clock and counter-based ids.

Covers every branch of PROCESS.md §3, every refusal (the state is unchanged after it), the
duplicate rule, and every timer: reply deadlines read from the process table, escalation
``ESCALATION_GRACE`` later, the extension question and the end of an OTS.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest

from kbflow.case import CaseState, EndState, EventRefused, Phase
from kbflow.events import (
    AdviceAvailabilityRequest,
    ApplicationRejected,
    CaseStart,
    ResidenceInformation,
)
from kbflow.items import CourtRequest, DepartureProcedure, Measure, PersonVNumber
from kbflow.packets import Packet
from kbflow.process import (
    ESCALATION_GRACE,
    EXTENSION_QUESTION_LEAD,
    PROCESS_TABLE,
    Party,
    Step,
)
from tests import factories as f

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(hours=1)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def add_months(day: dt.date, months: int) -> dt.date:
    """Independent month arithmetic for the tests (no day-of-month clamping needed for T0)."""
    index = day.month - 1 + months
    return day.replace(year=day.year + index // 12, month=index % 12 + 1)


class Case:
    """A CaseState driven by a fake clock; keeps every packet it produced. With ``admit``
    every event first passes ``CaseState.admit``, as the workflow's validator makes it."""

    def __init__(self, start: CaseStart | None = None, now: dt.datetime = T0, *,
                 admit: bool = False) -> None:
        self.ids = f.Ids()
        self.now = now
        self.admit = admit
        self.state, self.packets = CaseState.start(start or f.case_start(), now, self.ids)

    def send(self, *events: f.Ev, dated: bool = True) -> list[Packet]:
        """Apply ``events`` an hour apart; ``dated``: a ruling is sent on its day."""
        sent: list[Packet] = []
        for ev in events:
            self.now += TICK
            event = ev.event
            if dated and getattr(event, "ruled_on", None) is not None:
                event = event.model_copy(update={"ruled_on": self.now.date()})
            if self.admit:
                self.state.admit(ev.name, event, self.now)
            outcome, packets = self.state.apply(ev.name, event, self.now, self.ids)
            assert not outcome.duplicate
            sent += packets
        self.packets += sent
        return sent

    def at(self, when: dt.datetime) -> list[Any]:
        self.now = when
        return self.state.fire_timers(when, self.ids)

    def snapshot(self) -> dict[str, Any]:
        return self.state.model_dump()

    def deliveries(self) -> Counter:
        return Counter((int(p.step), p.sender, p.recipient) for p in self.packets)


def started(*events: f.Ev) -> Case:
    case = Case()
    case.send(*events)
    return case


# ---- branches ---------------------------------------------------------------------------


def test_start_is_step_1_and_awaits_the_announcement() -> None:
    case = Case()
    assert case.state.phase is Phase.REPORTED
    assert case.state.steps_done == [1]
    assert [(int(p.step), p.sender, p.recipient) for p in case.packets] == f.S1
    assert set(case.packets[0].body) == {"persons", "relaas"}
    assert [(w.party, w.event) for w in case.state.awaited] == [
        (Party.RVDK, "announce_investigation")]


@pytest.mark.parametrize("reporter", [Party.COA, Party.AVIM, Party.IND])
def test_urgent_reporters_start_a_case(reporter: Party) -> None:
    case = Case(f.case_start(reporter=reporter))
    assert [(int(p.step), p.sender, p.recipient) for p in case.packets] == [
        (1, reporter, Party.RVDK)]
    assert reporter in case.state.weighings


@pytest.mark.parametrize("name", f.BRANCH_NAMES)
def test_branch(name: str) -> None:
    branch = f.branch(name)
    case = started(*branch.events)
    status = case.state.status()
    assert status.phase is branch.phase
    assert status.end_state is branch.end_state
    assert status.steps_done == branch.steps_done
    assert case.deliveries() == Counter(branch.deliveries)
    for packet in case.packets:  # every body is minimised to its flow
        flow = PROCESS_TABLE[packet.step].flow_of(packet.sender)
        assert set(packet.body) <= {"persons"} | {i.value for i in flow.items}
    if branch.phase is Phase.CLOSED:
        assert status.closed_at == case.now
        assert status.awaiting == ()
        assert case.state.next_timer() is None
        assert case.state.timeline[-1].kind == "closed"


def test_custody_termination_ends_the_process_with_the_ruling() -> None:
    case = started(*f.to_awaiting_ruling(CourtRequest.CUSTODY_TERMINATION))
    packets = case.send(f.ruling(Measure.CUSTODY_TERMINATION))
    assert {p.recipient for p in packets} == {Party.IND, Party.DTV}
    assert packets[0].body["court_ruling"]["measure"] == "custody_termination"
    assert "gi" not in packets[0].body
    assert case.state.end_state is EndState.CUSTODY_TERMINATED


def test_ots_ruling_sets_the_end_date_and_names_the_gi() -> None:
    case = started(*f.to_awaiting_ruling(CourtRequest.OTS))
    packets = case.send(f.ruling(Measure.OTS, months=9))
    assert case.state.phase is Phase.OTS
    assert case.state.ots_ends_on == add_months(case.now.date(), 9)
    body = packets[0].body
    assert body["gi"] == f.GI_DETAILS.model_dump()
    assert body["court_ruling"]["ots_ends_on"] == add_months(case.now.date(), 9).isoformat()
    assert set(body) == {"persons", "gi", "court_ruling", "goals", "means"}


def test_advice_requested_path_carries_the_court_ruling_to_dtv() -> None:
    case = started(*f.to_ots(), f.availability_request(), f.availability(False))
    assert case.state.advice_cycle == "no_advice"
    (request,) = case.send(f.advice_request())
    assert set(request.body) == {"persons", "v_number", "vv_application", "court_ruling",
                                 "rvdk_report"}
    assert request.body["court_ruling"]["summary"] == f.RULING_SUMMARY
    (answer,) = case.send(f.advice())
    assert (answer.sender, answer.recipient) == (Party.DTV, Party.IND)
    assert set(answer.body) == {"persons", "return_perspective", "transferability"}
    assert case.state.advice_cycle == "advised"


def test_advice_available_does_not_ask_for_an_advice() -> None:
    case = started(*f.to_ots(), f.availability_request(), f.availability(True))
    assert case.state.advice_cycle == "available"
    with pytest.raises(EventRefused, match="out of order"):
        case.state.apply("advice_request", f.advice_request().event, case.now, case.ids)


def test_family_unknown_sends_only_known_to_sender() -> None:
    case = started(f.announce(), f.residence_ind(known=False), f.residence_dtv(known=False))
    step3 = [p for p in case.packets if p.step is Step.RESIDENCE_INFORMATION]
    assert len(step3) == 2
    for packet in step3:
        assert packet.body.keys() == {"persons", "known_to_sender"}
        assert packet.body["known_to_sender"] is False


def test_family_unknown_to_ind_only() -> None:
    case = started(f.announce(), f.residence_ind(known=False), f.residence_dtv(known=True))
    by_sender = {p.sender: p for p in case.packets if p.step is Step.RESIDENCE_INFORMATION}
    assert by_sender[Party.IND].body.keys() == {"persons", "known_to_sender"}
    assert by_sender[Party.DTV].body.keys() == {"persons", "known_to_sender",
                                                "departure_procedure"}


def test_extension_moves_the_end_date_and_opens_steps_10_and_11() -> None:
    case = started(*f.to_ots(months=12))
    first_end = case.state.ots_ends_on
    assert first_end is not None
    (to_ind, _) = case.send(f.extension(True, months=6))
    assert case.state.ots_ends_on == add_months(first_end, 6)
    assert to_ind.body["court_ruling"]["extension"] is True
    assert to_ind.body["court_ruling"]["ots_ends_on"] == add_months(first_end, 6).isoformat()
    (request,) = case.send(f.extension_advice_request())
    assert set(request.body) == {"persons", "v_number", "vv_application", "court_ruling",
                                 "gi_report", "rvdk_report"}
    assert request.body["court_ruling"]["extension"] is True
    case.send(f.extension_advice())
    assert case.state.extension_cycle == "advised"
    assert case.state.steps_done[-2:] == [10, 11]


def test_refused_extension_keeps_the_end_date_and_says_so() -> None:
    case = started(*f.to_ots(months=12))
    end = case.state.ots_ends_on
    (to_ind, _) = case.send(f.extension(False))
    assert case.state.ots_ends_on == end
    assert case.state.extension_cycle == "none"
    assert end is not None
    ruling = to_ind.body["court_ruling"]
    assert ruling["ots_ends_on"] == end.isoformat()
    # The ruling did not extend the OTS; IND decides on the VV by it (policy framework).
    assert ruling["extension"] is False
    with pytest.raises(EventRefused, match="out of order"):
        case.state.apply("extension_advice_request", f.extension_advice_request().event,
                         case.now, case.ids)


@pytest.mark.parametrize("first", [True, False], ids=["extended", "refused"])
def test_one_extension_ruling_per_ots_period(first: bool) -> None:
    # BW 1:260: each extension is at most a year. A second ruling on the same period (the
    # ruling passed on twice under two keys) would stack another year on the first, or
    # overturn a refusal, without the judge extending the new period.
    case = started(*f.to_ots(months=12), f.extension(first, months=12))
    snapshot = case.snapshot()
    with pytest.raises(EventRefused, match="out of order"):
        case.state.apply("extension_ruling", f.extension(True, months=12).event,
                         case.now + TICK, case.ids)
    assert case.snapshot() == snapshot


def test_the_extended_period_gets_its_own_extension_ruling() -> None:
    case = started(*f.to_ots(months=12))
    first_end = case.state.ots_ends_on
    assert first_end is not None
    case.send(f.extension(True, months=12))
    case.at(midnight(first_end))  # the extended period runs
    case.send(f.extension(True, months=6))
    assert case.state.ots_ends_on == add_months(first_end, 18)


@pytest.mark.parametrize("prefix", ["announced", "investigating", "awaiting_ruling", "ots"])
def test_step_4_any_time_after_step_2(prefix: str) -> None:
    events = {
        "announced": [f.announce()],
        "investigating": f.to_investigating(),
        "awaiting_ruling": f.to_awaiting_ruling(),
        "ots": f.to_ots(),
    }[prefix]
    case = started(*events)
    phase = case.state.phase
    (packet,) = case.send(f.rejection())
    assert (packet.step, packet.sender, packet.recipient) == (
        Step.REJECTION_OR_WITHDRAWAL, Party.IND, Party.DTV)
    assert set(packet.body) <= {"persons", "v_number", "procedure_history",
                                "dossier_documents"}
    assert {"procedure_history", "dossier_documents"} <= set(packet.body)
    assert case.state.phase is phase  # step 4 informs; it moves no phase
    assert case.state.vv_status == "rejected"


def test_step_4_refused_before_step_2() -> None:
    case = Case()
    before = case.snapshot()
    with pytest.raises(EventRefused, match="out of order"):
        case.state.apply("application_rejected", f.rejection().event, case.now, case.ids)
    assert case.snapshot() == before


def test_warm_handover_refused_while_a_vv_application_is_pending() -> None:
    case = started(*f.to_ots(), f.availability_request(), f.availability(False),
                   f.advice_request(), f.advice())
    before = case.snapshot()
    with pytest.raises(EventRefused, match="VV application"):
        case.state.apply("warm_handover", f.handover().event, case.now, case.ids)
    assert case.snapshot() == before
    case.send(f.rejection())
    packets = case.send(f.handover())
    assert {p.recipient for p in packets} == {Party.GI, Party.RVDK}
    assert all(set(p.body) == {"persons", "handover_progress"} for p in packets)
    assert case.state.end_state is EndState.HANDED_OVER


def test_weighing_on_record_is_not_asked_again() -> None:
    case = started(f.announce(), f.residence_ind(weigh=True), f.residence_dtv())
    # IND weighed in step 3; its step-7 question needs no new weighing.
    case.send(f.decision(), f.result(), f.ruling(), f.availability_request())
    assert case.state.advice_cycle == "asked"


def test_weighing_event_records_a_weighing_ahead_of_the_disclosure() -> None:
    case = started(f.announce(), f.record_weighing(Party.IND))
    case.send(f.residence_ind(weigh=False))
    assert Party.IND in case.state.weighings
    assert 3 in case.state.steps_done


# ---- refusals ---------------------------------------------------------------------------


def _ind_step3(**fields: Any) -> ResidenceInformation:
    return ResidenceInformation(sender=Party.IND, idempotency_key=f.new_key("ind"),
                                weighing=f.weighing(Party.IND), known_to_sender=True,
                                **fields)


REFUSALS: list[tuple[str, Any, str, Any, str]] = [
    # (id, events before, update name, event, reason in the message)
    ("out-of-order-result-before-decision", lambda: [f.announce()],
     "investigation_result", lambda: f.result().event, "out of order"),
    ("out-of-order-announce-twice", lambda: [f.announce()],
     "announce_investigation", lambda: f.announce().event, "out of order"),
    ("out-of-order-ruling-before-result", lambda: f.to_investigating(),
     "court_ruling", lambda: f.ruling().event, "out of order"),
    ("out-of-order-decision-before-step-3", lambda: [f.announce()],
     "investigation_decision", lambda: f.decision().event, "step 3 reply"),
    ("out-of-order-step-3-twice", lambda: [f.announce(), f.residence_ind()],
     "residence_information", lambda: f.residence_ind().event, "out of order"),
    ("out-of-order-advice-unasked", lambda: f.to_ots(),
     "advice", lambda: f.advice().event, "out of order"),
    ("out-of-order-availability-unasked", lambda: f.to_ots(),
     "advice_availability", lambda: f.availability(False).event, "out of order"),
    ("out-of-order-extension-request-unextended", lambda: f.to_ots(),
     "extension_advice_request", lambda: f.extension_advice_request().event,
     "out of order"),
    ("out-of-order-extension-before-ots", lambda: f.to_awaiting_ruling(),
     "extension_ruling", lambda: f.extension().event, "out of order"),
    ("out-of-order-step-7-before-ots", lambda: f.to_awaiting_ruling(),
     "advice_availability_request", lambda: f.availability_request().event,
     "out of order"),
    ("ruling-on-another-measure", lambda: f.to_awaiting_ruling(CourtRequest.OTS),
     "court_ruling", lambda: f.ruling(Measure.CUSTODY_TERMINATION).event, "measure:"),
    ("wrong-sender-announce", lambda: [],
     "announce_investigation", lambda: f.announce(sender=Party.IND).event,
     "sender: IND may not send"),
    ("wrong-sender-step-3", lambda: [f.announce()],
     "residence_information", lambda: f.residence_ind(sender=Party.VT, known=False).event,
     "sender: VT may not send"),
    ("wrong-sender-ruling", lambda: f.to_awaiting_ruling(),
     "court_ruling", lambda: f.ruling(sender=Party.GI).event, "sender: GI"),
    ("wrong-sender-step-7-question", lambda: f.to_ots(),
     "advice_availability_request",
     lambda: AdviceAvailabilityRequest(sender=Party.DTV, idempotency_key=f.new_key()),
     "sender: DTV"),
    ("missing-weighing", lambda: [f.announce()],
     "residence_information", lambda: f.residence_ind(weigh=False).event, "weighing:"),
    ("missing-weighing-rvdk", lambda: [],
     "announce_investigation", lambda: f.announce(weigh=False).event, "weighing: RVDK"),
    ("malformed-body", lambda: f.to_awaiting_ruling(),
     "court_ruling", lambda: f.advice().event, "needs a CourtRulingEvent body"),
    ("unknown-event", lambda: [],
     "court_appeal", lambda: f.announce().event, "unknown event"),
    ("item-outside-flow-ind", lambda: [f.announce()],
     "residence_information",
     lambda: _ind_step3(departure_procedure=DepartureProcedure(
         travel_documents=True, departure_feasible_short_term=True)),
     "departure_procedure: not part of step 3 from IND"),
    ("item-outside-flow-dtv", lambda: [f.announce()],
     "residence_information",
     lambda: f.residence_dtv(residence_status=f.RESIDENCE_STATUS).event,
     "residence_status: not part of step 3 from DTV"),
    ("v-number-index-out-of-range", lambda: [f.announce()],
     "residence_information",
     lambda: _ind_step3(v_number=(PersonVNumber(person=2, v_number=f.V_NUMBERS[2]),)),
     r"v_number\[0\]\.person"),
    ("closed-case", lambda: [*f.to_investigating(), f.result(CourtRequest.NONE)],
     "application_rejected", lambda: f.rejection().event, "case is closed"),
    ("closed-case-handover", lambda: [*f.to_ots(), f.handover()],
     "warm_handover", lambda: f.handover().event, "case is closed"),
]


@pytest.mark.parametrize(("before", "name", "event", "reason"),
                         [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused_event_leaves_the_state_unchanged(before: Any, name: str, event: Any,
                                                  reason: str) -> None:
    case = started(*before())
    snapshot = case.snapshot()
    refused = event()
    with pytest.raises(EventRefused, match=reason) as error:
        case.state.apply(name, refused, case.now + TICK, case.ids)
    assert case.snapshot() == snapshot
    assert not f.leaked(str(error.value))
    with pytest.raises(EventRefused):  # check() refuses alike, without applying
        case.state.check(name, refused, case.now + TICK)
    assert case.snapshot() == snapshot


def test_reused_key_with_different_content_is_refused() -> None:
    case = started(f.announce(key="rvdk-announce-000042"))
    key = "rvdk-announce-000042"
    snapshot = case.snapshot()
    with pytest.raises(EventRefused, match="idempotency_key: already used"):
        case.state.apply("residence_information", f.residence_ind(key=key).event,
                         case.now, case.ids)
    assert case.snapshot() == snapshot


def test_reused_key_for_the_same_event_name_with_other_values_is_refused() -> None:
    case = started(f.announce(), f.residence_ind(key="ind-residence-000042"))
    snapshot = case.snapshot()
    changed = f.residence_ind(key="ind-residence-000042",
                              v_numbers=((0, f.V_NUMBERS[2]),))
    with pytest.raises(EventRefused, match="idempotency_key"):
        case.state.apply(changed.name, changed.event, case.now, case.ids)
    assert case.snapshot() == snapshot


def test_event_models_refuse_bad_bodies_without_echoing_them() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="known_to_sender is false"):
        ResidenceInformation(sender=Party.IND, idempotency_key="ind-res-000009",
                             known_to_sender=False, residence_status=f.RESIDENCE_STATUS)
    with pytest.raises(ValidationError, match="dossier_documents") as error:
        ApplicationRejected(sender=Party.IND, idempotency_key="ind-rej-000009",
                            decision="rejection", procedure_history=f.PROCEDURE_HISTORY,
                            dossier_documents=())
    assert not f.leaked(str(error.value))


FULL_WIDTH_DIGITS = "".join(chr(0xFF10 + digit) for digit in range(10))  # Unicode \d, not 0-9


@pytest.mark.parametrize(("changes", "reason"), [
    ({"reporter": Party.DTV}, "reporter"),
    ({"persons": (f.PARENT,)}, "at least one child"),
    # Two persons with the same name and date of birth: the processing log's pseudonym is a
    # keyed hash of exactly those, so it could not tell them apart (one data subject for
    # two people, or one person listed twice): the report must distinguish them.
    ({"persons": (f.CHILD, f.PARENT, f.CHILD.model_copy(update={"address": "Elders 1"}))},
     "persons"),
    ({"persons": ({**f.CHILD.model_dump(), "v_number": FULL_WIDTH_DIGITS},
                  f.PARENT.model_dump())},
     "v_number"),  # full-width digits are no V-nummer
], ids=["reporter", "no-child", "person-twice", "full-width-v-number"])
# (Case refs are no longer checked for opacity here: kbflow makes every ref, and a user's
# own ref is refused by `kbflow start`; tests/test_case_refs.py.)
def test_case_start_refusals(changes: dict[str, Any], reason: str) -> None:
    from pydantic import ValidationError

    persons = (f.CHILD.model_copy(update={"v_number": f.V_NUMBERS[0]}), f.PARENT)
    data = {**f.case_start(persons=persons).model_dump(), **changes}
    with pytest.raises(ValidationError, match=reason) as error:
        CaseStart.model_validate(data)
    assert not f.leaked(str(error.value))


# ---- duplicates ---------------------------------------------------------------------------


def test_duplicate_has_one_effect() -> None:
    case = started(f.announce())
    ev = f.residence_ind()
    first, packets = case.state.apply(ev.name, ev.event, case.now, case.ids)
    assert packets and not first.duplicate
    snapshot = case.snapshot()
    again, more = case.state.apply(ev.name, ev.event.model_copy(), case.now + TICK, case.ids)
    assert again.duplicate is True
    assert more == []
    assert again.packets == first.packets  # the sender learns what the first one sent
    assert case.snapshot() == snapshot


def test_duplicate_after_the_case_closed_returns_the_first_outcome() -> None:
    closing = f.result(CourtRequest.NONE)
    case = started(*f.to_investigating(), closing)
    snapshot = case.snapshot()
    outcome, packets = case.state.apply(closing.name, closing.event, case.now, case.ids)
    assert outcome.duplicate and packets == []
    assert outcome.end_state is EndState.NO_MEASURE
    assert case.snapshot() == snapshot


# ---- timers -------------------------------------------------------------------------------

WAITS = f.REPLY_WAITS


@pytest.mark.parametrize(("events", "party", "awaited", "step"), [w[1:] for w in WAITS],
                         ids=[w[0] for w in WAITS])
def test_reply_deadline_reminds_then_escalates(events: Any, party: Party, awaited: str,
                                               step: Step) -> None:
    case = started(*events())
    asked_at = case.now
    reply_due = PROCESS_TABLE[step].reply_due
    assert reply_due is not None
    (wait,) = [w for w in case.state.awaited if w.party is party and w.event == awaited]
    assert wait.due == asked_at + reply_due
    assert case.state.next_timer() == asked_at + reply_due

    assert case.at(asked_at + reply_due - dt.timedelta(seconds=1)) == []
    reminders = case.at(asked_at + reply_due)
    mine = [r for r in reminders if r.party is party]
    assert [(r.event, r.step, r.due) for r in mine] == [(awaited, step, asked_at + reply_due)]
    assert mine[0].case_ref == case.state.record.case_ref
    assert case.state.timeline[-1].kind == "reminder"
    assert case.state.status().escalations == 0

    escalate_at = asked_at + reply_due + ESCALATION_GRACE
    assert case.state.next_timer() == escalate_at
    assert case.at(escalate_at - dt.timedelta(seconds=1)) == []
    assert case.state.status().escalations == 0
    assert case.at(escalate_at) == []  # an escalation is recorded, nobody is reminded twice
    escalations = [(e.party, e.step, e.at) for e in case.state.timeline
                   if e.kind == "escalation"]
    assert (party, step, escalate_at) in escalations
    assert case.state.status().escalations == len(escalations) >= 1
    assert case.state.phase is not Phase.CLOSED  # a late party never fails the case


def test_a_late_party_never_fails_or_closes_the_case() -> None:
    case = started(f.announce())
    case.at(T0 + dt.timedelta(days=3650))
    assert case.state.phase is Phase.ANNOUNCED
    assert case.state.status().escalations == 2  # IND and DT&V, once each
    assert len([e for e in case.state.timeline if e.kind == "reminder"]) == 2
    assert case.state.next_timer() is None


def test_decision_refused_while_step_3_is_pending_and_allowed_after_escalation() -> None:
    case = started(f.announce(), f.residence_ind())  # DT&V does not answer
    announced_at = case.now - TICK
    reply_due = PROCESS_TABLE[Step.RESIDENCE_INFORMATION].reply_due
    assert reply_due is not None
    case.at(announced_at + reply_due)  # reminded, not yet escalated
    snapshot = case.snapshot()
    with pytest.raises(EventRefused, match="step 3 reply of DTV"):
        case.state.apply("investigation_decision", f.decision().event, case.now, case.ids)
    assert case.snapshot() == snapshot
    case.at(announced_at + reply_due + ESCALATION_GRACE)
    case.send(f.decision(True))
    assert case.state.phase is Phase.INVESTIGATING


def test_decision_allowed_once_both_replies_are_in() -> None:
    case = started(f.announce(), f.residence_ind(), f.residence_dtv(), f.decision(False))
    assert case.state.end_state is EndState.NO_INVESTIGATION


def test_extension_question_is_raised_before_the_ots_ends() -> None:
    case = started(*f.to_ots(months=12))
    end = case.state.ots_ends_on
    assert end is not None
    question_at = midnight(end) - EXTENSION_QUESTION_LEAD
    assert case.state.next_timer() == question_at
    case.at(question_at - dt.timedelta(seconds=1))
    assert not case.state.extension_question_raised
    case.at(question_at)
    assert case.state.extension_question_raised
    assert case.state.timeline[-1].kind == "timer"
    assert "extension question" in case.state.timeline[-1].detail
    (wait,) = [w for w in case.state.awaited if w.event == "extension_ruling"]
    assert wait.party is Party.RVDK
    assert wait.due is not None and question_at < wait.due < midnight(end)
    reminders = case.at(wait.due)
    assert [(r.party, r.event) for r in reminders] == [(Party.RVDK, "extension_ruling")]


def test_ots_end_without_extension_closes_as_ots_ended() -> None:
    case = started(*f.to_ots(months=3))
    end = case.state.ots_ends_on
    assert end is not None
    case.at(midnight(end) - dt.timedelta(seconds=1))
    assert case.state.phase is Phase.OTS
    case.at(midnight(end))
    assert case.state.phase is Phase.CLOSED
    assert case.state.end_state is EndState.OTS_ENDED
    assert case.state.next_timer() is None


def test_extension_moves_the_end_and_the_next_question() -> None:
    case = started(*f.to_ots(months=12))
    first_end = case.state.ots_ends_on
    assert first_end is not None
    case.at(midnight(first_end) - EXTENSION_QUESTION_LEAD)  # question raised
    case.send(f.extension(True, months=12))
    new_end = case.state.ots_ends_on
    assert new_end == add_months(first_end, 12)
    assert not any(w.event == "extension_ruling" for w in case.state.awaited)
    case.at(midnight(first_end))
    assert case.state.phase is Phase.OTS  # the old end date passes without closing
    assert case.state.next_timer() == midnight(new_end) - EXTENSION_QUESTION_LEAD
    case.at(midnight(new_end))
    assert case.state.end_state is EndState.OTS_ENDED


def test_refused_extension_closes_at_the_original_end() -> None:
    case = started(*f.to_ots(months=12))
    end = case.state.ots_ends_on
    assert end is not None
    case.send(f.extension(False))
    assert case.state.next_timer() == midnight(end)  # the question is answered
    case.at(midnight(end))
    assert case.state.end_state is EndState.OTS_ENDED


def test_no_timer_while_nobody_is_awaited_with_a_deadline() -> None:
    case = Case()
    assert case.state.next_timer() is None  # the RvdK's announcement has no deadline
    case.send(*f.to_investigating())
    assert case.state.next_timer() is None
