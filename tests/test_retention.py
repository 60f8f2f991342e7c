"""Closed means closed (issue 7, build point 3) on the time-skipping server.

A case whose protocol ends completes at once; its ``RetentionWorkflow`` keeps it for the
retention period, then crypto-shreds it, or erases it at once on an ``erase`` update.
``kbflow erase`` (``starter.cases.erase_running_case``) and ``kbflow status``
(``starter.cases.case_view``) work in every state: open, closed in retention, closed in
a run that predates the retention workflow (still sleeping in ``CaseWorkflow``),
terminated, erased already.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import worker as worker_module
from activities.outbox_store import OutboxStore
from activities.pseudonyms import Pseudonymiser
from encryption.keys import KeyStore
from kbflow.case import CaseStatus, EndState, Phase
from kbflow.events import CaseStart, ErasureReason, ErasureRequest
from kbflow.retention import Retention, RetentionStatus, retention_workflow_id
from kbflow.scenario import EXAMPLES_DIR, Scenario
from kbflow.settings import Settings, workflow_id
from starter import render
from starter.cases import CaseError, case_view, erase_running_case
from starter.cases import start_case as start_new_case
from tests import factories as f
from tests.conftest import retention_of, run_status, time_skipping, time_skipping_server
from tests.test_case_workflow import send, settled, start_case, status_of
from tests.test_cli import _cli, _write
from worker import build_worker, connect
from workflows.case_workflow import CLOSED_PATCH, RETENTION_PATCH
from workflows.retention_workflow import RetentionWorkflow

REQUEST = ErasureRequest(requested_by="RvdK-privacy-01", reason=ErasureReason.ART_17_REQUEST)
RETENTION = dt.timedelta(days=30)


@pytest_asyncio.fixture
async def own_env(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own (as in ``tests/test_erasure.py``: after
    a case key is destroyed the shared server may stop skipping time for later tests)."""
    async with time_skipping_server(keys) as environment:
        yield environment


@pytest.fixture
def client(own_env: WorkflowEnvironment) -> Client:
    return own_env.client


def thirty_day_start() -> CaseStart:
    return CaseStart.model_validate({**f.case_start().model_dump(),
                                     "retention_days": RETENTION.days})


async def close(handle: WorkflowHandle[Any, Any]) -> None:
    """Close the case: step 3 from both, then no investigation (end state
    ``no_investigation``)."""
    await send(handle, f.announce(), f.residence_ind(known=False),
               f.residence_dtv(known=False), f.decision(investigate=False))


async def until_status(handle: WorkflowHandle[Any, Any],
                       wanted: WorkflowExecutionStatus) -> None:
    """Wait (bounded, polling) until the run has ``wanted`` status; time is not skipped
    meanwhile (no client waits on a result)."""
    for _ in range(500):
        if await run_status(handle) is wanted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{handle.id}: not {wanted.name}, but {await run_status(handle)}")


async def result_without_skipping(client: Client,
                                  handle: WorkflowHandle[Any, CaseStatus]) -> CaseStatus:
    """A completed case's result. (A handle from ``start_workflow`` on the time-skipping
    server lets the server skip time while it waits on ``result()``, which would end the
    retention period at once; a handle got by id does not.)"""
    return await client.get_workflow_handle(handle.id, result_type=CaseStatus).result()




async def test_a_closed_case_completes_and_is_erased_when_its_retention_ends(
    own_env: WorkflowEnvironment, client: Client, task_queue: str, worker: Any,
    store: OutboxStore, keys: KeyStore,
) -> None:
    start = thirty_day_start()
    handle = await start_case(client, task_queue, start)
    ref = start.case_ref
    await close(handle)
    await until_status(handle, WorkflowExecutionStatus.COMPLETED)  # at once: no time skipped
    retention = retention_of(client, ref)
    assert await run_status(retention) is WorkflowExecutionStatus.RUNNING
    final = await result_without_skipping(client, handle)
    assert final.phase is Phase.CLOSED and final.end_state is EndState.NO_INVESTIGATION
    assert final.closed_at is not None and final.erased_at is None
    kept: RetentionStatus = await retention.query(RetentionWorkflow.status)
    assert kept.erase_due == final.closed_at + RETENTION and kept.erased_at is None
    assert store.packets(ref) and not keys.is_destroyed(workflow_id(ref))

    # `kbflow status`: the completed case and when its data will be erased.
    view = await case_view(client, ref)
    assert not view.erased and view.status == final
    assert view.retention is not None and view.retention.running
    assert view.retention.retention.erase_due == kept.erase_due

    await own_env.sleep(kept.erase_due - await own_env.get_current_time()
                        - dt.timedelta(hours=1))
    assert (await retention.query(RetentionWorkflow.status)).erased_at is None  # an hour before
    assert store.packets(ref)

    async with time_skipping(client):  # the server skips the last hour
        erasure = await retention.result()
    assert erasure.at >= kept.erase_due
    assert erasure.requested_by == "kbflow-retention-timer"
    assert erasure.reason == f"retention-ended ({RETENTION.days} days after closing)"
    assert erasure.key_destroyed and erasure.packets_removed == 5  # steps 1, 2 (x2), 3 (x2)
    assert keys.is_destroyed(workflow_id(ref)) and store.packets(ref) == []
    assert store.erasures() == [erasure]
    assert await run_status(retention) is WorkflowExecutionStatus.COMPLETED

    # `kbflow status` after erasure: how the case ended stays known, from the retention
    # workflow's input (the case's own result is under the destroyed key).
    view = await case_view(client, ref, erasure=erasure, key_destroyed=True)
    assert view.erased and view.timeline is None and view.status is not None
    assert view.status.end_state is EndState.NO_INVESTIGATION
    assert view.status.erased_at == erasure.at
    assert render.view_lines(view)[1].startswith(
        f"erased on {erasure.at:%Y-%m-%d %H:%M} UTC (retention-ended")


