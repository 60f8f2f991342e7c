"""Record the replay histories under tests/histories/ from the example scenarios.

Run after adding an example, or into a new folder after adding a ``workflow.patched``
change, never to make a failing replay test pass::

    python -m tests.record_histories                 # into LATEST_DIR
    python -m tests.record_histories --into DIR      # a new set, e.g. after a new patch

Each example runs on the time-skipping test server; a case still open after its events
then has its years of case time skipped (reminders, escalations, the extension question,
the OTS end, the retention period, the erasure) so that the recorded history covers the
timers too. Since ``CLOSED_PATCH`` a closed case's run completes and its
``RetentionWorkflow`` keeps and erases it: its history is recorded too, under
``<set>/retention/``.

Payloads are encrypted with the test keys in tests/histories/keys/ (fictional data, a key
made for these fixtures only). The recorder never destroys a key at erasure, so that the
replay test can still decode the histories; everything else is as in production.

Sets of histories, each recorded once and never re-recorded:

- tests/histories/before-retention/: before the retention patch (``RETENTION_PATCH``);
- tests/histories/*.json: with the retention patch, before ruling dates;
- tests/histories/ots-from-ruling-date/: with ``RULING_DATE_PATCH`` (rulings carry their
  date) (``RULING_DATE_DIR``);
- tests/histories/progress-visible/: with ``PROGRESS_PATCH`` (memo and search attributes
  upserted; summaries, details and public query results in plaintext);
- tests/histories/closed-means-closed/: with ``CLOSED_PATCH`` (a closed case's run
  completes; ``retention/`` holds its retention workflow's history);
- tests/histories/visible-and-closed/: with both (``VISIBLE_AND_CLOSED_DIR``);
- tests/histories/continue-as-new/: with ``CONTINUE_PATCH`` too, the newest set
  (``LATEST_DIR``): a case's run continues as new when an extension ruling starts an OTS period, so
  ``<example>.json`` is the first run's history and ``continued/<example>.<n>.json`` the
  history of its run ``n`` (2, 3, ...); ``retention/`` as above.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore, MasterKeys
from kbflow.case import EventOutcome
from kbflow.retention import retention_workflow_id
from kbflow.scenario import Scenario, example_files
from kbflow.settings import Settings, installed_binary, workflow_id
from tests.conftest import (
    register_search_attributes,
    run_status,
    unset_search_attributes_absent,
)
from worker import build_worker
from workflows.case_workflow import CaseWorkflow

HISTORIES_DIR = Path(__file__).resolve().parent / "histories"
RULING_DATE_DIR = HISTORIES_DIR / "ots-from-ruling-date"
CLOSED_DIR = HISTORIES_DIR / "closed-means-closed"
VISIBLE_AND_CLOSED_DIR = HISTORIES_DIR / "visible-and-closed"
CONTINUE_DIR = HISTORIES_DIR / "continue-as-new"
LATEST_DIR = CONTINUE_DIR
#: Where a set keeps its retention workflows' histories (sets since ``CLOSED_PATCH``).
RETENTION_SUBDIR = "retention"
#: Where a set keeps the histories of continued runs (sets since ``CONTINUE_PATCH``):
#: ``<example>.<run number>.json``, run 2 on.
CONTINUED_SUBDIR = "continued"
KEYS_DIR = HISTORIES_DIR / "keys"
#: Upper bound of case time skipped after the events (an OTS runs at most 12 months per
#: ruling, the longest example extends once, then a year of retention).
SKIP_STEP, SKIP_LIMIT = timedelta(days=90), timedelta(days=5 * 365)
CONTINUED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW


async def run_chain(client: Client, workflow_id: str, first_run_id: str | None
                    ) -> list[WorkflowHistory]:
    """The histories of every run of ``workflow_id`` from ``first_run_id`` on, in order:
    each run that continued as new names the next one in its last event."""
    histories: list[WorkflowHistory] = []
    run_id = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes
                  .new_execution_run_id if last.event_type == CONTINUED else None)
    return histories


class KeepingKeyStore(KeyStore):
    """The fixtures' key store: erasure keeps the key, so the histories stay replayable."""

    def destroy(self, scope: str) -> bool:
        return False


