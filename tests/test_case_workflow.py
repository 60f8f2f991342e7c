"""CaseWorkflow end to end on the time-skipping test server (fixtures in conftest.py).

Every branch of PROCESS.md §3, every reply deadline (reminder in the outbox store,
escalation on the timeline) with months and years of case time skipped in seconds,
refusals through the client, duplicates, a worker restart mid-case, and the delivery
activity's idempotency.

The test server does not skip time while a client waits on an update's result, so time is
advanced explicitly (``env.sleep``) between updates where a deadline matters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from google.protobuf.empty_pb2 import Empty
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

import worker as worker_module
from activities.delivery import DeliveryActivities
from activities.outbox_store import OutboxStore
from kbflow.case import CaseStatus, EndState, EventOutcome, Phase, TimelineEntry
from kbflow.events import CaseStart
from kbflow.items import CourtRequest, Measure, Person
from kbflow.packets import project_packet
from kbflow.process import (
    ESCALATION_GRACE,
    EXTENSION_QUESTION_LEAD,
    PROCESS_TABLE,
    Party,
    Step,
)
from kbflow.record import CaseRecord
from kbflow.settings import workflow_id
from tests import factories as f
from workflows.case_workflow import CaseWorkflow

HOUR = dt.timedelta(hours=1)
WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


ACTIVITY_ENDS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
}


def case_events(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    """The history events that record the case, not the workflow tasks that ran it."""
    return [event for event in events if event.event_type not in WORKFLOW_TASK_EVENTS]


async def settled(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    """Wait until the case is idle and return its history.

    ``run()`` delivers the step-1 report in the background of the first updates, so a
    test that compares before and after must start from an idle case: the last workflow
    task done and every delivery scheduled so far finished. A condition wait (bounded),
    not a wait for time to pass.
    """
    for _ in range(500):
        events = list((await handle.fetch_history()).events)
        scheduled = sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                        for e in events)
        ended = sum(e.event_type in ACTIVITY_ENDS for e in events)
        tasks = [e.event_type for e in events if e.event_type in WORKFLOW_TASK_EVENTS]
        idle = tasks[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        if idle and scheduled == ended:
            return events
        await asyncio.sleep(0.01)
    raise AssertionError(f"case {handle.id} did not become idle")


async def server_today(client: Client) -> dt.date:
    """Today on ``client``'s server: the time-skipping server's clock runs years ahead of
    the wall clock as tests skip time; the dev server's is the wall clock."""
    try:
        response = await client.test_service.get_current_time(Empty())
    except RPCError:
        return dt.datetime.now(dt.UTC).date()
    return response.time.ToDatetime().date()


async def plausible(client: Client, start: CaseStart) -> CaseStart:
    """``start`` with its persons' dates of birth moved by as many years as the server's
    clock is ahead, so that its children are as young on their report date as in the
    factories (the workflow refuses a start whose child is 18 or older)."""
    shift = (await server_today(client)).year - dt.datetime.now(dt.UTC).date().year
    if shift <= 0:
        return start
    persons = tuple(person.model_copy(update={"date_of_birth": _years_later(
        person.date_of_birth, shift)}) for person in start.persons)
    return start.model_copy(update={"persons": persons})


def _years_later(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


async def start_case(client: Client, task_queue: str,
                     start: CaseStart | None = None) -> WorkflowHandle[Any, CaseStatus]:
    start = await plausible(client, start or f.case_start())
    return await client.start_workflow(CaseWorkflow.run, start, id=workflow_id(start.case_ref),
                                       task_queue=task_queue)


async def send(handle: WorkflowHandle[Any, Any], *events: f.Ev) -> list[EventOutcome]:
    """Send ``events`` in order; a ruling is dated on the day the case was reported (case
    time on the shared test server runs years ahead of the wall clock)."""
    return [await handle.execute_update(ev.name, await in_case_time(handle, ev.event),
                                        result_type=EventOutcome)
            for ev in events]


async def in_case_time(handle: WorkflowHandle[Any, Any], event: Any) -> Any:
    """``event`` with its ``ruled_on`` (if it has one) set to the case's report date."""
    if getattr(event, "ruled_on", None) is None:
        return event
    reported = (await handle.describe()).start_time.date()
    return event.model_copy(update={"ruled_on": reported})


async def status_of(handle: WorkflowHandle[Any, Any]) -> CaseStatus:
    return await handle.query(CaseWorkflow.status)


async def timeline_of(handle: WorkflowHandle[Any, Any]) -> list[TimelineEntry]:
    return await handle.query(CaseWorkflow.timeline)


async def sleep_past(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any],
                     moment: dt.datetime) -> None:
    """Skip case time to an hour past ``moment`` and let the case settle."""
    await env.sleep(moment + HOUR - await env.get_current_time())
    await settled(handle)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


