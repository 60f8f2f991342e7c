"""``kbflow cases`` and ``kbflow worklist``: cases from Temporal's visibility, no worker.

Both read only what visibility holds about a case — its search attributes
(``kbflow.search_attributes``) and its plaintext progress memo (``kbflow.progress``) —
with a client that has no payload codec and no keys: whoever traces cases needs neither a
worker nor the key to any personal data (issue 7, build point 4). Neither prints anything
but case refs, run statuses, phases, steps, party codes, event names, dates and flags.

Every visibility query is built here from enum values only (``visibility_query``,
``worklist_query``); a value typed on the command line is parsed into an enum first
(``case_filters``), so nothing a user types reaches a query. A value that is no member is
refused before Temporal is contacted, with one line naming the option and the allowed
values, never the value given (it could be a name typed into the wrong option).

Visibility on SQL stores (the dev server's SQLite, PostgreSQL, MySQL) does not support
``ORDER BY``: ``kbflow cases`` lists in visibility's own order (the newest start first on
SQL stores), page by page; ``kbflow worklist`` reads every running case awaiting the
party and sorts that party's awaited events here (``worklist_order``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from temporalio.api.common.v1 import Payload
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from kbflow import search_attributes as sa
from kbflow.case import Phase
from kbflow.events import Event
from kbflow.process import Party, Step
from kbflow.progress import MEMO_KEY, CaseProgress
from kbflow.retention import retention_workflow_id
from kbflow.settings import Settings
from starter.cases import CaseError
from starter.inputs import InputError

#: The workflow type of a case (``workflows.case_workflow.CaseWorkflow``'s name).
CASE_WORKFLOW_TYPE = "CaseWorkflow"
#: The workflow type of a closed case's retention (``workflows.retention_workflow``).
RETENTION_WORKFLOW_TYPE = "RetentionWorkflow"
#: How many retention workflow ids one visibility query asks for (``WorkflowId IN``).
RETENTION_IDS_PER_QUERY = 100
#: What a workflow id must look like to go into a query (kbflow makes them; checked).
_WORKFLOW_ID = re.compile(r"[A-Za-z0-9_-]+")
#: How a case's workflow id starts (``kbflow.settings.workflow_id``).
WORKFLOW_ID_PREFIX = "kb-case-"
#: The list commands' data converter: pydantic JSON and no codec, so no keys are needed;
#: an encrypted memo is reported as unreadable, never decrypted.
LIST_CONVERTER: DataConverter = pydantic_data_converter
#: Default and largest ``--page-size`` (1000 is the server's default maximum).
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: Page size of the worklist's reads.
WORKLIST_PAGE_SIZE = 1000
#: Default ``--limit`` of ``kbflow worklist``.
DEFAULT_WORKLIST_LIMIT = 50
#: The worklist's first window of next deadlines, and how many windows (each four
#: times as wide as the one before: 1 day to about 3 years) it reads before the rest.
FIRST_WINDOW = dt.timedelta(days=1)
WINDOWS = 7

_E = TypeVar("_E", bound=Enum)
#: What a literal in a visibility query may consist of (enum values only; checked again).
_LITERAL = re.compile(r"[A-Za-z0-9_]+")


class RunStatus(StrEnum):
    """A case run's status in Temporal (``--status``), as visibility names it."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TERMINATED = "terminated"
    CONTINUED_AS_NEW = "continued_as_new"
    TIMED_OUT = "timed_out"


#: Visibility's ``ExecutionStatus`` value of each ``RunStatus``.
_EXECUTION_STATUS = {
    RunStatus.RUNNING: "Running", RunStatus.COMPLETED: "Completed",
    RunStatus.FAILED: "Failed", RunStatus.CANCELED: "Canceled",
    RunStatus.TERMINATED: "Terminated", RunStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
    RunStatus.TIMED_OUT: "TimedOut",
}


@dataclass(frozen=True)
class CaseFilters:
    """The filters of ``kbflow cases``; ``None`` / ``False``: no filter. ``overdue``: an
    open case with an awaited reply past its deadline."""

    phase: Phase | None = None
    awaiting: Party | None = None
    overdue: bool = False
    last_step: Step | None = None
    status: RunStatus | None = None


