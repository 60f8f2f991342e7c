"""``kbflow cases`` and ``kbflow worklist`` on a real Temporal dev server (issue 7, point 4).

The cases are stubs: a workflow registered as ``CaseWorkflow`` (``StubCase``), started
with its search attributes and its ``CaseProgress`` memo set at start, as the real case
workflow keeps them. ``POPULATION`` cases sit Running on a task queue no worker polls; a
few run on a worker and complete, a few are terminated. The functions of
``starter.lists`` are called in this process; the CLI runs as a subprocess of the
installed script with an empty data dir (no keys), as a tracer would run it.

The dev server registers the search attributes itself here (``lists_server``); once the
shared ``dev_server`` fixture does, ``lists_server`` can become that fixture.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from kbflow import search_attributes as sa
from kbflow.case import OPEN, EndState, Phase
from kbflow.case_refs import new_case_ref
from kbflow.events import Event
from kbflow.process import Party, Step
from kbflow.progress import MEMO_KEY, AwaitedProgress, CaseProgress, typed_search_attributes
from kbflow.settings import installed_binary, workflow_id
from starter import lists
from starter.inputs import InputError
from workflows.case_workflow import CaseWorkflow

KBFLOW = Path(sys.executable).parent / "kbflow"
CLI_TIMEOUT = 120
#: Cases that sit Running (no worker polls their task queue).
POPULATION = 200
#: The time the population is built around: due dates lie before and after it.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
#: Personal values of the fictional child each stub case is started with (its workflow
#: input, encrypted in real cases): none may appear in any list output.
CANARIES = ("Fenna Canarius-Lijst", "1931-02-07", "9876501234", "Kanariestraat 7")
IDLE_QUEUE = "kbflow-lists-nobody-polls"
WORKER_QUEUE = "kbflow-lists-stub-worker"


@workflow.defn(name="CaseWorkflow")
class StubCase:
    """Stands in for ``CaseWorkflow``: it only takes its (fictional) start and ends."""

    @workflow.run
    async def run(self, start: dict[str, str]) -> None:
        del start


@dataclass(frozen=True)
class Spec:
    """One stub case: its progress (memo and search attributes) and its run's fate."""

    progress: CaseProgress
    fate: str = "running"  # or "completed", "terminated"
    memo_readable: bool = True

    @property
    def ref(self) -> str:
        return self.progress.case_ref


def _awaited(party: Party, event: Event, step: Step | None, due: dt.datetime | None,
             overdue: bool) -> AwaitedProgress:
    return AwaitedProgress(party=party, event=event, step=step, due=due, overdue=overdue)