@functools.cache
def _replay_copy() -> Path:
    """A copy of the committed key store, once per process, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="kbflow-replay-keys-"))
    atexit.register(shutil.rmtree, folder, True)
    shutil.copyfile(KEYS_DIR / "keys.sqlite3", folder / "keys.sqlite3")
    return folder / "keys.sqlite3"


def fixture_keys(*, replay: bool = False) -> KeyStore:
    """The key store the committed histories were encrypted with. ``replay``: a copy of
    it, so that a replay changes nothing in the committed file (a store opened for
    writing applies its schema migrations, ``store.sqlite.migrate``); the recorder adds
    keys to the committed file itself."""
    return KeepingKeyStore(_replay_copy() if replay else KEYS_DIR / "keys.sqlite3",
                           MasterKeys.parse((KEYS_DIR / "master.keys").read_text(),
                                            current_first=False))


async def record_one(env: WorkflowEnvironment, client: Client, task_queue: str,
                     scenario: Scenario, case_ref: str) -> tuple[list[str], str | None]:
    """Run ``scenario`` to its end (skipping time), the case's retention workflow too,
    and return their histories as JSON: every run of the case in order (more than one
    once it continued as new), and the retention's (None if there is none)."""
    # No run id: updates, status and history reach the case's current run.
    handle = await client.start_workflow(CaseWorkflow.run, scenario.start(case_ref),
                                         id=workflow_id(case_ref), task_queue=task_queue)
    for item in scenario.events:
        event = item.parsed()
        await handle.execute_update(item.event, event, id=event.idempotency_key,
                                    result_type=EventOutcome)
    skipped = timedelta()
    while await run_status(handle) is WorkflowExecutionStatus.RUNNING:
        if skipped >= SKIP_LIMIT:
            raise RuntimeError(f"{case_ref}: still running after {SKIP_LIMIT}")
        await env.sleep(SKIP_STEP)
        skipped += SKIP_STEP
    await handle.result()
    runs = [history.to_json() for history in
            await run_chain(client, workflow_id(case_ref), handle.result_run_id)]
    retention = client.get_workflow_handle(retention_workflow_id(case_ref))
    if await run_status(retention) is None:
        return runs, None
    # Skipped while waiting on the result, not with env.sleep: the test server stops
    # skipping time when a retention workflow (an abandoned child) ends during a sleep.
    await client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        await retention.result()
    finally:
        await client.test_service.lock_time_skipping(LockTimeSkippingRequest())
    return runs, (await retention.fetch_history()).to_json()


async def main(into: Path = LATEST_DIR) -> None:
    with unset_search_attributes_absent():
        await _record(into)


async def _record(into: Path) -> None:
    keys = fixture_keys()
    into.mkdir(exist_ok=True)
    for number, path in enumerate(example_files(), start=1):
        # A server of its own per example: each case is reported on today's date, as the
        # example's dates of birth and ruling dates expect.
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=encrypted_data_converter(keys),
            test_server_existing_path=str(installed_binary("temporal-test-server")),
        )
        task_queue = f"kbflow-record-{uuid.uuid4()}"
        try:
            await register_search_attributes(env.client)
            with tempfile.TemporaryDirectory() as data_dir:
                store = OutboxStore(Settings(data_dir=Path(data_dir)), keys=keys)
                async with build_worker(env.client, task_queue, store):
                    runs, retention = await record_one(env, env.client, task_queue,
                                                       Scenario.load(path),
                                                       f"KB-2026-REPLAY{number:02d}")
        finally:
            await env.shutdown()
        first, *continued = runs
        (into / f"{path.stem}.json").write_text(first, encoding="utf-8")
        for run, history in enumerate(continued, start=2):
            (into / CONTINUED_SUBDIR).mkdir(exist_ok=True)
            (into / CONTINUED_SUBDIR / f"{path.stem}.{run}.json").write_text(
                history, encoding="utf-8")
        if retention is not None:
            (into / RETENTION_SUBDIR).mkdir(exist_ok=True)
            (into / RETENTION_SUBDIR / f"{path.stem}.json").write_text(retention,
                                                                       encoding="utf-8")
        print(f"recorded {path.stem} ({len(runs)} runs)")

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--into", type=Path, default=LATEST_DIR,
                        help="folder to record into (default: %(default)s)")
    asyncio.run(main(parser.parse_args().into))