def _member(enum: type[_E], value: str, option: str, *, upper: bool) -> _E:
    """The member of ``enum`` whose value is ``value`` (case forgiven, spaces around it
    dropped).

    Raises:
        InputError: none is; names ``option`` and the allowed values, never ``value``.
    """
    wanted = value.strip().upper() if upper else value.strip().lower()
    for member in enum:
        if member.value == wanted:
            return member
    allowed = ", ".join(str(member.value) for member in enum)
    raise InputError(f"{option}: must be one of {allowed}")


def party(value: str, option: str = "PARTY") -> Party:
    """``value`` as a party code (``IND``, ``dtv``…).

    Raises:
        InputError: not a party; the message names ``option`` and the codes.
    """
    return _member(Party, value, option, upper=True)


def case_filters(*, phase: str | None = None, awaiting: str | None = None,
                 overdue: bool = False, step: str | None = None,
                 status: str | None = None) -> CaseFilters:
    """The filters of ``kbflow cases`` from the command line's strings.

    Raises:
        InputError: a value is not allowed; the message names the option and the allowed
            values (e.g. "--awaiting: must be one of RVDK, IND, …"), never the value.
    """
    last_step = None
    if step is not None:
        numbers = {str(int(member)): member for member in Step}
        if step.strip() not in numbers:
            raise InputError(f"--step: must be a step number, {min(Step):d} to {max(Step):d}")
        last_step = numbers[step.strip()]
    return CaseFilters(
        phase=None if phase is None else _member(Phase, phase, "--phase", upper=False),
        awaiting=None if awaiting is None else party(awaiting, "--awaiting"),
        overdue=overdue,
        last_step=last_step,
        status=None if status is None else _member(RunStatus, status, "--status",
                                                   upper=False),
    )


def _literal(value: str) -> str:
    """``value`` quoted for a visibility query; only enum values get here."""
    if not _LITERAL.fullmatch(value):  # never: every caller passes an enum value
        raise ValueError("not a visibility literal")
    return f"'{value}'"


def _timestamp(moment: dt.datetime) -> str:
    """``moment`` as a visibility datetime literal (RFC 3339, UTC)."""
    return f"'{moment.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S}Z'"


def _overdue_clause(now: dt.datetime) -> str:
    # The workflow sets KbflowOverdue when its deadline timer fires; a deadline already
    # past whose timer has not fired yet (no worker running) counts as well.
    return (f"{sa.OVERDUE.name} = true OR {sa.NEXT_DEADLINE.name} < {_timestamp(now)}")


def visibility_query(filters: CaseFilters, now: dt.datetime) -> str:
    """The visibility list filter of ``filters`` (``now`` decides what is overdue).

    Built from enum values only, never from text a user typed.
    """
    clauses = [f"WorkflowType = {_literal(CASE_WORKFLOW_TYPE)}"]
    if filters.phase is not None:
        clauses.append(f"{sa.PHASE.name} = {_literal(filters.phase.value)}")
    if filters.awaiting is not None:
        clauses.append(f"{sa.AWAITING.name} = {_literal(filters.awaiting.value)}")
    if filters.last_step is not None:
        clauses.append(f"{sa.LAST_STEP.name} = {int(filters.last_step):d}")
    if filters.status is not None:
        clauses.append(f"ExecutionStatus = {_literal(_EXECUTION_STATUS[filters.status])}")
    else:  # a case that continued as new is listed once, by its current run
        continued = _EXECUTION_STATUS[RunStatus.CONTINUED_AS_NEW]
        clauses.append(f"ExecutionStatus != {_literal(continued)}")
    if filters.overdue:
        clauses.append(f"ExecutionStatus = {_literal(_EXECUTION_STATUS[RunStatus.RUNNING])}")
        clauses.append(f"({_overdue_clause(now)})")
    return " AND ".join(clauses)


def worklist_query(party: Party) -> str:
    """The visibility list filter of ``kbflow worklist``: running cases awaiting ``party``."""
    return " AND ".join([
        f"WorkflowType = {_literal(CASE_WORKFLOW_TYPE)}",
        f"ExecutionStatus = {_literal(_EXECUTION_STATUS[RunStatus.RUNNING])}",
        f"{sa.AWAITING.name} = {_literal(party.value)}",
    ])


# ---- paging ---------------------------------------------------------------------------

def encode_page_token(token: bytes) -> str:
    """Visibility's next-page token as printable text: base64url (no padding) of the token
    and its CRC-32, so that a mistyped or made-up ``--page`` is refused before Temporal
    (which would retry an unreadable token for seconds, then fail vaguely)."""
    checked = token + zlib.crc32(token).to_bytes(4, "big")
    return base64.urlsafe_b64encode(checked).decode("ascii").rstrip("=")