def _progress(number: int) -> CaseProgress:
    """A varied, deterministic open case: phase, last step, what it awaits from whom by
    when (some overdue by the memo, some only by their due date, some without one)."""
    hours = dt.timedelta(hours=number - POPULATION // 2)
    due = None if number % 8 == 6 else NOW + hours
    kind = number % 4
    awaiting: list[AwaitedProgress] = []
    if kind in (0, 2):  # IND (and DTV) must reply
        # the memo marks most past due dates overdue; every 10th is past due but not
        # marked yet (its deadline timer has not fired): overdue all the same
        marked = due is not None and due < NOW and number % 10 != 4
        awaiting.append(_awaited(Party.IND, Event.RESIDENCE_INFORMATION,
                                 Step.RESIDENCE_INFORMATION, due, marked))
    if kind == 0:  # DT&V's due date three days before IND's: the case's next deadline
        dtv_due = NOW + dt.timedelta(days=30) if due is None else due - dt.timedelta(days=3)
        awaiting.append(_awaited(Party.DTV, Event.RESIDENCE_INFORMATION,
                                 Step.RESIDENCE_INFORMATION, dtv_due,
                                 dtv_due < NOW and number % 10 != 4))
    if kind == 1:
        awaiting.append(_awaited(Party.RVDK, Event.INVESTIGATION_DECISION, None, None, False))
    dues = [entry.due for entry in awaiting if entry.due is not None]
    return CaseProgress(
        case_ref=new_case_ref(), phase=OPEN[number % len(OPEN)],
        last_step=Step(1 + number % 12), measure=None, end_state=None,
        awaiting=tuple(awaiting), next_deadline=min(dues) if dues else None,
        overdue=any(entry.overdue for entry in awaiting), closed_at=None)


def _closed(end_state: EndState) -> CaseProgress:
    return CaseProgress(case_ref=new_case_ref(), phase=Phase.CLOSED,
                        last_step=Step.COURT_RULING, measure=None, end_state=end_state,
                        awaiting=(), next_deadline=None, overdue=False, closed_at=NOW)


def _population() -> list[Spec]:
    specs = [Spec(_progress(number)) for number in range(POPULATION)]
    specs += [Spec(_closed(EndState.CUSTODY_TERMINATED), fate="completed"),
              Spec(_closed(EndState.NO_MEASURE), fate="completed")]
    # terminated while it awaited IND: on no worklist, though its attributes say IND
    specs.append(Spec(_progress(0), fate="terminated"))
    # awaits IND, but its memo is not a CaseProgress (e.g. encrypted): listed, event unknown
    specs.append(Spec(specs[2].progress.model_copy(update={"case_ref": new_case_ref()}),
                      memo_readable=False))
    return specs


async def start_stub(client: Client, spec: Spec, task_queue: str = IDLE_QUEUE) -> None:
    """Start ``spec``'s case with its search attributes and memo (and a fictional start
    carrying the canaries as its input)."""
    memo: Any = spec.progress if spec.memo_readable else {"not": "a CaseProgress"}
    await client.start_workflow(
        "CaseWorkflow", dict(zip(("name", "born", "v_number", "address"), CANARIES,
                                 strict=True)),
        id=workflow_id(spec.ref), task_queue=task_queue,
        search_attributes=typed_search_attributes(spec.progress), memo={MEMO_KEY: memo})


async def visible(client: Client, query: str, count: int, within: float = 30.0) -> None:
    """Wait until visibility counts ``count`` executions for ``query`` (bounded)."""
    deadline = time.monotonic() + within
    while (await client.count_workflows(query)).count != count:
        assert time.monotonic() < deadline, f"visibility never reached {count}: {query}"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module")
async def lists_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server with kbflow's search attributes registered (one per module)."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(installed_binary("temporal")),
        search_attributes=list(sa.ALL), data_converter=pydantic_data_converter)
    yield environment
    await environment.shutdown()


