"""Every choice of PROCESS.md §4 (README "Choices where PROCESS.md is silent"), pinned.

Each expectation is a literal written here from the README's table, never read from
``kbflow.process``: changing a reply deadline, the escalation grace, the extension lead,
the RvdK's reminder before an OTS ends, the OTS length bounds, the retention period, the
one-extension-per-period rule or the month-end arithmetic of OTS ends makes a test here
fail. Behaviour is observed through the pure state machine's public API
(``CaseState.start``, ``apply``, ``next_timer``, ``fire_timers``, ``status``) and, for
retention, through a case run to its erasure on a time-skipping server.

A timer is pinned on both sides: nothing happens one second before the moment, and it
happens at exactly the moment.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore
from kbflow.case import CaseState, EndState, EventRefused, Phase
from kbflow.events import CourtRulingEvent, ExtensionRuling
from kbflow.items import Measure
from kbflow.process import Party, Step
from tests import factories as f
from tests.conftest import time_skipping_server
from tests.test_case_workflow import completed_status, send, start_case
from tests.test_retention import retention_of, time_skipping

SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)
#: When the case is reported (a Monday morning, UTC).
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def at(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


class Case:
    """A ``CaseState`` driven with explicit moments (no clock of its own)."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.ids = f.Ids()
        self.state, _ = CaseState.start(f.case_start(), now, self.ids)

    def send(self, now: dt.datetime, *events: f.Ev) -> None:
        for ev in events:
            self.state.apply(ev.name, _ruled_on(ev, now.date()).event, now, self.ids)

    def reminders_at(self, now: dt.datetime) -> list[tuple[Party, str, Step | None]]:
        return [(r.party, r.event, r.step) for r in self.state.fire_timers(now, self.ids)]

    def escalations(self) -> int:
        return self.state.status().escalations

    def escalated(self, party: Party, event: str) -> bool:
        return any(w.escalated for w in self.state.status().awaiting
                   if w.party is party and w.event == event)

    def awaits(self, party: Party, event: str) -> dt.datetime | None:
        """The due moment of the wait on ``party``'s ``event``; raises if it is not awaited."""
        [due] = [w.due for w in self.state.status().awaiting
                 if w.party is party and w.event == event]
        return due


def _ruled_on(ev: f.Ev, day: dt.date) -> f.Ev:
    """``ev`` with any date field of a ruling set to ``day``: a ruling carries its date
    (issue 6, finding 6), and these tests count the OTS from the day the ruling is applied.
    Events without a date field are returned unchanged."""
    if not isinstance(ev.event, CourtRulingEvent | ExtensionRuling):
        return ev
    dated = {name: day for name, info in type(ev.event).model_fields.items()
             if dt.date in _types_of(info.annotation)}
    if not dated:
        return ev
    return f.Ev(ev.name, ev.event.model_copy(update=dated))