def decode_page_token(text: str) -> bytes:
    """A ``--page`` value back to visibility's token.

    Raises:
        InputError: not a token ``kbflow cases`` printed (its check does not hold).
    """
    text = text.strip()
    try:
        checked = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        checked = b""
    token, check = checked[:-4], checked[-4:]
    if (not token or not re.fullmatch(r"[A-Za-z0-9_-]+", text)
            or zlib.crc32(token).to_bytes(4, "big") != check):
        raise InputError("--page: not a page token printed by kbflow cases")
    return token


def check_page_size(page_size: str | int) -> int:
    """``page_size`` (as typed) as a number, if it is 1 to ``MAX_PAGE_SIZE``.

    Raises:
        InputError: it is not (the message never repeats what was typed).
    """
    return _count(page_size, "--page-size", MAX_PAGE_SIZE)


def check_limit(limit: str | int) -> int:
    """``limit`` (as typed) as a number, if it is 1 or more.

    Raises:
        InputError: it is not.
    """
    return _count(limit, "--limit", None)


def _count(value: str | int, option: str, maximum: int | None) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1 or (maximum is not None and int(text) > maximum):
        raise InputError(f"{option}: must be 1 to {maximum}" if maximum is not None
                         else f"{option}: must be 1 or more")
    return int(text)


# ---- rows -----------------------------------------------------------------------------

_ROW = ConfigDict(frozen=True, extra="forbid")


class DataState(StrEnum):
    """Where a closed case's personal data stands (``CaseRow.data``)."""

    RETAINED = "retained"  # kept for the retention period, then erased
    ERASED = "erased"  # crypto-shredded: its data key is destroyed


def data_state(status: WorkflowExecutionStatus | None, phase: str | None,
               end_state: str | None,
               retention: WorkflowExecutionStatus | None) -> DataState | None:
    """A case's ``DataState`` from what visibility holds: erased if it ended as
    ``erased`` (erased while open) or its retention workflow has completed; retained
    while its retention workflow runs, or while a closed case's own run still runs (a run
    started before the hand-over keeps the case in retention itself); ``None``
    otherwise (an open case, or one whose data state visibility does not show, e.g. a
    terminated run)."""
    if end_state == "erased" or retention is WorkflowExecutionStatus.COMPLETED:
        return DataState.ERASED
    if retention is WorkflowExecutionStatus.RUNNING or (
            status is WorkflowExecutionStatus.RUNNING and phase == Phase.CLOSED.value):
        return DataState.RETAINED
    return None


class CaseRow(BaseModel):
    """One case as visibility shows it: its search attributes and run status.

    Phase, party codes and end state are kept as visibility holds them (text), so that a
    value a newer worker writes is shown, not refused.
    """

    model_config = _ROW

    case_ref: str
    status: str
    phase: str | None
    last_step: int | None
    awaiting: tuple[str, ...]
    next_deadline: dt.datetime | None
    overdue: bool
    end_state: str | None
    data: DataState | None
    started_at: dt.datetime | None

    @classmethod
    def of(cls, execution: WorkflowExecution, now: dt.datetime,
           retention: WorkflowExecutionStatus | None = None) -> CaseRow:
        """The row of ``execution``; ``overdue`` also when a running case's next deadline
        is before ``now`` (its deadline timer has not fired yet). ``retention``: the
        status of the case's retention workflow, if it has one (``data_state``)."""
        found = execution.typed_search_attributes
        status = execution.status
        running = status is WorkflowExecutionStatus.RUNNING
        deadline = found.get(sa.NEXT_DEADLINE)
        overdue = bool(found.get(sa.OVERDUE)) and running
        phase, end_state = found.get(sa.PHASE), found.get(sa.END_STATE)
        return cls(
            case_ref=case_ref_of(execution.id),
            status=status.name.lower() if status is not None else "unknown",
            phase=phase,
            last_step=found.get(sa.LAST_STEP),
            awaiting=tuple(found.get(sa.AWAITING) or ()),
            next_deadline=deadline,
            overdue=overdue or (running and deadline is not None and deadline < now),
            end_state=end_state,
            data=data_state(status, phase, end_state, retention),
            started_at=execution.start_time,
        )