@pytest_asyncio.fixture(scope="module")
async def population(lists_server: WorkflowEnvironment) -> list[Spec]:
    """Every stub case started and visible."""
    client = lists_server.client
    specs = _population()
    running = [spec for spec in specs if spec.fate != "completed"]
    for batch in range(0, len(running), 50):
        await asyncio.gather(*(start_stub(client, spec)
                               for spec in running[batch:batch + 50]))
    async with Worker(client, task_queue=WORKER_QUEUE, workflows=[StubCase],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        for spec in specs:
            if spec.fate == "completed":
                await start_stub(client, spec, WORKER_QUEUE)
                await client.get_workflow_handle(workflow_id(spec.ref)).result()
    for spec in specs:
        if spec.fate == "terminated":
            await client.get_workflow_handle(workflow_id(spec.ref)).terminate("test")
    await visible(client, "ExecutionStatus = 'Running'",
                  sum(1 for spec in specs if spec.fate == "running"))
    await visible(client, "WorkflowType = 'CaseWorkflow'", len(specs))
    return specs


async def _all_refs(client: Client, filters: lists.CaseFilters) -> list[str]:
    page = await lists.list_cases(client, filters, page_size=lists.MAX_PAGE_SIZE, now=NOW)
    assert page.next_page is None
    assert page.total == len(page.rows)
    return [row.case_ref for row in page.rows]


def _overdue(spec: Spec, at: dt.datetime = NOW) -> bool:
    """Whether ``spec``'s case is overdue at ``at``."""
    return spec.fate == "running" and any(
        entry.overdue or (entry.due is not None and entry.due < at)
        for entry in spec.progress.awaiting)


# ---- pure -----------------------------------------------------------------------------

def test_the_listed_workflow_type_is_the_case_workflows() -> None:
    assert workflow._Definition.must_from_class(CaseWorkflow).name == lists.CASE_WORKFLOW_TYPE


def test_queries_are_built_from_enum_values() -> None:
    filters = lists.case_filters(phase=" OTS ", awaiting="ind", step="7", status="Running",
                                 overdue=True)
    query = lists.visibility_query(filters, dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC))
    assert query == (
        "WorkflowType = 'CaseWorkflow' AND KbflowPhase = 'ots' AND KbflowAwaiting = 'IND' "
        "AND KbflowLastStep = 7 AND ExecutionStatus = 'Running' "
        "AND ExecutionStatus = 'Running' "
        "AND (KbflowOverdue = true OR KbflowNextDeadline < '2026-05-01T12:00:00Z')")
    assert lists.worklist_query(Party.DTV) == (
        "WorkflowType = 'CaseWorkflow' AND ExecutionStatus = 'Running' "
        "AND KbflowAwaiting = 'DTV'")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("awaiting", "IND' OR WorkflowType != '", "--awaiting: must be one of RVDK, IND, DTV, "
                                              "VT, COA, AVIM, GI"),
    ("phase", "open", "--phase: must be one of reported, announced, investigating, "
                      "awaiting_ruling, ots, closed"),
    ("step", "13", "--step: must be a step number, 1 to 12"),
    ("step", "2 OR 1=1", "--step: must be a step number, 1 to 12"),
    ("status", "closed", "--status: must be one of running, completed, failed, canceled, "
                         "terminated, continued_as_new, timed_out"),
])
def test_a_value_outside_its_enum_is_refused(option: str, value: str, message: str) -> None:
    with pytest.raises(InputError) as refused:
        options: dict[str, Any] = {option: value}
        lists.case_filters(**options)
    assert str(refused.value) == message


def test_page_tokens_round_trip_and_garbage_is_refused() -> None:
    token = b'{"StartTime":"2026-12-01T12:16:20Z","RunID":"x"}\x00\xff'
    assert lists.decode_page_token(lists.encode_page_token(token)) == token
    printed = lists.encode_page_token(token)
    for garbage in ("", "not a token!", "'; DROP", "garbage", printed[:-1], printed[1:]):
        with pytest.raises(InputError, match="--page: not a page token"):
            lists.decode_page_token(garbage)


# ---- on the dev server ----------------------------------------------------------------

async def test_each_filter_finds_exactly_its_cases(lists_server: WorkflowEnvironment,
                                                   population: list[Spec]) -> None:
    client = lists_server.client
    every = await _all_refs(client, lists.CaseFilters())
    assert sorted(every) == sorted(spec.ref for spec in population)

    def expect(keep: Any) -> list[str]:
        return sorted(spec.ref for spec in population if keep(spec))

    for phase in Phase:
        assert sorted(await _all_refs(client, lists.CaseFilters(phase=phase))) == expect(
            lambda spec, phase=phase: spec.progress.phase is phase), phase
    for party in (Party.IND, Party.DTV, Party.RVDK, Party.GI):
        found = sorted(await _all_refs(client, lists.CaseFilters(awaiting=party)))
        assert found == expect(lambda spec, party=party: any(
            entry.party is party for entry in spec.progress.awaiting)), party
    for step in (Step.REPORT, Step.COURT_RULING, Step.WARM_HANDOVER):
        found = sorted(await _all_refs(client, lists.CaseFilters(last_step=step)))
        assert found == expect(lambda spec, step=step: spec.progress.last_step is step)
    for status in (lists.RunStatus.RUNNING, lists.RunStatus.COMPLETED,
                   lists.RunStatus.TERMINATED, lists.RunStatus.FAILED):
        found = sorted(await _all_refs(client, lists.CaseFilters(status=status)))
        assert found == expect(lambda spec, status=status: spec.fate == status.value)
    overdue = sorted(await _all_refs(client, lists.CaseFilters(overdue=True)))
    assert overdue == expect(_overdue)
    # past due but not marked yet: overdue by its date alone (the control of that clause)
    assert any(_overdue(spec) and not spec.progress.overdue for spec in population)
    combined = lists.CaseFilters(awaiting=Party.IND, overdue=True, phase=Phase.ANNOUNCED)
    assert sorted(await _all_refs(client, combined)) == expect(
        lambda spec: _overdue(spec) and spec.progress.phase is Phase.ANNOUNCED
        and any(entry.party is Party.IND for entry in spec.progress.awaiting))


