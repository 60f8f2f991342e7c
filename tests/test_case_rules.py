"""The case rules as one table (kbflow.case.RULES), and the rules added with it: V-nummers
with provenance (issue 6 finding 2), ruling dates (finding 6), strict and normalised input
(finding 7). Pure: a fixed clock, counter ids."""

from __future__ import annotations

import datetime as dt
import inspect
import unicodedata
from typing import Any

import pytest
from pydantic import ValidationError

import kbflow.case as case_module
from kbflow.case import (
    RULES,
    AdviceCycle,
    CaseState,
    EventRefused,
    ExtensionCycle,
    Phase,
    VvStatus,
)
from kbflow.events import (
    CourtRulingEvent,
    Event,
    InvestigationDecision,
    ResidenceInformation,
    VNumberCorrection,
)
from kbflow.items import Measure, Person, PersonVNumber
from kbflow.packets import Packet
from kbflow.process import PROCESS_TABLE, Item, Party, Step
from tests import factories as f
from tests.test_case_state import Case as CaseOnClock

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
X, Y = "1111111111", "2222222222"  # fictional V-nummers


def Case(**start: Any) -> CaseOnClock:
    """A case on a fake clock whose events pass ``admit`` (the validator) first."""
    return CaseOnClock(f.case_start(**start) if start else None, T0, admit=True)


def by(packets: list[Packet], step: int, sender: Party) -> list[Packet]:
    return [p for p in packets if p.step == step and p.sender is sender]


# ---- the table ------------------------------------------------------------------------------


def test_every_event_has_exactly_one_rule_in_process_order() -> None:
    assert list(RULES) == list(Event)  # the Event enum is written in PROCESS.md §3 order
    steps = [int(rule.step) for rule in RULES.values() if rule.step is not None]
    assert set(steps) == set(range(2, 13))  # every step after the report has its event
    # §3 order: the table reaches each step no earlier than the steps it builds on
    first = {step: steps.index(step) for step in set(steps)}
    assert first[2] < first[3] < first[5] < first[6] < first[7] < first[8] < first[9]
    assert first[6] < first[10] < first[11] < first[12]


@pytest.mark.parametrize("event", list(Event))
def test_each_rule_names_its_guard_and_effect(event: Event) -> None:
    # "Go to definition" from a row leads to a module-level function with a docstring.
    rule = RULES[event]
    for function in (rule.effect, rule.allowed.guard):
        if function is None:
            continue
        assert getattr(case_module, function.__name__) is function
        assert function.__qualname__ == function.__name__  # no lambda, no closure
        assert inspect.getdoc(function)


@pytest.mark.parametrize("event", list(Event))
def test_what_a_rule_awaits_is_someone_allowed_to_send_it(event: Event) -> None:
    for wait in RULES[event].awaits:
        assert wait.party in RULES[wait.event].senders


def test_senders_come_from_the_process_table() -> None:
    for rule in RULES.values():
        if rule.step is not None:
            assert set(rule.senders) <= set(PROCESS_TABLE[rule.step].senders)


def test_sub_states_are_typed() -> None:
    fields = CaseState.model_fields
    assert fields["vv_status"].annotation is VvStatus
    assert fields["advice_cycle"].annotation is AdviceCycle
    assert fields["extension_cycle"].annotation is ExtensionCycle
    assert fields["phase"].annotation is Phase


# ---- V-nummers with provenance (finding 2) -------------------------------------------------


def test_a_packet_carries_only_the_v_nummers_its_sender_knows() -> None:
    case = Case()
    case.send(f.announce(), f.residence_ind(v_numbers=((0, X),)), f.residence_dtv())
    (dtv,) = by(case.packets, 3, Party.DTV)
    assert Item.V_NUMBER not in dtv.items  # on the old main DT&V "disclosed" IND's number
    (ind,) = by(case.packets, 3, Party.IND)
    assert ind.body["v_number"] == [{"person": 0, "v_number": X}]
    case.send(f.decision(), f.result())  # the RvdK received IND's number in step 3
    for packet in by(case.packets, 5, Party.RVDK):
        assert packet.body["v_number"] == [{"person": 0, "v_number": X}]
    # ... and the recipients of step 5 now know it: DT&V's step-7 answer carries it
    case.send(f.ruling(), f.availability_request(), f.availability(True))
    (answer,) = by(case.packets, 7, Party.DTV)
    assert answer.body["v_number"] == [{"person": 0, "v_number": X}]


