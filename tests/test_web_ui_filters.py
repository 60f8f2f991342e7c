"""The Web UI's list filtered by each of kbflow's search attributes finds the right demo
cases (issue 7, "Done when", first point), in headless Chromium, without any codec token.

The module's dev server with its Web UI and its browser are ``tests.test_web_ui``'s
fixtures, imported, so that this module gets instances of its own (module scope: one dev
server with its UI for the module; no cluster-level codec endpoint; a fixture taken as a
parameter shadows its import, hence the F811 exemptions). On it run:

- the demo's cases: ``starter.demo.run_demo``, the code path of ``kbflow demo`` against a
  running server, with its own in-process worker (kbflow's real worker, encrypting with
  the demo's keys), so the seven ``examples/*.json`` scenarios run exactly as in the demo.
  They end closed or in an OTS, and none awaits anyone;
- so that the awaited parties and the deadlines have something to find, two cases in
  flight from the same examples on kbflow's worker with the demo's keys: example 01 just
  reported (awaiting the RvdK) and example 03 after step 2 (awaiting IND and DT&V).

What each query should list is computed without visibility: every case's events folded
through the pure state machine (``kbflow.case.CaseState``, then
``kbflow.progress.progress_of``), checked against the demo's own outcome per case (its
phase, end state and steps). No case can honestly be overdue (the dev server's time
cannot be skipped and due dates lie days ahead), so the overdue filter is
``KbflowOverdue = false``: every case, and no other workflow (the closed cases'
retention workflows carry no kbflow search attribute).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore
from kbflow.case import CaseState, EndState, Phase
from kbflow.events import CaseStart
from kbflow.items import Measure
from kbflow.process import Party
from kbflow.progress import CaseProgress, progress_of
from kbflow.scenario import EXAMPLES_DIR, Scenario, ScenarioEvent, example_files
from kbflow.settings import Settings, workflow_id
from starter import inputs
from starter.cases import send_event, start_case
from starter.demo import DemoReport, run_demo
from tests.browser import UiPage
from tests.test_web_ui import (  # noqa: F401
    Ui,
    assert_no_personal_value_nor_banner,
    browser,
    chromium_path,
    dev_server_with_ui,
    personal_values,
    ui,
    ui_port,
    viewer,
)
from worker import build_worker, connect

#: The cases in flight: (example, how many of its events are sent).
IN_FLIGHT = [("01_custody_termination.json", 0), ("03_ots_advice_requested.json", 1)]
#: Upper bound for a listing to show what is expected (the UI loads, visibility catches
#: up); a few seconds on a quiet machine.
LISTING_TIMEOUT = 45.0
#: Polls of visibility (0.5 s apart) for a listing through the client.
LISTING_POLLS = 90


@dataclass(frozen=True)
class Case:
    """One case on the server: its workflow id and its progress as the state machine
    computes it from the case's events."""

    workflow_id: str
    progress: CaseProgress
    demo: bool  # run by the demo (else one of the cases in flight)
    #: The progress each earlier run of the case showed when it continued as new (its
    #: search attributes stay as they were then, and the UI lists that run too).
    earlier_runs: tuple[CaseProgress, ...] = ()


@dataclass(frozen=True)
class Filter:
    """A List Filter query and which cases it should find, by their progress."""

    attribute: str
    query: str
    finds: Callable[[CaseProgress], bool]


@dataclass
class Cases:
    """The module's cases and every personal value they were given."""

    all: list[Case]
    personal: set[str]
    demo: DemoReport

    def found_by(self, query: Filter) -> set[str]:
        return {case.workflow_id for case in self.all if query.finds(case.progress)}

    def runs_found_by(self, query: Filter) -> list[tuple[str, str]]:
        """(run status, workflow id) of every run the query should list: a case's current
        run and each earlier run (``CONTINUED AS NEW``) whose progress it finds."""
        return [*((status(case), case.workflow_id) for case in self.all
                  if query.finds(case.progress)),
                *((CONTINUED, case.workflow_id) for case in self.all
                  for earlier in case.earlier_runs if query.finds(earlier))]


def _new_id() -> str:
    return uuid.uuid4().hex


def folded(start: CaseStart, events: list[ScenarioEvent], now: dt.datetime) -> CaseProgress:
    """The progress of a case reported at ``now`` that took ``events`` at ``now``, as
    the pure state machine computes it (no Temporal, no visibility)."""
    return folded_runs(start, events, now)[0]