async def completed_status(handle: WorkflowHandle[Any, Any]) -> CaseStatus:
    """The status of a case whose run completes now (it closed): polled (bounded), then
    queried (a completed run answers by replay); see ``finished`` for why not
    ``result()``."""
    for _ in range(500):
        if (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED:
            return await status_of(handle)
        await asyncio.sleep(0.01)
    raise AssertionError(f"case {handle.id} did not complete when it closed")


async def finished(handle: WorkflowHandle[Any, Any], status: CaseStatus) -> CaseStatus:
    """Check that the run completed as the case closed (its retention workflow keeps the
    case from then on), with the case as it closed.

    Polled (bounded), not awaited with ``result()``: that lets the test server skip time,
    and a retention workflow that ends on the test server stops its time skipping for
    every later test (tests/test_retention.py runs those on a server of its own).
    """
    final = await completed_status(handle)
    assert (final.phase, final.end_state, final.steps_done, final.closed_at) == (
        status.phase, status.end_state, status.steps_done, status.closed_at)
    assert final.erased_at is None  # kept: erased when its retention ends
    return final


def deliveries(store: OutboxStore, case_ref: str) -> Counter:
    return Counter((int(p.step), p.sender, p.recipient) for p in store.packets(case_ref))


def ref_of(handle: WorkflowHandle[Any, Any]) -> str:
    return handle.id.removeprefix("kb-case-")


# ---- branches ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", f.BRANCH_NAMES)
async def test_branch_end_to_end(name: str, client: Client, task_queue: str, worker: Worker,
                                 store: OutboxStore) -> None:
    branch = f.branch(name)
    handle = await start_case(client, task_queue)
    ref = ref_of(handle)
    outcomes = await send(handle, *branch.events)
    assert not any(outcome.duplicate for outcome in outcomes)

    await settled(handle)  # the step-1 report is delivered in the background
    status = await status_of(handle)
    assert status.phase is branch.phase
    assert status.end_state is branch.end_state
    assert status.steps_done == branch.steps_done

    # What each party received: exactly the flows of PROCESS.md §3, and nothing else.
    assert deliveries(store, ref) == Counter(branch.deliveries)
    for party in Party:
        expected = sorted((s, snd) for s, snd, rcp in branch.deliveries if rcp is party)
        got = sorted((int(p.step), p.sender) for p in store.packets(ref, party))
        assert got == expected, party
    for packet in store.packets(ref):
        flow = PROCESS_TABLE[packet.step].flow_of(packet.sender)
        assert set(packet.body) <= {"persons"} | {item.value for item in flow.items}
    # The outcomes name the same packets the store holds.
    sent = {p.packet_id for outcome in outcomes for p in outcome.packets}
    stored = {p.packet_id for p in store.packets(ref) if p.step is not Step.REPORT}
    assert sent == stored

    # One processing-log entry per data subject per delivered packet.
    log = store.processing_log(ref)
    assert len(log) == len(store.packets(ref)) * len(f.PERSONS)

    if branch.phase is Phase.CLOSED:
        assert outcomes[-1].end_state is branch.end_state
        await finished(handle, status)


# ---- deadlines --------------------------------------------------------------------------

WAITS = f.REPLY_WAITS


@pytest.mark.parametrize(("events", "party", "awaited", "step"), [w[1:] for w in WAITS],
                         ids=[w[0] for w in WAITS])
async def test_reply_deadline_reminds_then_escalates(
    events: Any, party: Party, awaited: str, step: Step, env: WorkflowEnvironment,
    client: Client, task_queue: str, worker: Worker, store: OutboxStore,
) -> None:
    handle = await start_case(client, task_queue)
    ref = ref_of(handle)
    await send(handle, *events())
    reply_due = PROCESS_TABLE[step].reply_due
    assert reply_due is not None
    (wait,) = [w for w in await handle.query(CaseWorkflow.awaiting)
               if w.party is party and w.event == awaited]
    assert wait.due is not None and wait.due - wait.since == reply_due

    await env.sleep(reply_due - HOUR)
    await settled(handle)
    assert [r for r in store.reminders(ref) if r.event == awaited] == []
    await env.sleep(2 * HOUR)
    await settled(handle)
    reminders = [r for r in store.reminders(ref) if r.event == awaited]
    assert [(r.party, r.step) for r in reminders if r.party is party] == [(party, step)]
    assert (await status_of(handle)).escalations == 0

    await env.sleep(ESCALATION_GRACE)
    await settled(handle)
    timeline = await timeline_of(handle)
    assert any(e.kind == "reminder" and e.party is party and e.step is step for e in timeline)
    escalations = [e for e in timeline if e.kind == "escalation"]
    assert any(e.party is party and e.step is step for e in escalations)
    status = await status_of(handle)
    assert status.escalations == len(escalations)
    assert status.phase is not Phase.CLOSED  # a late party never fails the case
    assert len([r for r in store.reminders(ref) if r.party is party]) == len(
        [r for r in reminders if r.party is party])  # reminded once, not again


async def test_decision_waits_for_step_3_until_escalation(
    env: WorkflowEnvironment, client: Client, task_queue: str, worker: Worker,
    store: OutboxStore,
) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, f.announce(), f.residence_ind())  # DT&V stays silent
    with pytest.raises(WorkflowUpdateFailedError) as error:
        await send(handle, f.decision())
    assert "step 3 reply of DTV" in str(error.value.cause)
    reply_due = PROCESS_TABLE[Step.RESIDENCE_INFORMATION].reply_due
    assert reply_due is not None
    await env.sleep(reply_due + ESCALATION_GRACE + HOUR)
    await send(handle, f.decision(True))
    assert (await status_of(handle)).phase is Phase.INVESTIGATING
    assert [r.party for r in store.reminders(ref_of(handle))] == [Party.DTV]


