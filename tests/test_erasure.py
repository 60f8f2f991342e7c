"""Retention and crypto-shredding (GDPR art. 5(1)(e), art. 17) on the time-skipping server.

A closed case's run completes; its retention workflow (``tests/test_retention.py``)
erases it when the retention period ends.

After erasure a case's Temporal history still exists but cannot be decoded, its packets
are gone, and the erasure is on record; every other case stays readable.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outbox_store import Erasure, OutboxStore
from encryption.codec import CaseCodec
from encryption.keys import KeyStore, KeyUnavailable
from kbflow.case import EndState, Phase
from kbflow.events import CaseStart, ErasureReason, ErasureRequest
from kbflow.process import RETENTION_AFTER_CLOSE
from kbflow.settings import workflow_id
from starter import render
from starter.cases import case_view
from tests import factories as f
from tests.conftest import retention_of, time_skipping, time_skipping_server
from tests.test_case_workflow import completed_status, send, settled, start_case, status_of
from workflows.case_workflow import CaseWorkflow
from workflows.retention_workflow import RetentionWorkflow


@pytest_asyncio.fixture
async def own_env(keys: KeyStore) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own: after a case key is destroyed, the
    session's shared server intermittently stopped skipping time for later tests."""
    async with time_skipping_server(keys) as environment:
        yield environment


@pytest.fixture
def client(own_env: WorkflowEnvironment) -> Client:
    return own_env.client


REQUEST = ErasureRequest(requested_by="RvdK-privacy-01", reason=ErasureReason.ART_17_REQUEST)


async def start_payload(handle: WorkflowHandle[Any, Any]) -> Payload:
    """The workflow input as stored in Temporal (still encoded)."""
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return started.input.payloads[0]


async def test_erase_one_case_leaves_the_other_readable(
    client: Client, task_queue: str, worker: Worker, store: OutboxStore, keys: KeyStore
) -> None:
    erased = await start_case(client, task_queue)
    kept = await start_case(client, task_queue)
    for handle in (erased, kept):
        await send(handle, f.announce(), f.residence_ind())
        await settled(handle)
    erased_ref, kept_ref = (h.id.removeprefix("kb-case-") for h in (erased, kept))
    assert store.packets(erased_ref) and store.packets(kept_ref)

    erasure = await erased.execute_update(CaseWorkflow.erase, REQUEST)
    assert isinstance(erasure, Erasure)
    assert erasure.key_destroyed and erasure.packets_removed == 4  # steps 1, 2 (x2), 3
    final = await erased.result()  # readable: written after erasure under the system key
    assert final.phase is Phase.CLOSED and final.end_state is EndState.ERASED
    assert final.erased_at is not None

    codec = CaseCodec(keys)
    with pytest.raises(KeyUnavailable, match="destroyed"):
        await codec.decode([await start_payload(erased)])
    assert store.packets(erased_ref) == []
    assert [e.case_ref for e in store.erasures()] == [erased_ref]
    assert store.processing_log(erased_ref)  # accountability outlives the data
    assert keys.is_destroyed(workflow_id(erased_ref))

    decoded = await codec.decode([await start_payload(kept)])
    assert f.CHILD.name.encode() in decoded[0].data
    assert {int(p.step) for p in store.packets(kept_ref)} == {1, 2, 3}
    assert (await status_of(kept)).phase is Phase.ANNOUNCED