async def test_rows_carry_thetyped_search_attributes(lists_server: WorkflowEnvironment,
                                                population: list[Spec]) -> None:
    page = await lists.list_cases(lists_server.client, lists.CaseFilters(),
                                  page_size=lists.MAX_PAGE_SIZE, now=NOW)
    rows = {row.case_ref: row for row in page.rows}
    for spec in population:
        row, progress = rows[spec.ref], spec.progress
        assert row.status == spec.fate
        assert row.phase == progress.phase.value
        assert row.last_step == progress.last_step
        assert set(row.awaiting) == {entry.party.value for entry in progress.awaiting}
        assert row.next_deadline == progress.next_deadline
        assert row.overdue is _overdue(spec)
        assert row.end_state == (progress.end_state.value if progress.end_state else None)


async def test_pages_continue_each_other_and_nothing_comes_twice(
        lists_server: WorkflowEnvironment, population: list[Spec]) -> None:
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await lists.list_cases(lists_server.client, lists.CaseFilters(),
                                      page_size=30, page=token, now=NOW)
        pages += 1
        assert page.total == len(population)
        assert len(page.rows) == 30 or page.next_page is None
        seen += [row.case_ref for row in page.rows]
        token = page.next_page
        if token is None:
            break
    assert pages == -(-len(population) // 30)
    assert len(seen) == len(set(seen)) == len(population)
    # visibility's order on SQL stores: open runs first, newest start first; then the
    # closed runs, the most recently closed first
    rows = (await lists.list_cases(lists_server.client, lists.CaseFilters(),
                                   page_size=lists.MAX_PAGE_SIZE)).rows
    running = [row.status == "running" for row in rows]
    assert running == sorted(running, reverse=True)
    started = [started_at for row in rows
               if row.status == "running" and (started_at := row.started_at) is not None]
    assert len(started) == running.count(True)
    assert started == sorted(started, reverse=True)


async def test_the_worklist_puts_overdue_first_then_by_due_date(
        lists_server: WorkflowEnvironment, population: list[Spec]) -> None:
    found = await lists.worklist(lists_server.client, Party.IND, now=NOW)
    awaiting_ind = [spec for spec in population if spec.fate == "running"
                    and any(entry.party is Party.IND for entry in spec.progress.awaiting)]
    assert found.cases == len(awaiting_ind)
    items = list(found.items)
    assert len(items) == len(awaiting_ind)
    overdue = [item for item in items if item.overdue]
    rest = [item for item in items if not item.overdue]
    assert items == overdue + rest
    assert overdue and rest
    assert all(item.due is not None and item.due < NOW for item in overdue)
    # past due is overdue, whether or not the memo marks it yet
    assert all(item.overdue for item in items if item.due is not None and item.due < NOW)
    for part in (overdue, rest):
        dated = [due for item in part if (due := item.due) is not None]
        assert dated == sorted(dated)
    undated = [item for item in rest if item.due is None]
    assert undated and rest[-len(undated):] == undated  # no due date last
    assert {item.case_ref for item in items} == {spec.ref for spec in awaiting_ind}
    unreadable = [item for item in items if item.event is None]
    assert [item.case_ref for item in unreadable] == [
        spec.ref for spec in population if not spec.memo_readable]
    assert all(item.event is Event.RESIDENCE_INFORMATION for item in items
               if item.event is not None)

    dtv = await lists.worklist(lists_server.client, Party.DTV, now=NOW)
    assert len(dtv.items) == sum(1 for spec in population if spec.fate == "running" and any(
        entry.party is Party.DTV for entry in spec.progress.awaiting))
    assert (await lists.worklist(lists_server.client, Party.GI, now=NOW)).items == ()


# ---- the command line -----------------------------------------------------------------

def _cli_env(tmp_path: Path, address: str) -> dict[str, str]:
    data_dir = tmp_path / "no-keys-here"
    data_dir.mkdir(exist_ok=True)
    return {**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "default",
            "KBFLOW_DATA_DIR": str(data_dir)}


async def _kbflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [str(KBFLOW), *args], env=env, capture_output=True, text=True,
        timeout=CLI_TIMEOUT, check=False)