async def test_ots_runs_out_without_extension(
    env: WorkflowEnvironment, client: Client, task_queue: str, worker: Worker,
    store: OutboxStore,
) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, *f.to_ots(months=12))
    ends_on = (await status_of(handle)).ots_ends_on
    assert ends_on is not None
    await sleep_past(env, handle, midnight(ends_on) - dt.timedelta(days=1))
    assert (await status_of(handle)).phase is Phase.OTS  # the day before, it still runs
    await sleep_past(env, handle, midnight(ends_on))  # the server skips the year
    status = await status_of(handle)
    assert status.phase is Phase.CLOSED
    assert status.end_state is EndState.OTS_ENDED
    assert status.closed_at is not None
    assert dt.timedelta(0) <= status.closed_at - midnight(ends_on) < dt.timedelta(minutes=1)
    timeline = await timeline_of(handle)
    assert any(e.kind == "timer" and "extension question" in e.detail for e in timeline)
    # The RvdK was asked about the extension, reminded, and it was escalated.
    assert [(r.party, r.event) for r in store.reminders(ref_of(handle))] == [
        (Party.RVDK, "extension_ruling")]
    assert status.escalations == 1
    await finished(handle, status)  # and the run completes


async def test_years_of_ots_with_an_extension(
    env: WorkflowEnvironment, client: Client, task_queue: str, worker: Worker,
    store: OutboxStore,
) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, *f.to_ots(months=12))
    first_end = (await status_of(handle)).ots_ends_on
    assert first_end is not None
    start = await env.get_current_time()
    question_at = dt.datetime.combine(first_end, dt.time(), tzinfo=dt.UTC) - (
        EXTENSION_QUESTION_LEAD)

    await env.sleep(question_at - start - HOUR)
    assert not any(w.event == "extension_ruling" for w in await handle.query(
        CaseWorkflow.awaiting))
    await env.sleep(2 * HOUR)
    (wait,) = [w for w in await handle.query(CaseWorkflow.awaiting)
               if w.event == "extension_ruling"]
    assert wait.party is Party.RVDK

    await send(handle, f.extension(True, months=12), f.extension_advice_request(),
               f.extension_advice())
    status = await status_of(handle)
    assert status.ots_ends_on is not None and status.ots_ends_on > first_end
    assert (status.ots_ends_on.year - first_end.year) * 12 + (
        status.ots_ends_on.month - first_end.month) == 12

    await sleep_past(env, handle, midnight(first_end))
    assert (await status_of(handle)).phase is Phase.OTS  # the first end date has passed
    await sleep_past(env, handle, midnight(status.ots_ends_on))  # another year, skipped
    final = await status_of(handle)
    assert final.end_state is EndState.OTS_ENDED
    assert final.ots_ends_on == status.ots_ends_on
    assert final.closed_at is not None
    assert dt.timedelta(0) <= final.closed_at - midnight(status.ots_ends_on) < (
        dt.timedelta(minutes=1))
    assert final.steps_done == (1, 2, 3, 5, 6, 10, 11)
    assert await env.get_current_time() - start > dt.timedelta(days=365)
    timeline = await timeline_of(handle)
    questions = [e for e in timeline if e.kind == "timer" and "extension question" in e.detail]
    assert len(questions) == 2  # once per end date
    assert deliveries(store, ref_of(handle))[(6, Party.RVDK, Party.IND)] == 2
    await finished(handle, final)


