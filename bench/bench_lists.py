"""How fast ``kbflow cases`` and ``kbflow worklist`` answer: ``python -m bench.bench_lists``.

Starts a Temporal dev server with kbflow's search attributes registered, its state in
in-memory SQLite (``--db-file``: in a SQLite file, as ``kbflow server`` runs it; starting
the cases is then about four times slower), then ``--cases`` stub cases (10,000 by
default) of workflow type ``CaseWorkflow``, each with its search attributes and its
``CaseProgress`` memo set at start, as the case workflow keeps them. No worker runs: the
cases sit Running, which is all visibility needs. A quarter of the cases await IND and
DT&V, a quarter IND alone, a quarter the RvdK, a quarter nothing; one in ten awaited
replies is overdue, one in eight has no due date.

The same queries are timed twice: once when ``--baseline`` cases (100) exist, once when
all exist, so the ratio shows how each one grows with the number of cases. Each is called
in this process, as the CLI calls it (``starter.lists``, rendering included), ``--rounds``
times after one warm-up call; the table shows the median and the 90th percentile:

- ``cases``: the first page (50 rows) of every case, with the count of all matches;
- ``cases --awaiting IND`` and ``cases --overdue``: the same, filtered;
- ``count only``: the count query alone (``count_workflows``), part of each ``cases``;
- ``worklist IND``: its first 50 items (the default ``--limit``): the cases that may hold
  an overdue item, then cases by next-deadline windows until 50 are known;
- ``worklist IND --all``: every running case awaiting IND, read in pages of 1000 with its
  memo, and sorted here (SQL visibility has no ORDER BY); and the same read through the
  SDK's ``WorkflowExecution`` rows (which decode every search attribute too), that
  ``starter.lists`` does not use.

Prints the tables only; nothing here is asserted. No network beyond localhost.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from kbflow import search_attributes as sa
from kbflow.case import OPEN
from kbflow.case_refs import new_case_ref
from kbflow.events import Event
from kbflow.process import Party, Step
from kbflow.progress import MEMO_KEY, AwaitedProgress, CaseProgress, typed_search_attributes
from kbflow.settings import Settings, installed_binary, workflow_id
from starter import lists

#: A task queue no worker polls: the stub cases only sit in visibility.
TASK_QUEUE = "kbflow-bench-lists-nobody-polls"
#: How many starts are in flight at once (``--concurrency``).
CONCURRENCY = 16
#: Bound for visibility to show every started case.
VISIBLE_WITHIN = 300.0


def progress_of(number: int, now: dt.datetime) -> CaseProgress:
    """The stub case ``number``'s progress (see the module's docstring)."""
    due = None if number % 8 == 6 else now + dt.timedelta(hours=(number % 240) - 24)
    overdue = due is not None and due < now
    kind = number % 4
    awaiting: list[AwaitedProgress] = []
    if kind in (0, 1):
        awaiting.append(AwaitedProgress(
            party=Party.IND, event=Event.RESIDENCE_INFORMATION,
            step=Step.RESIDENCE_INFORMATION, due=due, overdue=overdue))
    if kind == 0:
        awaiting.append(AwaitedProgress(
            party=Party.DTV, event=Event.RESIDENCE_INFORMATION,
            step=Step.RESIDENCE_INFORMATION, due=due, overdue=overdue))
    if kind == 2:
        awaiting.append(AwaitedProgress(party=Party.RVDK, event=Event.INVESTIGATION_DECISION,
                                        step=None, due=due, overdue=overdue))
    dues = [entry.due for entry in awaiting if entry.due is not None]
    return CaseProgress(
        case_ref=new_case_ref(), phase=OPEN[number % len(OPEN)],
        last_step=Step(1 + number % 12), measure=None, end_state=None,
        awaiting=tuple(awaiting), next_deadline=min(dues) if dues else None,
        overdue=any(entry.overdue for entry in awaiting), closed_at=None)


async def start_cases(client: Client, numbers: range, now: dt.datetime,
                      concurrency: int = CONCURRENCY) -> float:
    """Start the stub cases ``numbers``, ``concurrency`` at a time, and wait until
    visibility shows them all; returns the seconds it took."""
    began = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)

    async def start(number: int) -> None:
        progress = progress_of(number, now)
        async with gate:
            await client.start_workflow(
                lists.CASE_WORKFLOW_TYPE, id=workflow_id(progress.case_ref),
                task_queue=TASK_QUEUE, search_attributes=typed_search_attributes(progress),
                memo={MEMO_KEY: progress})

    await asyncio.gather(*(start(number) for number in numbers))
    deadline = time.monotonic() + VISIBLE_WITHIN
    query = f"WorkflowType = '{lists.CASE_WORKFLOW_TYPE}'"
    while (await client.count_workflows(query)).count < numbers.stop:
        if time.monotonic() > deadline:
            raise TimeoutError(f"visibility did not show {numbers.stop} cases")
        await asyncio.sleep(0.1)
    return time.perf_counter() - began


@dataclass(frozen=True)
class Measured:
    """One query's wall times in seconds, and the size of its answer."""

    seconds: list[float]
    answer: str