def case_ref_of(workflow_id: str) -> str:
    """The case ref in a case's workflow id (the id itself if it is not a case's)."""
    return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)


@dataclass(frozen=True)
class CasePage:
    """One page of ``kbflow cases``: its rows, how many cases match in all, and the token
    of the next page (``None``: this was the last)."""

    rows: tuple[CaseRow, ...]
    total: int
    next_page: str | None

    def as_json(self) -> dict[str, Any]:
        """``{"total": …, "cases": [row, …], "next_page": token | null}``."""
        return {"total": self.total,
                "cases": [row.model_dump(mode="json") for row in self.rows],
                "next_page": self.next_page}


class WorkItem(BaseModel):
    """One thing a party must send: ``event`` (step ``step``) in case ``case_ref`` by
    ``due``. ``event`` is ``None`` when the case's progress memo could not be read (the
    case awaits the party, but what and by when is unknown here)."""

    model_config = _ROW

    case_ref: str
    event: Event | None
    step: Step | None
    due: dt.datetime | None
    overdue: bool


def worklist_order(item: WorkItem) -> tuple[bool, bool, dt.datetime, str, str]:
    """Sort key: overdue first, then by due date (no due date last), then case ref."""
    due = item.due or dt.datetime.max.replace(tzinfo=dt.UTC)
    return (not item.overdue, item.due is None, due, item.case_ref,
            item.event.value if item.event else "")


@dataclass(frozen=True)
class Worklist:
    """What ``party`` must send across its cases, in ``worklist_order``, as of ``as_of``.

    ``cases``: how many running cases await the party. ``complete``: ``items`` is the
    whole worklist; otherwise its first ``len(items)`` entries (``--limit``).
    """

    party: Party
    as_of: dt.datetime
    items: tuple[WorkItem, ...]
    cases: int
    complete: bool

    def as_json(self) -> dict[str, Any]:
        """``{"party", "as_of", "cases", "complete", "items": [item, …]}``."""
        return {"party": self.party.value, "as_of": self.as_of.isoformat(),
                "cases": self.cases, "complete": self.complete,
                "items": [item.model_dump(mode="json") for item in self.items]}


class _WorkReader:
    """Reads cases' progress memos from visibility and keeps ``party``'s work items,
    each case once. It asks the list RPC itself and decodes the memo alone (the SDK's
    ``WorkflowExecution`` also decodes every search attribute of every row, which the
    worklist does not need; ``bench/bench_lists.py`` times both ways)."""

    def __init__(self, client: Client, party: Party, now: dt.datetime) -> None:
        self.client, self.party, self.now = client, party, now
        self.items: list[WorkItem] = []
        self.seen: set[str] = set()

    async def read(self, query: str) -> None:
        """Every case ``query`` matches.

        Raises:
            RPCError: Temporal refused the query or did not answer.
        """
        request = ListWorkflowExecutionsRequest(
            namespace=self.client.namespace, page_size=WORKLIST_PAGE_SIZE, query=query)
        while True:
            answer = await self.client.workflow_service.list_workflow_executions(
                request, retry=True)
            for info in answer.executions:
                workflow_id = info.execution.workflow_id
                if workflow_id not in self.seen:
                    self.seen.add(workflow_id)
                    memo = info.memo.fields.get(MEMO_KEY)
                    self.items += await self._items(workflow_id, memo)
            if not answer.next_page_token:
                return
            request.next_page_token = answer.next_page_token

    async def _items(self, workflow_id: str, memo: Payload | None) -> list[WorkItem]:
        """What the case awaits from the party, from its progress memo; one item with
        event unknown when the memo is missing or unreadable (e.g. encrypted)."""
        ref = case_ref_of(workflow_id)
        progress = None
        if memo is not None:
            try:
                progress = (await self.client.data_converter.decode(
                    [memo], [CaseProgress]))[0]
            except (KeyError, ValueError, TypeError):  # unknown encoding, another shape
                progress = None
        if not isinstance(progress, CaseProgress):
            return [WorkItem(case_ref=ref, event=None, step=None, due=None, overdue=False)]
        return [
            WorkItem(case_ref=ref, event=awaited.event, step=awaited.step, due=awaited.due,
                     overdue=awaited.overdue
                     or (awaited.due is not None and awaited.due < self.now))
            for awaited in progress.awaiting if awaited.party is self.party
        ]

    def known_before(self, upper: dt.datetime) -> int:
        """How many items read so far are overdue or due before ``upper``."""
        return sum(1 for item in self.items
                   if item.overdue or (item.due is not None and item.due < upper))