# ---- refusals through the client ------------------------------------------------------

REFUSALS: list[tuple[str, Any, str, Any, str]] = [
    # (id, events before, update name, body, text in the cause's message)
    ("out-of-order", lambda: [f.announce()], "investigation_result",
     lambda: f.result().event, "out of order"),
    ("wrong-sender", lambda: [], "announce_investigation",
     lambda: f.announce(sender=Party.DTV).event, "sender: DTV may not send"),
    ("missing-weighing", lambda: [f.announce()], "residence_information",
     lambda: f.residence_ind(weigh=False).event, "weighing: IND has no weighing"),
    ("item-outside-flow", lambda: [f.announce()], "residence_information",
     lambda: f.residence_dtv(procedure_history=f.PROCEDURE_HISTORY).event,
     "procedure_history: not part of step 3 from DTV"),
    ("malformed-body-wrong-type", lambda: f.to_awaiting_ruling(), "court_ruling",
     lambda: {"sender": "RVDK", "idempotency_key": f.new_key(), "measure": "ots",
              "summary": f.RULING_SUMMARY, "gi": f.GI_DETAILS.model_dump(),
              "ots_months": "twaalf maanden voor Fenna Fictief"},
     "court_ruling: ots_months"),
    ("malformed-body-extra-field", lambda: [f.announce()], "residence_information",
     lambda: {"sender": "IND", "idempotency_key": f.new_key(), "known_to_sender": True,
              "weighing": f.weighing(Party.IND).model_dump(),
              "name": f.CHILD.name},
     "residence_information: name: unknown field"),
    ("malformed-body-not-an-object", lambda: [], "announce_investigation",
     lambda: [f.CHILD.name], "announce_investigation"),
    ("unknown-event", lambda: [], "appeal_ruling",
     lambda: {"sender": "RVDK", "idempotency_key": f.new_key()},
     "unknown event 'appeal_ruling'"),
]