def p90(values: list[float]) -> float:
    """The 90th percentile (inclusive method: within the sample's range)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


async def _timed(call: Callable[[], Awaitable[str]], rounds: int) -> Measured:
    answer = await call()  # warm-up
    seconds = []
    for _ in range(rounds):
        began = time.perf_counter()
        answer = await call()
        seconds.append(time.perf_counter() - began)
    return Measured(seconds, answer)


def queries(client: Client) -> dict[str, Callable[[], Awaitable[str]]]:
    """The timed calls, by label; each returns a short description of its answer."""

    def first_page(filters: lists.CaseFilters) -> Callable[[], Awaitable[str]]:
        async def call() -> str:
            page = await lists.list_cases(client, filters)
            lists.case_lines(page)
            return f"{len(page.rows)} rows of {page.total}"
        return call

    async def count_only() -> str:
        count = await client.count_workflows(lists.visibility_query(
            lists.CaseFilters(), dt.datetime.now(dt.UTC)))
        return f"{count.count} cases"

    def worklist_ind(limit: int | None) -> Callable[[], Awaitable[str]]:
        async def call() -> str:
            found = await lists.worklist(client, Party.IND, limit=limit)
            lists.worklist_lines(found)
            return (f"{len(found.items)} items, {sum(i.overdue for i in found.items)} "
                    f"overdue, {found.cases} cases")
        return call

    async def worklist_sdk_rows() -> str:
        # what `worklist --all` would cost read through the SDK's WorkflowExecution rows
        read = 0
        async for execution in client.list_workflows(lists.worklist_query(Party.IND),
                                                     page_size=lists.WORKLIST_PAGE_SIZE):
            await execution.memo_value(MEMO_KEY, None, type_hint=CaseProgress)
            read += 1
        return f"{read} cases"

    return {
        "cases (first page)": first_page(lists.CaseFilters()),
        "cases --awaiting IND": first_page(lists.CaseFilters(awaiting=Party.IND)),
        "cases --overdue": first_page(lists.CaseFilters(overdue=True)),
        "count only": count_only,
        "worklist IND": worklist_ind(lists.DEFAULT_WORKLIST_LIMIT),
        "worklist IND --all": worklist_ind(None),
        "  same, via SDK rows": worklist_sdk_rows,
    }


@dataclass(frozen=True)
class Options:
    """The command line's options."""

    total: int
    baseline: int
    rounds: int
    db_file: bool
    concurrency: int


async def bench(options: Options, data_dir: Path, progress: Callable[[str], None]
                ) -> tuple[dict[str, Measured], dict[str, Measured], float]:
    """Time every query with ``baseline`` cases, then with ``total``; also returns the
    seconds it took to start and see the ``total - baseline`` other cases."""
    now = dt.datetime.now(dt.UTC)
    db_file = Settings(data_dir=data_dir).dev_server_db_path if options.db_file else None
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(installed_binary("temporal")),
        dev_server_database_filename=None if db_file is None else str(db_file),
        search_attributes=list(sa.ALL), data_converter=pydantic_data_converter)
    total, baseline, rounds = options.total, options.baseline, options.rounds
    try:
        client = environment.client
        await start_cases(client, range(baseline), now, options.concurrency)
        small = {label: await _timed(call, rounds)
                 for label, call in queries(client).items()}
        progress(f"{baseline} cases timed; starting {total - baseline} more")
        seconds = await start_cases(client, range(baseline, total), now,
                                    options.concurrency)
        progress(f"{total} cases started and visible in {seconds:.0f} s")
        large = {label: await _timed(call, rounds)
                 for label, call in queries(client).items()}
    finally:
        await environment.shutdown()
    return small, large, seconds


def report(small: dict[str, Measured], large: dict[str, Measured], options: Options,
           start_seconds: float, elapsed: float) -> str:
    ms = 1000.0
    total, baseline = options.total, options.baseline
    lines = [
        f"kbflow list benchmark — {dt.date.today().isoformat()}, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}, dev server (SQLite "
        f"{'file' if options.db_file else 'in memory'}), {options.rounds} rounds, "
        f"{elapsed:.0f} s",
        f"starting and seeing {total - baseline} stub cases: {start_seconds:.0f} s "
        f"({(total - baseline) / start_seconds:.0f} a second, {options.concurrency} in "
        "flight)",
        "",
        f"{'query (in process)':<22} {f'{baseline} med':>9} {'p90':>6} "
        f"{f'{total} med':>11} {'p90':>6} {'ratio':>6}  answer with {total}",
    ]
    for label, measured in large.items():
        base = statistics.median(small[label].seconds)
        now = statistics.median(measured.seconds)
        lines.append(f"{label:<22} {base * ms:>9.1f} {p90(small[label].seconds) * ms:>6.1f} "
                     f"{now * ms:>11.1f} {p90(measured.seconds) * ms:>6.1f} "
                     f"{now / base:>6.1f}  {measured.answer}")
    lines.append("(wall time per call, ms; ratio: median with "
                 f"{total} cases / median with {baseline})")
    return "\n".join(lines)


async def main_async(options: Options) -> str:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kbflow-bench-lists-") as folder:
        small, large, seconds = await bench(
            options, Path(folder), lambda line: print(line, file=sys.stderr, flush=True))
    return report(small, large, options, seconds, time.monotonic() - began)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.bench_lists``."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_lists",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=10_000,
                        help="stub cases in all (default 10000)")
    parser.add_argument("--baseline", type=int, default=100,
                        help="stub cases of the first measurement (default 100)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="timed calls per query and size (default 10)")
    parser.add_argument("--db-file", action="store_true",
                        help="keep the server's state in a SQLite file, as `kbflow server` "
                             "does (default: in memory)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"starts in flight at once (default {CONCURRENCY})")
    args = parser.parse_args(argv)
    if not 0 < args.baseline < args.cases:
        parser.error("--baseline must be between 0 and --cases")
    print(asyncio.run(main_async(Options(args.cases, args.baseline, args.rounds,
                                         args.db_file, args.concurrency))))


if __name__ == "__main__":
    main()
