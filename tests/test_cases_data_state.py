"""``kbflow cases`` marks where a closed case's personal data stands (issue 7).

A closed case's run completes and a ``RetentionWorkflow`` keeps its data: the list shows
``retained`` while that workflow runs and ``erased`` once it has completed (retention
ended, or an erase during retention), and ``erased`` for a case erased while open (its end
state). An open case shows ``-``. Read from visibility only (no keys), one extra list
query per page for the page's closed cases' retention workflows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore
from kbflow.events import ErasureReason, ErasureRequest
from kbflow.settings import Settings
from starter import lists
from starter.cases import erase_running_case
from tests.test_case_workflow import start_case
from tests.test_retention import close, until_status
from worker import build_worker, connect

REQUEST = ErasureRequest(requested_by="RvdK-privacy-01", reason=ErasureReason.ART_17_REQUEST)


def test_the_data_state_rules() -> None:
    running, completed = WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED
    terminated = WorkflowExecutionStatus.TERMINATED
    assert lists.data_state(running, "announced", None, None) is None  # open
    assert lists.data_state(completed, "closed", "erased", None) is lists.DataState.ERASED
    assert lists.data_state(completed, "closed", "refused", running) is (
        lists.DataState.RETAINED)
    assert lists.data_state(completed, "closed", "refused", completed) is (
        lists.DataState.ERASED)
    # A run from before the hand-over keeps the case in retention in its own run.
    assert lists.data_state(running, "closed", "refused", None) is lists.DataState.RETAINED
    assert lists.data_state(terminated, "announced", None, None) is None  # not shown


async def test_cases_lists_retained_and_erased_cases(dev_server: WorkflowEnvironment,
                                                     tmp_path: Path) -> None:
    settings = Settings(temporal_address=dev_server.client.service_client.config.target_host,
                        namespace=dev_server.client.namespace,
                        task_queue=f"kbflow-data-{uuid.uuid4()}", data_dir=tmp_path)
    keys = KeyStore.open(settings)
    client = await connect(settings, keys)
    async with build_worker(client, settings.task_queue, OutboxStore(settings, keys=keys)):
        open_case = await start_case(client, settings.task_queue)
        retained = await start_case(client, settings.task_queue)
        erased_closed = await start_case(client, settings.task_queue)
        erased_open = await start_case(client, settings.task_queue)
        for handle in (retained, erased_closed):
            await close(handle)
            await until_status(handle, WorkflowExecutionStatus.COMPLETED)
        for handle in (erased_closed, erased_open):
            ref = handle.id.removeprefix("kb-case-")
            assert await erase_running_case(client, ref, REQUEST) is not None
        expected = {open_case.id: None, retained.id: "retained", erased_closed.id: "erased",
                    erased_open.id: "erased"}
        refs = {handle_id.removeprefix("kb-case-"): state
                for handle_id, state in expected.items()}

        listing = await lists.open_list_client(settings)  # no codec, no keys
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:  # visibility is eventually consistent: read again, bounded
            page = await lists.list_cases(listing, lists.CaseFilters(), page_size=2)
            rows = list(page.rows)
            while page.next_page:  # two a page: the retention query runs per page
                page = await lists.list_cases(listing, lists.CaseFilters(), page_size=2,
                                              page=page.next_page)
                rows += page.rows
            shown = {row.case_ref: row.data.value if row.data else None for row in rows}
            if shown == refs:
                break
            assert loop.time() < deadline, shown
            await asyncio.sleep(0.1)
        await open_case.terminate("test finished")
        await client.get_workflow_handle(
            lists.retention_workflow_id(retained.id.removeprefix("kb-case-"))
        ).terminate("test finished")

    text = lists.case_lines(lists.CasePage(rows=tuple(rows), total=len(rows), next_page=None))
    assert text[0].split() == ["case", "ref", "status", "phase", "step", "awaiting", "next",
                               "deadline", "overdue", "end", "state", "data"]
    by_ref = {line.split()[0]: line.split()[-1] for line in text[1:-1]}
    assert by_ref == {ref: state or "-" for ref, state in refs.items()}
    assert {row["data"] for row in lists.CasePage(tuple(rows), len(rows), None).as_json()[
        "cases"]} == {None, "retained", "erased"}


class _Listing:
    """A stand-in client that records the visibility queries it is asked."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def list_workflows(self, query: str, page_size: int) -> Any:
        self.queries.append(query)

        async def none() -> AsyncIterator[Any]:
            for _ in ():
                yield _
        return none()


async def test_the_retention_workflows_of_a_page_take_one_query_per_hundred() -> None:
    listing = _Listing()
    ids = [f"kb-case-KB-2026-{number:08d}-X" for number in range(150)]
    assert await lists._retention_statuses(listing, ids) == {}  # type: ignore[arg-type]
    assert len(listing.queries) == 2  # 100 + 50
    assert listing.queries[0].startswith(
        "WorkflowType = 'RetentionWorkflow' AND WorkflowId IN ('kb-retention-KB-2026-")
    listing.queries.clear()
    assert await lists._retention_statuses(listing, []) == {}  # type: ignore[arg-type]
    assert listing.queries == []  # a page of running cases asks nothing more
    await lists._retention_statuses(listing, ["kb-case-x' OR 'a'='a"])  # type: ignore[arg-type]
    assert listing.queries == []  # an id that could break the query is never put in one