@pytest.mark.parametrize(("before", "name", "body", "reason"),
                         [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
async def test_refused_event_leaves_the_case_unchanged(
    before: Any, name: str, body: Any, reason: str, client: Client, task_queue: str,
    worker: Worker, store: OutboxStore,
) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, *before())
    history = await settled(handle)
    status, timeline = await status_of(handle), await timeline_of(handle)
    packets = len(store.packets(ref_of(handle)))

    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(name, body(), result_type=EventOutcome)
    cause = error.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "EventRefused"
    assert reason in cause.message
    assert not f.leaked(cause.message)

    assert await status_of(handle) == status
    assert await timeline_of(handle) == timeline
    after = (await handle.fetch_history()).events
    assert after[: len(history)] == history
    # A real server drops the workflow task that ran a rejecting validator (a speculative
    # task), so the history length stays the same; the Java test server records that task.
    # Either way the refused event itself never enters history: no update, no activity,
    # no timer -- only workflow-task bookkeeping may follow.
    assert {event.event_type for event in after[len(history):]} <= WORKFLOW_TASK_EVENTS
    assert len(case_events(after)) == len(case_events(history))
    assert len(store.packets(ref_of(handle))) == packets


async def test_duplicate_event_has_one_effect(client: Client, task_queue: str, worker: Worker,
                                              store: OutboxStore) -> None:
    handle = await start_case(client, task_queue)
    ref = ref_of(handle)
    await send(handle, f.announce())
    event = f.residence_ind()
    first = await handle.execute_update(event.name, event.event, id="update-first",
                                        result_type=EventOutcome)
    await settled(handle)
    packets, log = store.packets(ref), store.processing_log(ref)
    timeline = await timeline_of(handle)
    again = await handle.execute_update(event.name, event.event, id="update-second",
                                        result_type=EventOutcome)
    assert not first.duplicate and again.duplicate
    assert again.packets == first.packets
    assert store.packets(ref) == packets
    assert store.processing_log(ref) == log
    assert await timeline_of(handle) == timeline
    assert deliveries(store, ref)[(3, Party.IND, Party.RVDK)] == 1


async def test_worker_restart_mid_case_loses_nothing(
    client: Client, task_queue: str, store: OutboxStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real server moves a stopped worker's sticky tasks back to the task queue (the SDK
    # says goodbye with ShutdownWorker); the Java test server implements neither that nor
    # ResetStickyTaskQueue, so the first worker runs without a sticky cache.
    monkeypatch.setattr(worker_module, "Worker",
                        functools.partial(Worker, max_cached_workflows=0))
    first_worker = worker_module.build_worker(client, task_queue, store)
    monkeypatch.undo()
    async with first_worker:
        handle = await start_case(client, task_queue)
        await send(handle, f.announce(), f.residence_ind())
        before = await timeline_of(handle)
    ref = ref_of(handle)
    async with worker_module.build_worker(client, task_queue, store):
        await send(handle, f.residence_dtv(), f.decision(),
                   f.result(CourtRequest.CUSTODY_TERMINATION),
                   f.ruling(Measure.CUSTODY_TERMINATION))
        await settled(handle)
        status, timeline = await status_of(handle), await timeline_of(handle)
        assert deliveries(store, ref) == Counter(f.S1 + f.S2 + f.S3 + f.S5 + f.S6)
        await finished(handle, status)
    assert status.end_state is EndState.CUSTODY_TERMINATED
    assert status.steps_done == (1, 2, 3, 5, 6)
    assert timeline[: len(before)] == before
    assert [e.detail for e in timeline if e.kind == "event"] == [
        "case reported", "announce_investigation", "residence_information",
        "residence_information", "investigation_decision", "investigation_result",
        "court_ruling"]


# ---- the delivery activity -----------------------------------------------------------------


def _packet(record: CaseRecord, step: Step, sender: Party, recipient: Party) -> Any:
    return project_packet(record, step, sender, recipient, packet_id="packet-idem-0001",
                          created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))


async def test_delivering_a_packet_twice_writes_it_once(store: OutboxStore) -> None:
    record = f.full_record()
    packet = _packet(record, Step.RESIDENCE_INFORMATION, Party.IND, Party.RVDK)
    activities = DeliveryActivities(store)
    environment = ActivityEnvironment()
    first = await environment.run(activities.deliver_packet, packet)
    again = await environment.run(activities.deliver_packet, packet)
    assert (first.delivered, again.delivered) == (True, False)
    assert store.deliver(packet) is False
    assert store.packets(record.case_ref) == [packet]

    log = store.processing_log(record.case_ref)
    assert len(log) == len(record.persons)  # one entry per data subject
    assert len({entry.data_subject_id for entry in log}) == len(record.persons)
    for entry in log:
        assert entry.packet_id == packet.packet_id
        assert (entry.step, entry.sender, entry.recipient) == (
            Step.RESIDENCE_INFORMATION, Party.IND, Party.RVDK)
        assert entry.processing_activity_id == packet.processing_activity_id
        assert set(entry.items) == {"persons"} | {i.value for i in packet.items}
    text = "\n".join(entry.model_dump_json() for entry in log)
    assert not f.leaked(text)  # item names and pseudonyms only


async def test_pseudonyms_are_stable_per_person_across_packets(store: OutboxStore) -> None:
    record = f.full_record()
    for step, sender, recipient, packet_id in [
        (Step.RESIDENCE_INFORMATION, Party.IND, Party.RVDK, "p-1"),
        (Step.COURT_RULING, Party.RVDK, Party.DTV, "p-2"),
    ]:
        store.deliver(project_packet(record, step, sender, recipient, packet_id=packet_id,
                                     created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC)))
    log = store.processing_log(record.case_ref)
    by_packet: dict[str, list[str]] = {}
    for entry in log:
        by_packet.setdefault(entry.packet_id, []).append(entry.data_subject_id)
    assert by_packet["p-1"] == by_packet["p-2"]
    persons = [Person.model_validate(p.model_dump(include=set(Person.model_fields)))
               for p in record.persons]
    assert by_packet["p-1"] == [store.pseudonymise(person) for person in persons]