async def test_erase_during_retention_erases_at_once(
    client: Client, task_queue: str, worker: Any, store: OutboxStore, keys: KeyStore,
) -> None:
    start = thirty_day_start()
    handle = await start_case(client, task_queue, start)
    await close(handle)
    await until_status(handle, WorkflowExecutionStatus.COMPLETED)
    retention = retention_of(client, start.case_ref)
    closed_at = (await result_without_skipping(client, handle)).closed_at

    erasure = await erase_running_case(client, start.case_ref, REQUEST)
    assert erasure is not None and erasure.reason == "art-17-request"
    assert erasure.requested_by == "RvdK-privacy-01" and erasure.key_destroyed
    assert await retention.result() == erasure
    assert closed_at is not None and erasure.at < closed_at + RETENTION
    assert keys.is_destroyed(workflow_id(start.case_ref))
    assert store.packets(start.case_ref) == [] and store.erasures() == [erasure]

    with pytest.raises(CaseError, match=r"erased already on .* \(art-17-request\); nothing"):
        await erase_running_case(client, start.case_ref, REQUEST)


async def test_erase_of_an_open_case_erases_it_in_its_own_run(
    client: Client, task_queue: str, worker: Any, store: OutboxStore, keys: KeyStore,
) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, f.announce())
    await settled(handle)
    ref = handle.id.removeprefix("kb-case-")
    erasure = await erase_running_case(client, ref, REQUEST)
    assert erasure is not None and erasure.key_destroyed
    final = await handle.result()
    assert final.end_state is EndState.ERASED and final.erased_at is not None
    assert await run_status(retention_of(client, ref)) is None  # never handed over


async def test_erase_of_a_terminated_case_is_left_to_the_data_dir(
    client: Client, task_queue: str, worker: Any,
) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, f.announce())
    await settled(handle)
    await handle.terminate(reason="test")
    assert await erase_running_case(client, handle.id.removeprefix("kb-case-"), REQUEST) is None


async def test_status_of_a_closed_case_needs_no_worker(
    client: Client, task_queue: str, store: OutboxStore,
) -> None:
    start = thirty_day_start()
    async with build_worker(client, task_queue, store):
        handle = await start_case(client, task_queue, start)
        await close(handle)
        await until_status(handle, WorkflowExecutionStatus.COMPLETED)
    view = await case_view(client, start.case_ref, timeout=dt.timedelta(seconds=1))
    assert not view.erased and view.timeline is None  # the timeline needs a worker
    assert view.status is not None and view.status.end_state is EndState.NO_INVESTIGATION
    assert view.retention is not None and view.retention.running
    assert view.status.closed_at is not None
    assert view.retention.retention.erase_due == view.status.closed_at + RETENTION
    await retention_of(client, start.case_ref).terminate(reason="test finished")