def _address(environment: WorkflowEnvironment) -> str:
    return environment.client.service_client.config.target_host


async def test_cases_json_pages_through_the_cli_without_keys(
        lists_server: WorkflowEnvironment, population: list[Spec], tmp_path: Path) -> None:
    env = _cli_env(tmp_path, _address(lists_server))
    awaiting_ind = {spec.ref for spec in population
                    if any(entry.party is Party.IND for entry in spec.progress.awaiting)}
    first = await _kbflow(env, "cases", "--awaiting", "ind", "--page-size", "60", "--json")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert set(answer) == {"total", "cases", "next_page"}
    assert answer["total"] == len(awaiting_ind)
    assert len(answer["cases"]) == 60 and answer["next_page"]
    assert set(answer["cases"][0]) == {"case_ref", "status", "phase", "last_step", "awaiting",
                                       "next_deadline", "overdue", "end_state", "data",
                                       "started_at"}
    second = await _kbflow(env, "cases", "--awaiting", "IND", "--page-size", "60", "--json",
                           "--page", answer["next_page"])
    assert second.returncode == 0, second.stderr
    following = json.loads(second.stdout)
    refs = [row["case_ref"] for row in answer["cases"] + following["cases"]]
    assert following["next_page"] is None
    assert len(refs) == len(set(refs)) and set(refs) == awaiting_ind

    default = json.loads((await _kbflow(env, "cases", "--json")).stdout)
    assert len(default["cases"]) == lists.DEFAULT_PAGE_SIZE == 50

    text = await _kbflow(env, "cases", "--overdue", "--page-size", "5")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["case", "ref", "status", "phase", "step", "awaiting", "next",
                                "deadline", "overdue", "end", "state", "data"]
    assert len(lines) == 1 + 5 + 2
    # the CLI's now is a little after NOW (the case due at NOW is overdue by then); the
    # next due date is an hour after NOW
    later = NOW + dt.timedelta(minutes=30)
    overdue = sum(1 for spec in population if _overdue(spec, later))
    assert lines[-2] == f"5 shown of {overdue} matching"
    assert lines[-1].startswith("next page: --page ")
    assert all(" yes " in line for line in lines[1:6])


async def test_the_first_items_of_a_worklist_are_those_of_the_whole(
        lists_server: WorkflowEnvironment, population: list[Spec]) -> None:
    client = lists_server.client
    for party in (Party.IND, Party.DTV, Party.RVDK):
        whole = await lists.worklist(client, party, now=NOW)
        assert whole.complete
        overdue = sum(1 for item in whole.items if item.overdue)
        for limit in sorted({1, 7, overdue, overdue + 1, overdue + 13, 60,
                             len(whole.items), len(whole.items) + 5} - {0}):
            first = await lists.worklist(client, party, limit=limit, now=NOW)
            assert first.items == whole.items[:limit], (party, limit)
            assert first.complete is (limit >= len(whole.items)), (party, limit)
            assert first.cases == whole.cases


