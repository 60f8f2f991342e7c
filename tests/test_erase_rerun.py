"""``kbflow erase`` run again (issue 7): the outcome of the same request is a success.

``kbflow erase`` says *pending* (exit 3) when no worker carries the erasure out within
``--wait`` and tells the user to run the same command again to learn the outcome. Once a
worker has erased the case, that same command (same ``--requested-by`` and ``--reason``)
reports the erasure on record and exits 0, as a retried request should; an erase with
another reason or requester is refused (exit 1): the record keeps the first one's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import Erasure, OutboxStore
from encryption.keys import KeyStore
from kbflow.events import ErasureReason, ErasureRequest
from kbflow.settings import workflow_id
from starter.cases import ErasedAlready
from starter.cli import EXIT_PENDING
from tests.test_cli import _one_line_error, _started
from worker import build_worker, connect

REQUESTER = "RvdK-privacy-01"


async def test_the_same_erase_run_again_learns_it_was_carried_out(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    case = await _started(dev_server, tmp_path)
    erase = ("erase", case.ref, "--requested-by", REQUESTER, "--reason", "art-17-request")
    pending = await case.cli(*erase, "--wait", "2")  # no worker yet
    assert pending.returncode == EXIT_PENDING, pending.stderr
    assert pending.stderr.strip().endswith("run the same command again to learn the outcome")

    keys = KeyStore.open(case.settings)
    client = await connect(case.settings, keys)
    async with build_worker(client, case.settings.task_queue,
                            OutboxStore(case.settings, keys=keys)):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not keys.is_destroyed(workflow_id(case.ref)):  # Temporal held the request
            assert loop.time() < deadline, "the pending erasure was not carried out"
            await asyncio.sleep(0.1)

        again = await case.cli(*erase)
        assert again.returncode == 0, again.stderr
        assert again.stderr == ""
        [line] = again.stdout.strip().splitlines()
        assert line.startswith(f"case {case.ref}: erased on ")
        assert line.endswith(" UTC by this request (art-17-request); nothing left to erase")

        other = _one_line_error(await case.cli("erase", case.ref, "--requested-by", REQUESTER,
                                               "--reason", "court-order"))
        assert other.startswith(f"error: case {case.ref}: erased already on ")
        assert other.endswith("(art-17-request); nothing left to erase")


def test_an_erasure_on_record_is_the_outcome_of_the_same_request_only() -> None:
    record = Erasure(case_ref="KB-2026-7K4M2XCH-R", at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
                     reason="art-17-request", requested_by=REQUESTER, packets_removed=2,
                     key_destroyed=True)
    already = ErasedAlready("KB-2026-7K4M2XCH-R", record)
    assert str(already) == ("case KB-2026-7K4M2XCH-R: erased already on 2026-03-01 00:00 UTC "
                            "(art-17-request); nothing left to erase")
    assert already.is_outcome_of(ErasureRequest(requested_by=REQUESTER,
                                                reason=ErasureReason.ART_17_REQUEST))
    assert not already.is_outcome_of(ErasureRequest(requested_by="RvdK-privacy-02",
                                                    reason=ErasureReason.ART_17_REQUEST))
    assert not already.is_outcome_of(ErasureRequest(requested_by=REQUESTER,
                                                    reason=ErasureReason.COURT_ORDER))
    unreadable = ErasedAlready("KB-2026-7K4M2XCH-R", None)
    assert str(unreadable).endswith(": erased already; nothing left to erase")
    assert not unreadable.is_outcome_of(ErasureRequest(
        requested_by=REQUESTER, reason=ErasureReason.ART_17_REQUEST))