# ---- Temporal -------------------------------------------------------------------------

async def open_list_client(settings: Settings) -> Client:
    """A client for visibility with ``LIST_CONVERTER``: no codec, no keys, no data dir.

    Raises:
        CaseError: Temporal does not answer on TEMPORAL_ADDRESS.
    """
    try:
        return await Client.connect(settings.temporal_address, namespace=settings.namespace,
                                    data_converter=LIST_CONVERTER)
    except RuntimeError:
        raise CaseError(
            f"cannot reach Temporal at {settings.temporal_address} (namespace "
            f"{settings.namespace}); start it with `kbflow server` or set TEMPORAL_ADDRESS"
        ) from None


def _refused(error: RPCError, *, page_token_given: bool) -> CaseError:
    """One line for a list call Temporal refused. The query holds enum values only, so
    the server's message may be shown; a refused page token is named as such."""
    if error.status is RPCStatusCode.INVALID_ARGUMENT and page_token_given:
        return CaseError("--page: Temporal refused the page token (from another query or "
                         "server?)")
    if error.status is RPCStatusCode.INVALID_ARGUMENT:
        return CaseError(f"Temporal refused the list query ({error.message}); are the "
                         "kbflow search attributes registered in the namespace?")
    return CaseError(f"listing cases failed: {error.status.name if error.status else ''} "
                     f"{error.message}".strip())


async def list_cases(client: Client, filters: CaseFilters, *,
                     page_size: int = DEFAULT_PAGE_SIZE, page: str | None = None,
                     now: dt.datetime | None = None) -> CasePage:
    """One page of the cases matching ``filters``, in visibility's order (newest start
    first on SQL stores), and how many match in all.

    Args:
        page_size: rows per page, 1 to ``MAX_PAGE_SIZE``.
        page: the ``next_page`` of the previous page (``None``: the first page).
        now: what "overdue" is measured against (default: the current time).

    Raises:
        InputError: a malformed ``page`` or ``page_size``.
        CaseError: Temporal refused the query or the token, or did not answer.
    """
    now = now or dt.datetime.now(dt.UTC)
    token = None if page is None else decode_page_token(page)
    query = visibility_query(filters, now)
    listing = client.list_workflows(query, page_size=check_page_size(page_size),
                                    next_page_token=token)
    try:
        await listing.fetch_next_page()
        total = (await client.count_workflows(query)).count
    except RPCError as error:
        raise _refused(error, page_token_given=token is not None) from None
    executions = listing.current_page or []
    try:
        retentions = await _retention_statuses(client, [
            execution.id for execution in executions
            if execution.status is not WorkflowExecutionStatus.RUNNING])
    except RPCError as error:
        raise _refused(error, page_token_given=False) from None
    rows = tuple(CaseRow.of(execution, now,
                            retentions.get(retention_workflow_id(case_ref_of(execution.id))))
                 for execution in executions)
    next_token = listing.next_page_token
    return CasePage(rows=rows, total=total,
                    next_page=encode_page_token(next_token) if next_token else None)


async def _retention_statuses(client: Client, case_workflow_ids: list[str]
                              ) -> dict[str, WorkflowExecutionStatus]:
    """The run status of the retention workflows of those cases that have one, by
    retention workflow id (a running run wins over an ended one of the same id), in one
    visibility query per ``RETENTION_IDS_PER_QUERY`` cases.

    Raises:
        RPCError: Temporal refused a query or did not answer.
    """
    ids = [retention_workflow_id(case_ref_of(wid)) for wid in case_workflow_ids]
    ids = [wid for wid in ids if _WORKFLOW_ID.fullmatch(wid)]  # never quotes in a query
    found: dict[str, WorkflowExecutionStatus] = {}
    for start in range(0, len(ids), RETENTION_IDS_PER_QUERY):
        chunk = ids[start:start + RETENTION_IDS_PER_QUERY]
        query = (f"WorkflowType = {_literal(RETENTION_WORKFLOW_TYPE)} AND WorkflowId IN ("
                 + ", ".join(f"'{wid}'" for wid in chunk) + ")")
        async for execution in client.list_workflows(query, page_size=len(chunk)):
            if execution.status is not None and found.get(
                    execution.id) is not WorkflowExecutionStatus.RUNNING:
                found[execution.id] = execution.status
    return found