def _types_of(annotation: object) -> set[object]:
    """The types an annotation admits (``X | None`` -> {X, None}, ``Annotated`` unwrapped)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _types_of(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {t for arg in typing.get_args(annotation) for t in _types_of(arg)}
    return {annotation}


# ---- reply deadlines and escalation --------------------------------------------------------

#: (wait id of ``f.REPLY_WAITS``, reply deadline): README "reply deadlines".
REPLY_DEADLINES = {
    "step-3": dt.timedelta(days=14),
    "step-7": dt.timedelta(days=7),
    "step-9": dt.timedelta(weeks=8),
    "step-11": dt.timedelta(weeks=8),
}
#: README "late reply": escalation 7 days after the missed deadline.
ESCALATION_AFTER = dt.timedelta(days=7)


def test_every_reply_wait_has_a_pinned_deadline() -> None:
    assert {wait[0] for wait in f.REPLY_WAITS} == set(REPLY_DEADLINES)


@pytest.mark.parametrize("wait", f.REPLY_WAITS, ids=[w[0] for w in f.REPLY_WAITS])
def test_reply_deadline_then_reminder_then_escalation(
    wait: tuple[str, Callable[[], list[f.Ev]], Party, str, Step],
) -> None:
    """The party is reminded at exactly the deadline (not a second before) and the
    escalation is recorded exactly 7 days later (not a second before)."""
    wait_id, events, party, awaited, step = wait
    *path, question = events()
    case = Case()
    case.send(T0 + DAY, *path)
    asked = T0 + 3 * DAY + dt.timedelta(hours=5)  # the deadline counts from the question
    case.send(asked, question)
    deadline = asked + REPLY_DEADLINES[wait_id]

    assert case.awaits(party, awaited) == deadline
    assert case.state.next_timer() == deadline
    assert case.reminders_at(deadline - SECOND) == []
    reminders = case.reminders_at(deadline)
    assert (party, awaited, step) in reminders
    assert {event for _, event, _ in reminders} == {awaited}  # step 3: IND and DT&V alike

    assert case.state.next_timer() == deadline + ESCALATION_AFTER
    assert case.reminders_at(deadline + ESCALATION_AFTER - SECOND) == []
    assert not case.escalated(party, awaited) and case.escalations() == 0
    assert case.reminders_at(deadline + ESCALATION_AFTER) == []  # reminded once only
    assert case.escalated(party, awaited)


def test_step_3_deadline_is_14_days_for_both_ind_and_dtv() -> None:
    case = Case()
    announced = T0 + 2 * DAY
    case.send(announced, f.announce())
    deadline = at(2026, 3, 18, 9) + dt.timedelta(minutes=30)  # 4 March 09:30 + 14 days
    assert case.awaits(Party.IND, "residence_information") == deadline
    assert case.awaits(Party.DTV, "residence_information") == deadline
    assert sorted(p.value for p, _, _ in case.reminders_at(deadline)) == ["DTV", "IND"]


def _dtv_late() -> Case:
    """IND replied to step 3, DT&V did not; timers fired up to 21 days after the question
    less a second (reminded, not yet escalated)."""
    case = Case()
    case.send(T0, f.announce(), f.residence_ind())
    case.reminders_at(T0 + dt.timedelta(days=14))
    case.reminders_at(T0 + dt.timedelta(days=21) - SECOND)
    return case


def test_the_rvdk_decides_after_step_3_once_both_replies_are_in_or_escalated() -> None:
    """README "RvdK decision after step 3": while DT&V's reply is late but not escalated
    the decision is refused; once escalated (21 days after the question) it is allowed."""
    case = _dtv_late()
    with pytest.raises(EventRefused):
        case.send(T0 + dt.timedelta(days=21) - SECOND, f.decision(True))
    case.reminders_at(T0 + dt.timedelta(days=21))
    assert case.escalated(Party.DTV, "residence_information")
    case.send(T0 + dt.timedelta(days=21), f.decision(True))
    assert case.state.status().phase is Phase.INVESTIGATING


def test_a_late_reply_is_accepted_after_its_escalation() -> None:
    """README "late reply": the case never fails, and a late reply is still accepted."""
    case = _dtv_late()
    case.reminders_at(T0 + dt.timedelta(days=21))
    assert case.escalated(Party.DTV, "residence_information")
    case.send(T0 + dt.timedelta(days=40), f.residence_dtv())
    assert not any(w.event == "residence_information" for w in case.state.status().awaiting)
    assert 3 in case.state.status().steps_done


# ---- OTS length, the extension question, the end of an OTS -------------------------------

def _in_ots(ruled: dt.datetime, months: int) -> Case:
    case = Case()
    case.send(T0, *f.to_awaiting_ruling())
    case.send(ruled, f.ruling(Measure.OTS, months))
    return case


def test_the_extension_question_8_weeks_before_the_end_then_reminder_and_escalation() -> None:
    """OTS ruled 10 March 2026 for 12 months ends 10 March 2027. The extension question is
    raised at 00:00 on 13 January 2027 (8 weeks before), the RvdK is reminded at 00:00 on
    24 February (2 weeks before), the escalation is recorded 3 March (1 week before), and an
    OTS that was not extended ends at 00:00 on 10 March."""
    case = _in_ots(at(2026, 3, 10, 14), 12)
    assert case.state.status().ots_ends_on == dt.date(2027, 3, 10)
    question, reminder = at(2027, 1, 13), at(2027, 2, 24)
    escalation, end = at(2027, 3, 3), at(2027, 3, 10)

    assert case.state.next_timer() == question
    assert case.reminders_at(question - SECOND) == []
    assert not any(w.event == "extension_ruling" for w in case.state.status().awaiting)
    assert case.reminders_at(question) == []
    assert case.awaits(Party.RVDK, "extension_ruling") == reminder

    assert case.state.next_timer() == reminder
    assert case.reminders_at(reminder - SECOND) == []
    assert case.reminders_at(reminder) == [(Party.RVDK, "extension_ruling", Step.COURT_RULING)]

    assert case.state.next_timer() == escalation
    case.reminders_at(escalation - SECOND)
    assert case.escalations() == 0
    case.reminders_at(escalation)
    assert case.escalations() == 1

    assert case.state.next_timer() == end
    case.reminders_at(end - SECOND)
    assert case.state.status().phase is Phase.OTS
    case.reminders_at(end)
    status = case.state.status()
    assert (status.phase, status.end_state) == (Phase.CLOSED, EndState.OTS_ENDED)
    assert status.closed_at == end


@pytest.mark.parametrize("model", [CourtRulingEvent, ExtensionRuling])
@pytest.mark.parametrize(("months", "valid"), [(0, False), (1, True), (12, True), (13, False)])
def test_an_ots_runs_1_to_12_months_per_ruling_and_per_extension(
    model: type[CourtRulingEvent | ExtensionRuling], months: int, valid: bool,
) -> None:
    ev = f.ruling(Measure.OTS, 12) if model is CourtRulingEvent else f.extension(True, 12)
    body = json.dumps({**ev.event.model_dump(mode="json"), "ots_months": months})
    if valid:
        assert model.model_validate_json(body).ots_months == months
    else:
        with pytest.raises(ValidationError, match="ots_months"):
            model.model_validate_json(body)


@pytest.mark.parametrize(("ruled", "months", "ends_on"), [
    (at(2026, 3, 10, 14), 1, dt.date(2026, 4, 10)),
    (at(2026, 3, 10, 14), 12, dt.date(2027, 3, 10)),
    (at(2026, 8, 31, 14), 6, dt.date(2027, 2, 28)),  # month end, across a year
    (at(2027, 1, 31, 14), 1, dt.date(2027, 2, 28)),  # 31 January + 1 month
    (at(2028, 1, 31, 14), 1, dt.date(2028, 2, 29)),  # ... in a leap year
    (at(2028, 2, 29, 14), 12, dt.date(2029, 2, 28)),  # 29 February + a year
    (at(2026, 5, 31, 14), 4, dt.date(2026, 9, 30)),  # 30-day month
], ids=lambda value: str(value.date() if isinstance(value, dt.datetime) else value))
def test_the_ots_end_counts_calendar_months_clamped_to_the_month_end(
    ruled: dt.datetime, months: int, ends_on: dt.date,
) -> None:
    assert _in_ots(ruled, months).state.status().ots_ends_on == ends_on


def test_an_extension_runs_from_the_current_end_date() -> None:
    """An OTS ruled 31 March 2026 for 12 months ends 31 March 2027; extended on
    15 February 2027 by 1 month it ends 30 April 2027 (from the end date, clamped), not
    15 March."""
    case = _in_ots(at(2026, 3, 31, 11), 12)
    case.send(at(2027, 2, 15, 10), f.extension(True, 1))
    status = case.state.status()
    assert status.ots_ends_on == dt.date(2027, 4, 30)
    assert case.state.next_timer() == at(2027, 4, 30) - dt.timedelta(weeks=8)


def test_one_extension_ruling_per_ots_period() -> None:
    """After the extension of the period ending 31 March 2027 is ruled, a second ruling
    before that date is refused; from that date the new period may be extended."""
    case = _in_ots(at(2026, 3, 31, 11), 12)
    case.send(at(2027, 2, 15, 10), f.extension(True, 12))
    assert case.state.status().ots_ends_on == dt.date(2028, 3, 31)
    second = f.extension(True, 6)
    for moment in (at(2027, 2, 16), at(2027, 3, 31) - SECOND):
        with pytest.raises(EventRefused):
            case.send(moment, second)
    case.send(at(2027, 3, 31), second)
    assert case.state.status().ots_ends_on == dt.date(2028, 9, 30)


def test_a_refused_extension_is_the_one_ruling_of_its_period() -> None:
    case = _in_ots(at(2026, 3, 31, 11), 12)
    case.send(at(2027, 2, 15, 10), f.extension(False))
    with pytest.raises(EventRefused):
        case.send(at(2027, 3, 30), f.extension(True, 6))
    case.reminders_at(at(2027, 3, 31))
    assert case.state.status().end_state is EndState.OTS_ENDED


# ---- retention --------------------------------------------------------------------------

@pytest_asyncio.fixture
async def own_env(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own (as in ``tests/test_erasure.py``: after a
    case key is destroyed the shared server may stop skipping time for later tests)."""
    async with time_skipping_server(keys) as environment:
        yield environment


@pytest.fixture
def client(own_env: WorkflowEnvironment) -> Client:
    return own_env.client


async def test_a_closed_case_is_erased_365_days_after_closing(
    client: Client, task_queue: str, worker: Worker, store: OutboxStore, keys: KeyStore,
) -> None:
    """Default retention: kept 365 days after closing (not erased at 364), erased then
    (by 366 days) by the case's retention workflow, and the erasure record says so."""
    start = f.case_start()
    handle = await start_case(client, task_queue, start)
    await send(handle, f.announce(), f.residence_ind(known=False),
               f.residence_dtv(known=False), f.decision(investigate=False))
    closed = await completed_status(handle)  # closed: the case's run completed
    assert closed.closed_at is not None and closed.erased_at is None

    async with time_skipping(client):  # the server skips the year
        erasure = await retention_of(client, start.case_ref).result()
    kept = erasure.at - closed.closed_at
    assert dt.timedelta(days=365) <= kept < dt.timedelta(days=366), kept
    assert store.erasures() == [erasure]
    assert erasure.case_ref == start.case_ref
    assert erasure.requested_by == "kbflow-retention-timer"
    assert "365 days after closing" in erasure.reason
    assert store.packets(start.case_ref) == []