async def test_persons_sharing_a_pseudonym_do_not_wedge_delivery(store: OutboxStore) -> None:
    # Two persons with the same name and date of birth (a person listed twice, or twins
    # reported under one placeholder name) get the same pseudonymous subject id.
    twice = (f.CHILD, f.PARENT, f.CHILD.model_copy(update={"address": "Elders 1"}))
    record = CaseRecord.model_validate({**f.full_record().model_dump(), "persons": twice})
    packet = _packet(record, Step.ANNOUNCE_INVESTIGATION, Party.RVDK, Party.IND)
    activities = DeliveryActivities(store)
    # An error here is retried by Temporal for ever: every packet of the case stays stuck.
    receipt = await ActivityEnvironment().run(activities.deliver_packet, packet)
    assert receipt.delivered
    assert store.packets(record.case_ref) == [packet]
    subjects = [entry.data_subject_id for entry in store.processing_log(record.case_ref)]
    assert sorted(subjects) == sorted({store.pseudonymise(p) for p in packet.persons})


async def test_a_reminder_is_sent_once(store: OutboxStore) -> None:
    from kbflow.case import Reminder

    reminder = Reminder(case_ref="KB-2026-REMIND0001", party=Party.DTV, event="advice",
                        step=Step.ADVICE, due=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
                        notice_id="notice-0001")
    activities = DeliveryActivities(store)
    environment = ActivityEnvironment()
    assert await environment.run(activities.send_reminder, reminder) is True
    assert await environment.run(activities.send_reminder, reminder) is False
    assert store.reminders("KB-2026-REMIND0001") == [reminder]


# ---- a start that cannot be true, from a client that bypasses the CLI -------------------


async def test_an_implausible_start_fails_the_run_before_anything_is_disclosed(
        client: Client, task_queue: str, worker: Worker, store: OutboxStore) -> None:
    adult = f.CHILD.model_copy(update={"date_of_birth": dt.date(1960, 1, 1)})
    start = f.case_start(persons=(adult, f.PARENT))
    handle = await client.start_workflow(CaseWorkflow.run, start,
                                         id=workflow_id(start.case_ref), task_queue=task_queue)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ImplausibleStart"
    assert cause.message == ("case start refused: persons[0]: a child must be under 18 on "
                             "the report date")
    assert store.packets(start.case_ref) == []  # the report went to nobody