def test_the_reporters_v_nummer_is_known_to_the_reporter_only() -> None:
    child = f.CHILD.model_copy(update={"v_number": X})
    case = Case(persons=(child, f.PARENT))
    case.send(f.announce(), f.residence_ind(known=False), f.residence_dtv(), f.decision(),
              f.result())
    for packet in by(case.packets, 5, Party.RVDK):
        assert Item.V_NUMBER not in packet.items  # step 1 does not disclose V-nummers
    (number,) = case.state.record.v_numbers
    assert number.given_by is Party.VT and number.known_to == {Party.VT}


def test_a_contradicting_v_nummer_is_refused_without_the_numbers() -> None:
    case = Case()
    case.send(f.announce(), f.residence_ind(v_numbers=((0, X),)))
    before = case.state.model_dump()
    dtv = f.residence_dtv(v_number=(PersonVNumber(person=0, v_number=Y),))
    with pytest.raises(EventRefused) as refused:
        case.send(dtv)
    message = str(refused.value)
    assert "v_number[0]" in message and "person 0" in message and "given by IND" in message
    assert "v_number_correction" in message
    assert X not in message and Y not in message
    assert case.state.model_dump() == before


def test_the_same_v_nummer_from_a_second_party_is_accepted_and_known_to_it() -> None:
    case = Case()
    case.send(f.announce(), f.residence_ind(v_numbers=((0, X),)),
              f.residence_dtv(v_number=(PersonVNumber(person=0, v_number=X),)))
    (number,) = case.state.record.v_numbers
    assert number.given_by is Party.IND
    assert {Party.IND, Party.DTV, Party.RVDK} <= number.known_to


def test_a_person_listed_twice_is_refused() -> None:
    case = Case()
    case.send(f.announce())
    twice = f.residence_ind(v_numbers=((0, X), (0, Y)))
    with pytest.raises(EventRefused, match=r"v_number\[1\]\.person: person 0 is listed twice"):
        case.send(twice)


def test_a_v_nummer_is_corrected_by_the_aliens_chain() -> None:
    case = Case()
    case.send(f.announce(), f.residence_ind(v_numbers=((0, X),)))
    correction = VNumberCorrection(sender=Party.IND, idempotency_key=f.new_key("fix"),
                                   v_number=(PersonVNumber(person=0, v_number=Y),))
    case.send(f.Ev("v_number_correction", correction))
    (number,) = case.state.record.v_numbers
    assert (number.v_number, number.given_by, number.known_to) == (Y, Party.IND,
                                                                    frozenset({Party.IND}))
    # DT&V now agrees with the corrected number, not the old one
    case.send(f.residence_dtv(v_number=(PersonVNumber(person=0, v_number=Y),)))
    assert case.state.record.v_numbers[0].known_to >= {Party.IND, Party.DTV}
    with pytest.raises(EventRefused, match="sender: VT may not send 'v_number_correction'"):
        case.send(f.Ev("v_number_correction", correction.model_copy(
            update={"sender": Party.VT, "idempotency_key": f.new_key("fix")})))


def test_racing_contradictions_keep_the_first_source() -> None:
    # Two events that both passed the validator before either was applied: apply (which a
    # replay runs too) keeps the first V-nummer and does not fail.
    case = Case()
    case.send(f.announce())
    ind = f.residence_ind(v_numbers=((0, X),))
    dtv = f.residence_dtv(v_number=(PersonVNumber(person=0, v_number=Y),))
    case.state.admit(dtv.name, dtv.event, case.now)
    case.send(ind)
    case.state.apply(dtv.name, dtv.event, case.now + HOUR, case.ids)
    (number,) = case.state.record.v_numbers
    assert number.v_number == X


# ---- ruling dates (finding 6) -----------------------------------------------------------


def ruling_on(day: dt.date | None, months: int = 6) -> f.Ev:
    ev = f.ruling(Measure.OTS, months=months)
    assert isinstance(ev.event, CourtRulingEvent)
    return f.Ev(ev.name, ev.event.model_copy(update={"ruled_on": day}))


def test_the_ots_runs_from_the_ruling_not_from_when_kbflow_hears_of_it() -> None:
    case = Case()
    case.send(*f.to_awaiting_ruling())
    ruled = case.now.date()
    case.now += dt.timedelta(weeks=3)  # entered three weeks late
    case.send(ruling_on(ruled, months=6), dated=False)
    assert case.state.ots_ends_on == dt.date(2026, 9, 2)  # 2 March + 6 months
    assert case.state.record.court_ruling is not None
    assert case.state.record.court_ruling.ruled_on == ruled