@pytest.mark.parametrize("retention_days", [None, 30])
async def test_a_closed_case_is_erased_when_retention_ends(
    retention_days: int | None, own_env: WorkflowEnvironment, client: Client, task_queue: str,
    worker: Worker, store: OutboxStore, keys: KeyStore,
) -> None:
    retention = (RETENTION_AFTER_CLOSE if retention_days is None
                 else dt.timedelta(days=retention_days))
    start = CaseStart.model_validate({**f.case_start().model_dump(),
                                      "retention_days": retention_days})
    handle = await start_case(client, task_queue, start)
    ref = start.case_ref
    await send(handle, f.announce(), f.residence_ind(known=False),
               f.residence_dtv(known=False), f.decision(investigate=False))
    status = await completed_status(handle)  # closed: the run completed at once
    assert status.end_state is EndState.NO_INVESTIGATION and status.closed_at is not None
    kept_by = retention_of(client, ref)

    if retention_days is not None:  # short enough to skip to an hour before, and look
        await own_env.sleep(status.closed_at + retention - await own_env.get_current_time()
                            - dt.timedelta(hours=1))
        assert (await kept_by.query(RetentionWorkflow.status)).erased_at is None
    assert store.packets(ref)

    async with time_skipping(client):  # the server skips the rest
        erasure = await kept_by.result()
    assert erasure.at - status.closed_at >= retention
    assert store.packets(ref) == []
    assert store.erasures() == [erasure]
    assert erasure.requested_by == "kbflow-retention-timer"
    assert erasure.reason.startswith("retention-ended")
    assert f"{retention.days} days" in erasure.reason
    assert keys.is_destroyed(workflow_id(ref))
    view = await case_view(client, ref, erasure=erasure, key_destroyed=True)
    assert view.status is not None  # how it ended stays known
    assert view.status.end_state is EndState.NO_INVESTIGATION
    assert view.status.erased_at == erasure.at and view.status.closed_at == status.closed_at


async def test_a_terminated_then_erased_case_serves_no_timeline_from_the_workers_cache(
    client: Client, task_queue: str, worker: Worker, store: OutboxStore, keys: KeyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, f.announce(), f.residence_ind())
    await settled(handle)
    ref = handle.id.removeprefix("kb-case-")
    assert await handle.query(CaseWorkflow.timeline)  # served while the case lives
    await handle.terminate(reason="test")  # the worker still holds the run in its cache
    erasure = store.erase(ref, reason="art-17-request", requested_by="RvdK-privacy-01",
                          at=dt.datetime.now(dt.UTC))  # as `kbflow erase` does then
    caplog.set_level(logging.WARNING)
    # Refused by the worker that holds the run (ErasedCaseQueries): the failure itself is
    # encoded ("Encoded failure"); a worker replaying the history instead would log an
    # ERROR (it cannot decode it), and one answering from its cache would not fail.
    for query in (CaseWorkflow.timeline, CaseWorkflow.awaiting):
        with pytest.raises(WorkflowQueryFailedError):
            await handle.query(query)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (await handle.query(CaseWorkflow.status)).erased_at is None  # no personal data
    # kbflow status never asks: the erasure on record says it all.
    view = await case_view(client, ref, erasure=erasure,
                           key_destroyed=keys.is_destroyed(handle.id))
    assert view.erased and view.status is None and view.timeline is None
    assert render.view_lines(view)[:2] == [
        f"case: {ref}",
        f"erased on {erasure.at:%Y-%m-%d %H:%M} UTC (art-17-request); its data is gone"]


async def test_a_case_erased_when_retention_ended_shows_as_erased(
    own_env: WorkflowEnvironment, client: Client, task_queue: str, worker: Worker,
    store: OutboxStore, keys: KeyStore,
) -> None:
    start = CaseStart.model_validate({**f.case_start().model_dump(), "retention_days": 30})
    handle = await start_case(client, task_queue, start)
    await send(handle, f.announce(), f.residence_ind(known=False),
               f.residence_dtv(known=False), f.decision(investigate=False))
    await completed_status(handle)
    async with time_skipping(client):  # the server skips the 30 days
        await retention_of(client, start.case_ref).result()
    [erasure] = store.erasures()
    view = await case_view(client, start.case_ref, erasure=erasure,
                           key_destroyed=keys.is_destroyed(handle.id))
    assert view.erased and view.timeline is None
    assert view.status is not None and view.status.end_state is EndState.NO_INVESTIGATION
    lines = render.view_lines(view)
    assert lines[1].startswith(f"erased on {erasure.at:%Y-%m-%d %H:%M} UTC (retention-ended")
    assert "end state: no_investigation" in lines