async def worklist(client: Client, party: Party, *, limit: int | None = None,
                   now: dt.datetime | None = None) -> Worklist:
    """What ``party`` must send in the running cases that await it, overdue first, then
    by due date, no due date last (``worklist_order``): all of it (``limit`` ``None``),
    or its first ``limit`` items.

    Visibility on SQL stores cannot order by a custom attribute, so the order is made
    here. The whole worklist reads every running case whose ``KbflowAwaiting`` holds the
    party. Its first ``limit`` items read fewer: first every case that may hold an
    overdue item (``KbflowOverdue``, or a next deadline already past); then cases by
    their next deadline (``KbflowNextDeadline``), in windows from ``now`` that widen
    fourfold from ``FIRST_WINDOW``, until ``limit`` items are known to come first; then,
    if still short, the rest (later deadlines, and none). A party's due date is never
    before its case's next deadline (the earliest of what the case awaits): once every
    case with a deadline before a moment is read, every item due before it is known.

    An item counts as overdue when the memo says so or its due date is before ``now``.

    Raises:
        CaseError: Temporal refused a query or did not answer.
    """
    now = now or dt.datetime.now(dt.UTC)
    base = worklist_query(party)
    reader = _WorkReader(client, party, now)
    deadline = sa.NEXT_DEADLINE.name
    try:
        cases = (await client.count_workflows(base)).count
        if limit is None:
            await reader.read(base)
        else:
            await reader.read(f"{base} AND ({_overdue_clause(now)})")
            lower, width = now, FIRST_WINDOW
            for _ in range(WINDOWS):
                if reader.known_before(lower) >= limit:
                    break
                upper = lower + width
                await reader.read(f"{base} AND {deadline} >= {_timestamp(lower)} "
                                  f"AND {deadline} < {_timestamp(upper)}")
                lower, width = upper, width * 4
            if reader.known_before(lower) < limit:
                await reader.read(f"{base} AND {deadline} >= {_timestamp(lower)}")
                await reader.read(f"{base} AND {deadline} IS NULL")
    except RPCError as error:
        raise _refused(error, page_token_given=False) from None
    items = sorted(reader.items, key=worklist_order)
    complete = limit is None or (len(items) <= limit and len(reader.seen) >= cases)
    return Worklist(party=party, as_of=now, items=tuple(items[:limit]), cases=cases,
                    complete=complete)


# ---- text -----------------------------------------------------------------------------

_CASE_COLUMNS = ("case ref", "status", "phase", "step", "awaiting", "next deadline",
                 "overdue", "end state", "data")


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                      ).rstrip() for row in (header, *rows)]


def case_lines(page: CasePage) -> list[str]:
    """The text of ``kbflow cases``: a table, then the count and the next page's option."""
    if not page.rows:
        return [f"no cases match ({page.total} in all)" if page.total else "no cases match"]
    cells = [[row.case_ref, row.status, row.phase or "-",
              "-" if row.last_step is None else str(row.last_step),
              ",".join(row.awaiting) or "-", _when(row.next_deadline),
              "yes" if row.overdue else "-", row.end_state or "-",
              row.data.value if row.data else "-"] for row in page.rows]
    lines = _table(_CASE_COLUMNS, cells)
    lines.append(f"{len(page.rows)} shown of {page.total} matching")
    if page.next_page:
        lines.append(f"next page: --page {page.next_page}")
    return lines


def worklist_lines(found: Worklist) -> list[str]:
    """The text of ``kbflow worklist``: a head line, then one line per awaited event,
    overdue first; ends with a hint when more items exist than were asked for."""
    shown = (f"{len(found.items)} to send" if found.complete
             else f"the first {len(found.items)} to send")
    head = (f"worklist of {found.party.value} as of {_when(found.as_of)} UTC: "
            f"{shown}; {found.cases} case(s) await {found.party.value}")
    if not found.items:
        return [head]
    cells = [["OVERDUE" if item.overdue else "", _when(item.due), item.case_ref,
              item.event.value if item.event else "? (progress unreadable)",
              "-" if item.step is None else str(int(item.step))] for item in found.items]
    lines = [head, *_table(("", "due", "case ref", "event", "step"), cells)]
    if not found.complete:
        lines.append("more: a larger --limit, or --all")
    return lines