def folded_runs(start: CaseStart, events: list[ScenarioEvent], now: dt.datetime
                ) -> tuple[CaseProgress, tuple[CaseProgress, ...]]:
    """``folded``, and the progress of each earlier run: a case continues as new when a
    ruling moves its OTS end date past the first period's (``CaseWorkflow._continue_due``;
    these cases are far from Temporal's suggestion), showing then what it shows after
    that event."""
    state, _ = CaseState.start(start, now, _new_id)
    period: dt.date | None = None
    earlier: list[CaseProgress] = []
    for item in events:
        state.apply(item.event, inputs.event_body(item.event, item.body), now, _new_id)
        if period is None:
            period = state.ots_ends_on
        elif state.ots_ends_on != period and state.phase is not Phase.CLOSED:
            earlier.append(progress_of(state, now))
            period = state.ots_ends_on
    return progress_of(state, now), tuple(earlier)


def scenario_personal_values(scenario: Scenario) -> set[str]:
    return (personal_values(scenario.case)
            | personal_values([item.body for item in scenario.events]))


@pytest_asyncio.fixture(scope="module")
async def cases(dev_server_with_ui: WorkflowEnvironment, ui_port: int,  # noqa: F811
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cases]:
    """The demo's cases and the cases in flight, with kbflow's worker running for the
    module (the demo's own worker stops when the demo ends)."""
    environment = dev_server_with_ui
    settings = Settings(
        temporal_address=environment.client.service_client.config.target_host,
        namespace=environment.client.namespace, task_queue=f"kbflow-demo-{uuid.uuid4()}",
        data_dir=tmp_path_factory.mktemp("demo-data"))
    began = dt.datetime.now(dt.UTC)
    report = await run_demo(settings, ui_port, note=lambda line: None)
    assert not report.started_server and report.started_worker
    assert report.ok, [result.summary() for result in report.cases]
    found: list[Case] = []
    personal: set[str] = set()
    for result in report.cases:
        scenario = inputs.scenario(result.file)
        assert result.case_ref is not None
        progress, earlier = folded_runs(scenario.start(result.case_ref), list(scenario.events),
                                        began)
        # The state machine and the demo agree on how the case ran.
        assert (progress.phase.value, progress.end_state) == (
            result.phase, None if result.end_state is None else EndState(result.end_state))
        found.append(Case(workflow_id(result.case_ref), progress, demo=True,
                          earlier_runs=earlier))
        personal |= scenario_personal_values(scenario)
    keys = KeyStore.open(settings)  # the demo's keys
    client = await connect(settings, keys)
    async with build_worker(client, settings.task_queue, OutboxStore(settings, keys=keys)):
        for name, sent in IN_FLIGHT:
            scenario = inputs.scenario(EXAMPLES_DIR / name)
            start = inputs.case_start(scenario.case)
            now = dt.datetime.now(dt.UTC)
            await start_case(client, settings, start)
            for item in scenario.events[:sent]:
                await send_event(client, start.case_ref, item.event,
                                 inputs.event_body(item.event, item.body))
            found.append(Case(workflow_id(start.case_ref),
                              folded(start, list(scenario.events[:sent]), now), demo=False))
            personal |= scenario_personal_values(scenario)
        yield Cases(found, personal, report)


#: One query per search attribute of ``kbflow.search_attributes.ALL``, each with the
#: cases it should find.
NOW = dt.datetime.now(dt.UTC)
FILTERS = [
    Filter("KbflowPhase", "KbflowPhase = 'ots'", lambda p: p.phase is Phase.OTS),
    Filter("KbflowLastStep", "KbflowLastStep = 6",
           lambda p: p.last_step is not None and int(p.last_step) == 6),
    Filter("KbflowAwaiting", "KbflowAwaiting = 'IND'",
           lambda p: any(wait.party is Party.IND for wait in p.awaiting)),
    Filter("KbflowNextDeadline",
           f"KbflowNextDeadline > '{NOW.isoformat(timespec='seconds').replace('+00:00', 'Z')}'",
           lambda p: p.next_deadline is not None and p.next_deadline > NOW),
    Filter("KbflowOverdue", "KbflowOverdue = false", lambda p: not p.overdue),
    Filter("KbflowMeasure", "KbflowMeasure = 'ots'", lambda p: p.measure is Measure.OTS),
    Filter("KbflowEndState", "KbflowEndState = 'custody_terminated'",
           lambda p: p.end_state is EndState.CUSTODY_TERMINATED),
]


def test_every_search_attribute_has_its_filter() -> None:
    from kbflow import search_attributes as sa

    assert [f.attribute for f in FILTERS] == [key.name for key in sa.ALL]