async def test_worklist_through_the_cli(lists_server: WorkflowEnvironment,
                                        population: list[Spec], tmp_path: Path) -> None:
    env = _cli_env(tmp_path, _address(lists_server))
    expected = await lists.worklist(lists_server.client, Party.IND)
    done = await _kbflow(env, "worklist", "ind", "--all", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["complete"] is True and answer["cases"] == expected.cases
    assert [(item["case_ref"], item["overdue"]) for item in answer["items"]] == [
        (item.case_ref, item.overdue) for item in expected.items]
    text = await _kbflow(env, "worklist", "IND", "--limit", "3")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("worklist of IND as of ")
    assert lines[0].endswith(f": the first 3 to send; {expected.cases} case(s) await IND")
    assert len(lines) == 2 + 3 + 1
    assert [line.split()[0] for line in lines[2:5]] == ["OVERDUE"] * 3
    assert [line.split()[3] for line in lines[2:5]] == [
        item.case_ref for item in expected.items[:3]]
    assert lines[-1] == "more: a larger --limit, or --all"
    default = json.loads((await _kbflow(env, "worklist", "IND", "--json")).stdout)
    assert set(default) == {"party", "as_of", "cases", "complete", "items"}
    assert len(default["items"]) == lists.DEFAULT_WORKLIST_LIMIT == 50
    assert default["complete"] is False


@pytest.mark.parametrize("args", [
    ("cases", "--awaiting", "Fenna Canarius-Lijst"),
    ("cases", "--phase", "Fenna Canarius-Lijst"),
    ("cases", "--step", "9876501234"),
    ("cases", "--status", "Fenna Canarius-Lijst"),
    ("cases", "--page", "Fenna Canarius-Lijst"),
    ("cases", "--page", "garbage"),
    ("cases", "--page-size", "0"),
    ("cases", "--page-size", "abc"),
    ("worklist", "Fenna Canarius-Lijst"),
    ("worklist", "IND", "--limit", "0"),
    ("worklist", "IND", "--limit", "abc"),
])
async def test_bad_values_are_refused_in_one_line_before_temporal(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    # Nothing listens on port 1: a command that contacted Temporal would say so instead.
    done = await _kbflow(_cli_env(tmp_path, "127.0.0.1:1"), *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    line, = done.stderr.strip().splitlines()
    option = args[1] if args[0] == "cases" else "PARTY" if len(args) == 2 else args[2]
    assert line.startswith(f"error: {option}: "), line
    assert "Fenna" not in line and "9876501234" not in line
    if option in ("--awaiting", "PARTY"):
        assert line.endswith("must be one of RVDK, IND, DTV, VT, COA, AVIM, GI")


async def test_temporal_unreachable_is_one_line(tmp_path: Path) -> None:
    done = await _kbflow(_cli_env(tmp_path, "127.0.0.1:1"), "cases")
    line, = done.stderr.strip().splitlines()
    assert done.returncode == 1 and line.startswith("error: cannot reach Temporal at 127.0.0.1:1")


async def test_no_personal_data_in_any_list_output(
        lists_server: WorkflowEnvironment, population: list[Spec], tmp_path: Path) -> None:
    client = lists_server.client
    # the control: the stubs do carry the canaries, in their (here unencrypted) input
    history = await client.get_workflow_handle(workflow_id(population[0].ref)).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert all(canary.encode() in started.input.payloads[0].data for canary in CANARIES)
    env = _cli_env(tmp_path, _address(lists_server))
    outputs = [await _kbflow(env, *args) for args in (
        ("cases", "--page-size", "1000"), ("cases", "--page-size", "1000", "--json"),
        ("worklist", "IND", "--all"), ("worklist", "IND", "--json"),
        ("worklist", "RVDK", "--all", "--json"))]
    assert "? (progress unreadable)" in outputs[2].stdout  # the case with the bad memo
    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert population[0].ref in done.stdout or "RVDK" in done.stdout
        for canary in CANARIES:
            assert canary not in done.stdout + done.stderr


README = Path(__file__).resolve().parent.parent / "README.md"


async def test_the_readmes_list_commands_run(
        lists_server: WorkflowEnvironment, population: list[Spec], tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Listing cases and work lists"):]
    start = section.index("```sh\n") + len("```sh\n")
    block = section[start:section.index("\n```", start)]
    commands = [line.split("#")[0].split() for line in block.splitlines()]
    assert len(commands) == 4 and all(command[0] == "kbflow" for command in commands)
    env = _cli_env(tmp_path, _address(lists_server))
    for command in commands:
        done = await _kbflow(env, *command[1:])
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.strip(), command