def test_a_ruling_entered_after_its_extension_question_was_due_raises_it_at_once() -> None:
    case = Case()
    case.send(*f.to_awaiting_ruling())
    ruled = case.now.date()
    case.now += dt.timedelta(days=70)  # a 3-month OTS: the question was due 8 weeks before
    case.send(ruling_on(ruled, months=3), dated=False)
    due = case.state.next_timer()
    assert due is not None and due <= case.now
    case.state.fire_timers(case.now, case.ids)
    assert case.state.extension_question_raised
    assert any(w.event is Event.EXTENSION_RULING for w in case.state.awaited)


@pytest.mark.parametrize(("day", "reason"), [
    (None, "ruled_on: required"),
    (dt.date(2026, 3, 3), "ruled_on: in the future"),
    (dt.date(2026, 3, 1), "ruled_on: before the case was reported"),
])
def test_a_ruling_date_must_be_given_and_plausible(day: dt.date | None, reason: str) -> None:
    case = Case()
    case.send(*f.to_awaiting_ruling())
    before = case.state.model_dump()
    with pytest.raises(EventRefused, match=reason):
        case.send(ruling_on(day), dated=False)
    assert case.state.model_dump() == before


def test_histories_before_ruling_dates_count_from_receipt() -> None:
    # What the workflow does for a run whose history predates RULING_DATE_PATCH.
    case = Case()
    case.send(*f.to_awaiting_ruling())
    case.now += HOUR
    case.state.apply("court_ruling", ruling_on(None).event, case.now, case.ids,
                     ruling_dates=False)
    assert case.state.ots_ends_on == dt.date(2026, 9, 2)


# ---- strict, normalised input (finding 7) -------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "no", 1, 0, "true"])
def test_json_booleans_are_strict(value: object) -> None:
    body = {"sender": "RVDK", "idempotency_key": "rvdk-decision-0001", "investigate": value}
    with pytest.raises(ValidationError):
        InvestigationDecision.model_validate_json(__import__("json").dumps(body))


def test_json_integers_are_strict() -> None:
    body = ('{"sender": "RVDK", "idempotency_key": "rvdk-ruling-0001", "measure": "ots",'
            ' "summary": "s", "gi": {"name": "GI", "contact": "c"}, "ots_months": "3"}')
    with pytest.raises(ValidationError, match="ots_months"):
        CourtRulingEvent.model_validate_json(body)
    person = '{"sender": "IND", "idempotency_key": "ind-res-00001", "known_to_sender": true,' \
             ' "v_number": [{"person": "0", "v_number": "1111111111"}]}'
    with pytest.raises(ValidationError, match="person"):
        ResidenceInformation.model_validate_json(person)


def test_texts_are_nfc_at_the_edge() -> None:
    nfd = unicodedata.normalize("NFD", "Zoë Fictief-Açores")
    assert nfd != unicodedata.normalize("NFC", nfd)
    person = Person(name=nfd, address="Droomdijk 1", place_of_residence="Nergens",
                    date_of_birth=dt.date(2018, 1, 1), role="child")
    assert person.name == unicodedata.normalize("NFC", nfd)


def test_control_characters_are_refused() -> None:
    with pytest.raises(ValidationError, match="control characters"):
        Person(name="Fenna\x00Fictief", address="a", place_of_residence="p",
               date_of_birth=dt.date(2018, 1, 1), role="child")
    ok = Person(name="Fenna Fictief", address="Laan 1\r\n", place_of_residence="p",
                date_of_birth=dt.date(2018, 1, 1), role="child")
    assert ok.address == "Laan 1"


def test_steps_are_reached_in_order() -> None:
    assert [int(s) for s in Step] == list(range(1, 13))


def test_a_corrected_v_nummer_travels_on_in_the_tables_own_flows() -> None:
    case = Case()
    case.send(f.announce(), f.residence_ind(v_numbers=((0, X),)))
    correction = VNumberCorrection(sender=Party.IND, idempotency_key=f.new_key("fix"),
                                   v_number=(PersonVNumber(person=0, v_number=Y),))
    assert case.send(f.Ev("v_number_correction", correction)) == []  # no packet of its own
    case.send(f.residence_dtv(), f.decision(), f.result())
    # The RvdK received X, which is no longer on record, and never Y: its step 5 carries none.
    for packet in by(case.packets, 5, Party.RVDK):
        assert Item.V_NUMBER not in packet.items
    # IND gave Y: its step-7 question to DT&V carries it.
    case.send(f.ruling(), f.availability_request())
    (question,) = by(case.packets, 7, Party.IND)
    assert question.body["v_number"] == [{"person": 0, "v_number": Y}]