@pytest.mark.parametrize("query", FILTERS, ids=[f.attribute for f in FILTERS])
async def test_the_list_filtered_by_a_search_attribute_finds_the_right_cases(
        viewer: BrowserContext, ui: Ui, cases: Cases, query: Filter) -> None:  # noqa: F811
    """The list shows exactly the cases the query should find, each with its run status
    (a closed case's run has completed and it keeps its last search attributes), the
    counts of both, and no other workflow; no personal value, no codec banner."""
    expected = cases.runs_found_by(query)
    others = {case.workflow_id for case in cases.all} - {wid for _, wid in expected}
    assert expected  # each query finds some case
    rows = [f"{shown}\n\t{wid}\t" for shown, wid in expected]
    counts = Counter(shown for shown, _ in expected)
    async with UiPage.opened(viewer) as page:
        text = await page.wait_for_listing(
            ui.workflows(query.query),
            shown=[*rows, *(f"{n} {shown}" for shown, n in counts.items())],
            hidden=sorted(others), timeout=LISTING_TIMEOUT)
        # Only those cases: no other workflow on the server either.
        assert f"of {len(expected)}" in text, text[:2000]
        assert_no_personal_value_nor_banner(text + await page.html(), cases.personal)


#: The UI's status of a run that continued as new.
CONTINUED = "CONTINUED AS NEW"


def status(case: Case) -> str:
    """The run status the UI's list shows for ``case``: a closed case has completed."""
    return "COMPLETED" if case.progress.phase is Phase.CLOSED else "RUNNING"


@pytest.mark.parametrize("query", [f for f in FILTERS if f.attribute == "KbflowPhase"],
                         ids=["KbflowPhase"])
async def test_excluding_continued_runs_lists_each_case_once(
        ui: Ui, cases: Cases, query: Filter) -> None:  # noqa: F811
    """README: add ``AND ExecutionStatus != 'ContinuedAsNew'`` to list each case once
    (example 04's earlier run matches ``KbflowPhase = 'ots'`` too)."""
    assert any(wid for shown, wid in cases.runs_found_by(query) if shown == CONTINUED)
    listed: list[str] = []
    for _ in range(LISTING_POLLS):  # visibility is eventually consistent: bounded
        listed = [execution.id async for execution in ui.server.client.list_workflows(
            f"{query.query} AND ExecutionStatus != 'ContinuedAsNew'")]
        if sorted(listed) == sorted(cases.found_by(query)):
            break
        await asyncio.sleep(0.5)
    assert sorted(listed) == sorted(cases.found_by(query))  # each once


def test_the_filters_tell_the_cases_apart(cases: Cases) -> None:
    """Each query's expectation is a real choice: together the queries single out demo
    cases, closed ones included (they keep their last search attributes), and every one
    but the overdue filter leaves some case out."""
    demo = {case.workflow_id for case in cases.all if case.demo}
    closed = {case.workflow_id for case in cases.all if case.progress.phase is Phase.CLOSED}
    for query in FILTERS:
        if query.attribute != "KbflowOverdue":
            assert cases.found_by(query) < {case.workflow_id for case in cases.all}
    found = {wid for query in FILTERS for wid in cases.found_by(query)
             if query.attribute != "KbflowOverdue"}
    assert found & closed and found & demo
    assert len(cases.demo.cases) == len(example_files())
    # Example 04's extension started a new OTS period: its first run continued as new,
    # and the UI lists that run under the queries it still matches.
    assert [case.workflow_id for case in cases.all if case.earlier_runs] == [
        workflow_id(result.case_ref or "") for result in cases.demo.cases
        if result.file.name.startswith("04_")]
    # The demo's cases await nobody: the awaiting and deadline filters find only cases
    # in flight (README, Tracing cases).
    for query in FILTERS:
        if query.attribute in ("KbflowAwaiting", "KbflowNextDeadline"):
            assert cases.found_by(query) and not cases.found_by(query) & demo
    closed_cases = [case.progress for case in cases.all if case.workflow_id in closed]
    assert closed_cases and all(
        p.last_step is not None and p.end_state is not None and not p.awaiting
        for p in closed_cases)


def test_the_readme_shows_these_queries() -> None:
    """The README's List Filter table holds each query run here (the next deadline's
    with another moment), and the overdue one as ``KbflowOverdue = true``."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    for query in FILTERS:
        if query.attribute == "KbflowNextDeadline":
            assert re.search(r"`KbflowNextDeadline > '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'`",
                             readme)
            assert re.fullmatch(r"KbflowNextDeadline > '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'",
                                query.query)
        elif query.attribute == "KbflowOverdue":
            assert "`KbflowOverdue = true`" in readme
        else:
            assert f"`{query.query}`" in readme, query.query