async def test_a_closed_case_whose_history_was_deleted_is_known_by_its_retention_workflow(
    client: Client, task_queue: str, worker: Any, tmp_path: Path,
) -> None:
    """The namespace's retention (30 days in production) deletes a completed run's
    history long before the case's retention ends: status and start still know it.
    The state is made directly, a retention workflow whose case has no run on the
    server (the dev server's deletion is asynchronous and took over 30 s under load;
    the test server cannot delete)."""
    start = thirty_day_start()
    final = CaseStatus(case_ref=start.case_ref, phase=Phase.CLOSED,
                       end_state=EndState.NO_INVESTIGATION, steps_done=(1, 2, 3),
                       awaiting=(), ots_ends_on=None, escalations=0,
                       closed_at=dt.datetime.now(dt.UTC))
    assert final.closed_at is not None
    kept = await client.start_workflow(
        RetentionWorkflow.run,
        Retention(case_ref=start.case_ref, closed_at=final.closed_at, retention=RETENTION,
                  final_status=final),
        id=retention_workflow_id(start.case_ref), task_queue=task_queue)
    assert await run_status(client.get_workflow_handle(workflow_id(start.case_ref))) is None

    view = await case_view(client, start.case_ref)  # no worker needed
    assert not view.erased and view.status == final and view.timeline is None
    assert view.retention is not None and view.retention.running
    assert view.retention.retention.erase_due == final.closed_at + RETENTION
    with pytest.raises(CaseError, match="started a case that is closed; its start cannot be "
                                        "repeated"):
        await start_new_case(client, Settings(data_dir=tmp_path, task_queue=task_queue),
                             start)
    assert await run_status(client.get_workflow_handle(workflow_id(start.case_ref))) is None
    await kept.terminate(reason="test finished")


async def test_a_case_whose_retention_workflow_runs_already_still_completes(
    client: Client, task_queue: str, worker: Any,
) -> None:
    """As after a reset of a closed case's run to before its closing: it closes again,
    finds its retention workflow started, and completes (no failed workflow task)."""
    start = thirty_day_start()
    handle = await start_case(client, task_queue, start)
    await send(handle, f.announce())
    status = await status_of(handle)
    earlier = await client.start_workflow(
        RetentionWorkflow.run,
        Retention(case_ref=start.case_ref, closed_at=dt.datetime.now(dt.UTC),
                  retention=RETENTION, final_status=status),
        id=retention_workflow_id(start.case_ref), task_queue=task_queue)
    await send(handle, f.residence_ind(known=False), f.residence_dtv(known=False),
               f.decision(investigate=False))
    await until_status(handle, WorkflowExecutionStatus.COMPLETED)
    assert (await result_without_skipping(client, handle)).end_state is (
        EndState.NO_INVESTIGATION)
    assert await run_status(earlier) is WorkflowExecutionStatus.RUNNING
    await earlier.terminate(reason="test finished")

# ---- runs that predate the retention workflow -------------------------------------------

@pytest.fixture
def before_closed_patch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Make the worker run ``CaseWorkflow`` as code before ``CLOSED_PATCH`` did (the patch
    is never taken, so no marker is written); calling the result restores today's code.
    ``temporalio.workflow`` is passed through the sandbox, so the workflow sees this."""
    patched = workflow.patched

    def old_code(patch_id: str) -> bool:
        return patch_id != CLOSED_PATCH and patched(patch_id)

    monkeypatch.setattr(workflow, "patched", old_code)
    yield lambda: monkeypatch.setattr(workflow, "patched", patched)


async def old_style_case_in_retention(
    client: Client, task_queue: str, store: OutboxStore, restore: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> WorkflowHandle[Any, CaseStatus]:
    """A case closed by a worker before ``CLOSED_PATCH``: its run sleeps in retention.
    The worker is stopped and today's code restored, so the next worker replays it.
    (The first worker keeps no sticky cache: the Java test server does not move a
    stopped worker's sticky tasks back to the task queue.)"""
    start = thirty_day_start()
    monkeypatch.setattr(worker_module, "Worker",
                        functools.partial(Worker, max_cached_workflows=0))
    old_worker = build_worker(client, task_queue, store)
    monkeypatch.setattr(worker_module, "Worker", Worker)
    async with old_worker:
        handle = await start_case(client, task_queue, start)
        await close(handle)
        events = await settled(handle)
    restore()
    assert await run_status(handle) is WorkflowExecutionStatus.RUNNING
    assert await run_status(retention_of(client, start.case_ref)) is None
    markers = [e.marker_recorded_event_attributes for e in events
               if e.HasField("marker_recorded_event_attributes")]
    assert markers  # the retention patch (and the others) are on record, CLOSED_PATCH not
    text = str(markers)
    assert RETENTION_PATCH in text and CLOSED_PATCH not in text
    return handle


async def test_an_old_style_run_in_retention_finishes_the_old_way(
    client: Client, task_queue: str, store: OutboxStore, keys: KeyStore,
    before_closed_patch: Callable[[], None], monkeypatch: pytest.MonkeyPatch,
) -> None:
    handle = await old_style_case_in_retention(client, task_queue, store, before_closed_patch,
                                                monkeypatch)
    ref = handle.id.removeprefix("kb-case-")
    async with build_worker(client, task_queue, store):  # today's code replays the run
        closed = await status_of(handle)
        final = await handle.result()  # the server skips the 30 days
    assert final.closed_at == closed.closed_at and final.closed_at is not None
    assert final.erased_at is not None
    assert final.erased_at - final.closed_at >= RETENTION
    [erasure] = store.erasures()
    assert erasure.reason == f"retention-ended ({RETENTION.days} days after closing)"
    assert keys.is_destroyed(workflow_id(ref))
    assert await run_status(retention_of(client, ref)) is None  # none was started


async def test_erase_of_an_old_style_run_in_retention_goes_to_the_case(
    client: Client, task_queue: str, store: OutboxStore, keys: KeyStore,
    before_closed_patch: Callable[[], None], monkeypatch: pytest.MonkeyPatch,
) -> None:
    handle = await old_style_case_in_retention(client, task_queue, store, before_closed_patch,
                                                monkeypatch)
    ref = handle.id.removeprefix("kb-case-")
    async with build_worker(client, task_queue, store):
        erasure = await erase_running_case(client, ref, REQUEST)
        final = await handle.result()
    assert erasure is not None and erasure.reason == "art-17-request"
    assert final.end_state is EndState.NO_INVESTIGATION and final.erased_at is not None
    assert keys.is_destroyed(workflow_id(ref))
    assert await run_status(retention_of(client, ref)) is None


# ---- through the command line (a real dev server) ---------------------------------------

async def test_status_and_erase_of_a_closed_case_through_the_cli(
    dev_server: WorkflowEnvironment, tmp_path: Path,
) -> None:
    task_queue = f"kbflow-cli-{uuid.uuid4()}"
    cli = _cli(dev_server, tmp_path / "data", task_queue)
    Pseudonymiser.load(Settings(data_dir=cli.data_dir))
    scenario = Scenario.load(EXAMPLES_DIR / "06_family_unknown.json")  # closes at step 3
    settings = Settings(temporal_address=cli.env["TEMPORAL_ADDRESS"],
                        namespace=cli.env["TEMPORAL_NAMESPACE"], task_queue=task_queue,
                        data_dir=cli.data_dir)
    keys = KeyStore.open(settings)
    client = await connect(settings, keys)
    store = OutboxStore(settings, keys=keys)
    async with build_worker(client, task_queue, store):
        started = await cli("start", str(_write(tmp_path / "case.json", scenario.case)))
        assert started.returncode == 0, started.stderr
        ref = started.stdout.split("started case ")[1].split()[0]
        for index, item in enumerate(scenario.events):
            sent = await cli("event", ref, item.event,
                             str(_write(tmp_path / f"{index}.json", item.body)))
            assert sent.returncode == 0, sent.stderr
        case = client.get_workflow_handle(workflow_id(ref))
        await until_status(case, WorkflowExecutionStatus.COMPLETED)

    # No worker runs: the status comes from the completed run and its retention workflow.
    text = await cli("status", ref)
    assert text.returncode == 0, text.stderr
    shown = await cli.json("status", ref)
    assert shown["phase"] == "closed" and shown["end_state"] == "no_investigation"
    assert not shown["erased"] and shown["retention"]["running"]
    due = dt.datetime.fromisoformat(shown["retention"]["erase_due"])
    assert due - dt.datetime.fromisoformat(shown["closed_at"]) == dt.timedelta(days=365)
    assert (f"personal data kept until {due:%Y-%m-%d %H:%M} UTC, then erased (workflow "
            f"kb-retention-{ref})") in text.stdout.splitlines()

    async with build_worker(client, task_queue, store):
        erased = await cli("erase", ref, "--requested-by", "RvdK-privacy-01",
                           "--reason", "art-17-request")
        assert erased.returncode == 0, erased.stderr
        assert erased.stdout.startswith(f"erased case {ref}")
        assert "data key destroyed" in erased.stdout
        retention = client.get_workflow_handle(retention_workflow_id(ref))
        await until_status(retention, WorkflowExecutionStatus.COMPLETED)
    again = await cli("erase", ref, "--requested-by", "RvdK-privacy-01",
                      "--reason", "court-order")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    [line] = again.stderr.strip().splitlines()
    assert line.startswith(f"error: case {ref}: erased already on ")
    assert line.endswith("(art-17-request); nothing left to erase")
    after = await cli.json("status", ref)
    assert after["erased"] and after["end_state"] == "no_investigation"
    assert after["erasure"]["reason"] == "art-17-request" and after["timeline"] is None
