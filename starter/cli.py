"""``kbflow``: the command line (installed as the ``kbflow`` script).

Commands: ``server`` (Temporal dev server), ``worker``, ``start`` (a case), ``event`` (an
agency event), ``schema`` and ``template`` (an event body's JSON Schema and a filled-in
example), ``status``, ``packets`` (a case's outboxes), ``inbox`` (what one party
received), ``document get`` (a document sent by reference, for a party that may read
it), ``erase`` (a case, now), ``demo`` (every example, end to end); ``cases``
(the cases, filtered and paged) and ``worklist`` (what one party must send), from
Temporal's visibility, with no worker and no keys;
``codec-server`` (decodes payloads for the Web UI and the temporal CLI, for operators),
``operator issue|list|revoke`` (operators' own codec tokens),
``rotate-master-key`` and ``rewrap`` (keys); ``register`` (GDPR art. 30) and
``disclosures`` (GDPR art. 15). Configuration comes from the environment, read once per
command (``kbflow.settings.Settings.from_env``). The failures the commands expect (bad
input, Temporal unreachable, a refused event, missing keys or data) print one line on
stderr and exit with code 1, an interrupt exits with 130; nothing prints a personal value
except ``packets --json`` and ``inbox --json``, which show the packets as delivered.

Exit codes of the commands that send an event (``event``, ``erase``): 0 applied, 1
refused or an error, 3 (``EXIT_PENDING``) pending: Temporal holds the event but it is not
applied yet (no worker polls, or its deliveries are being retried); re-send the same file
to learn the outcome. A storage fault (read-only data dir, disk full, permission denied,
locked) is one line naming the file and the reason, exit 1: ``StorageError`` is caught in
``_run`` and ``_run_sync``, and in ``_Kbflow`` as the last resort, so no command prints a
traceback. ``status``, ``packets``, ``inbox``, ``disclosures`` and ``register`` only read,
and open the data dir read-only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from activities.documents import DocumentError, DocumentStore
from activities.outbox_store import DecodeLog, Erasure, OutboxStore, PacketUnreadable
from activities.pseudonyms import Pseudonymiser
from encryption import codec_server as codec
from encryption import operators
from encryption.keys import KeyStore
from encryption.operators import OperatorError, OperatorStore
from encryption.storage import StorageError
from kbflow import reference, trace
from kbflow.disclosures import SUBJECT_ID, access_answer, subject_id_of
from kbflow.documents import document_ids, document_refs
from kbflow.events import ErasureReason, ErasureRequest
from kbflow.logs import configure_logging
from kbflow.process import Party
from kbflow.register import register as processing_register
from kbflow.settings import PSEUDONYM_KEY_ENV, Settings, SettingsError, workflow_id
from starter import attachments, inputs, lists, render
from starter.cases import (
    EVENT_TIMEOUT,
    CaseError,
    CaseView,
    ErasedAlready,
    EventPendingError,
    Started,
    case_view,
    data_dir_keys,
    derived_case_ref,
    erase_running_case,
    open_client,
    send_event,
    start_case,
    without_key_here,
)
from starter.demo import DemoReport, run_demo
from starter.dev_server import DEFAULT_UI_PORT, DevServerConfig, DevServerError
from starter.master_keys import KeyAdminError, open_existing, rotate_master_key
from starter.master_keys import rewrap as rewrap_data_keys
from store import local_file_missing, open_store
from worker import MetricsPortError, SearchAttributesMissing, run_worker


class _Kbflow(typer.Typer):
    """The ``kbflow`` script's app: after a command, flush and leave without interpreter
    teardown. Temporal's Rust client threads can otherwise abort a finished command while
    Python finalizes ("PyGILState_Release: thread state … must be current",
    temporalio/sdk-python#300). ``typer.testing.CliRunner`` does not go through here."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            super().__call__(*args, **kwargs)
            code = 0
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except (StorageError, sqlite3.Error, OSError) as error:  # the last resort
            print(f"error: {_storage_message(error)}", file=sys.stderr)
            code = 1
        except SettingsError as error:  # a malformed variable; the message names it
            print(f"error: {error}", file=sys.stderr)
            code = 1
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


app = _Kbflow(
    name="kbflow",
    help="Run the RvdK / IND / DT&V child-protection data-sharing protocol on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold personal data
    rich_markup_mode="markdown",
)

_T = TypeVar("_T")

#: Exit code of an event (or erasure) that Temporal holds but that is not applied yet.
EXIT_PENDING = 3
#: Default of --wait (seconds).
DEFAULT_WAIT = EVENT_TIMEOUT.total_seconds()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
WaitOption = Annotated[float, typer.Option(
    "--wait", metavar="SECONDS", min=0.1,
    help="How long to wait for a worker to apply the event and deliver its packets; "
         f"then exit {EXIT_PENDING} (pending).")]
CaseRefArgument = Annotated[str, typer.Argument(
    metavar="CASE_REF", help="The case ref, e.g. KB-2026-7Q4M2X.")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _storage_message(error: BaseException) -> str:
    """One line for a storage fault: the store's own message, else the file and the
    reason (``encryption.storage.reason``), never any content."""
    if isinstance(error, StorageError):
        return str(error)
    from encryption.storage import reason

    if isinstance(error, OSError):
        where = f" {error.filename}" if error.filename else ""
        return f"cannot read or write{where}: {reason(error)}"
    assert isinstance(error, sqlite3.Error)
    return f"storage: {reason(error)}"


def _run(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``work`` on a fresh event loop; known failures become one line: exit 1, or
    ``EXIT_PENDING`` for an event Temporal holds but has not applied yet."""
    try:
        return asyncio.run(work())
    except EventPendingError as pending:
        typer.echo(str(pending), err=True)
        raise typer.Exit(EXIT_PENDING) from None
    except (inputs.InputError, CaseError, DevServerError) as error:
        _fail(str(error))
    except (StorageError, sqlite3.Error, OSError) as error:
        _fail(_storage_message(error))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM in the demo
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


@app.command()
def server(
    ui_port: Annotated[int, typer.Option(help="Port of the Web UI.")] = DEFAULT_UI_PORT,
    ui_codec_endpoint: Annotated[str | None, typer.Option(
        "--ui-codec-endpoint", metavar="URL",
        help="A cluster-level codec endpoint for every UI viewer (default: none; each "
             "operator sets their own in their browser, see `kbflow codec-server`).")
    ] = None,
) -> None:
    """Run the Temporal dev server in the foreground.

    State in SQLite in the data dir (KBFLOW_DATA_DIR/temporal.sqlite), frontend on the
    port of TEMPORAL_ADDRESS, Web UI on --ui-port. The UI has no codec endpoint unless
    --ui-codec-endpoint sets one: a viewer sees progress and ciphertext payloads, with no
    error banner; an operator sets `kbflow codec-server`'s endpoint with their own token
    in their own browser. Stop it with Ctrl-C.
    """
    settings = Settings.from_env()
    try:
        config = DevServerConfig.from_settings(settings, ui_port,
                                               codec_endpoint=ui_codec_endpoint or None)
        command = config.command()
    except (DevServerError, FileNotFoundError) as error:
        _fail(str(error))
    config.db_file.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(f"Temporal dev server: frontend {config.host}:{config.port}, "
               f"namespace {config.namespace}, state {config.db_file}")
    typer.echo(f"Web UI: {config.ui_url}  (workflows: {config.workflows_url()})")
    if config.codec_endpoint:
        typer.echo(f"Web UI codec endpoint: {config.codec_endpoint} (for every viewer; "
                   "without an operator's token it refuses to decode)")
    else:
        typer.echo("Web UI codec endpoint: none (payloads show as ciphertext; an operator "
                   "sets their own, see `kbflow codec-server`)")
    sys.stdout.flush()
    os.execv(command[0], command)  # the server takes over this process: signals reach it


@app.command()
def worker() -> None:
    """Run a worker for the case workflows and deliveries until interrupted.

    Logs JSON lines on stderr (case refs, steps, parties; never personal data).
    """
    configure_logging(json=True)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        _fail(str(error))
    try:
        asyncio.run(run_worker(settings))
    except (SearchAttributesMissing, MetricsPortError) as error:
        _fail(str(error))
    except RuntimeError as error:
        if "connect" in str(error).lower():
            _fail(f"cannot reach Temporal at {settings.temporal_address}; "
                  "start it with `kbflow server` or set TEMPORAL_ADDRESS")
        # Anything else the SDK raises (a worker that failed while it ran) is one more
        # JSON line, its traceback in it, like everything else the worker writes.
        logging.getLogger("worker").exception("worker failed")
        raise typer.Exit(1) from None


@app.command()
def start(
    case_file: Annotated[Path, typer.Argument(
        metavar="CASE_FILE",
        help="A CaseStart document (with an idempotency_key, without case_ref) or a "
             "scenario file.")],
    second_case: Annotated[bool, typer.Option(
        "--second-case",
        help="Start the case even though a child in it already has an open case.")] = False,
) -> None:
    """Start a case with its step-1 report; kbflow makes the case ref.

    The file is validated as a CaseStart, and checked to be plausible today (no date of
    birth in the future, every child under 18), before Temporal is contacted. The ref is
    derived from the document's idempotency_key: repeating the same start prints the case
    it started ("already started: KB-…", exit 0); the same key with another document is
    refused. A start for a child who already has an open case is refused unless
    --second-case. Exit 0: started or already started; 1: refused (one-line reason).
    """
    settings = Settings.from_env()
    document = _run_sync(lambda: inputs.read_json_object(case_file))
    checked = _run_sync(lambda: inputs.case_start(document, source=str(case_file)))
    implausible = checked.implausibility(dt.date.today())
    if implausible is not None:
        _fail(f"{case_file}: implausible CaseStart: {implausible}")

    async def work() -> Started:
        client = await open_client(settings)
        if not settings.pseudonym_key and not settings.pseudonym_key_path.is_file():
            raise CaseError(f"no pseudonym key: set {PSEUDONYM_KEY_ENV} or use the "
                            "worker's KBFLOW_DATA_DIR")
        try:
            pseudonymise = Pseudonymiser.load(settings)
        except ValueError as error:  # a malformed KBFLOW_PSEUDONYM_KEY
            raise CaseError(str(error)) from None
        store = OutboxStore(settings, pseudonymise)
        assert checked.idempotency_key is not None  # inputs.case_start requires it
        ref = derived_case_ref(pseudonymise, checked.idempotency_key)
        case = checked.model_copy(update={"case_ref": ref})
        with trace.use(trace.TraceContext.start()):  # a new trace: the command's span
            return await start_case(client, settings, case,
                                    open_cases_in=None if second_case else store)

    started = _run(work)
    if started.already_started:
        typer.echo(f"already started: {started.case_ref}")
    else:
        typer.echo(f"started case {started.case_ref}")
    typer.echo(f"workflow id: {workflow_id(started.case_ref)} (task queue "
               f"{settings.task_queue})")


@app.command()
def event(
    case_ref: CaseRefArgument,
    event_name: Annotated[str, typer.Argument(
        metavar="EVENT", help="Event name (`kbflow schema --help` lists them).")],
    body_file: Annotated[Path, typer.Argument(metavar="FILE", help="The event body (JSON).")],
    wait: WaitOption = DEFAULT_WAIT,
    attach: Annotated[list[str] | None, typer.Option(
        "--attach", metavar="FIELD=PATH",
        help="Send the file PATH as a document by reference at FIELD: "
             "dossier_documents appends, vv_application.document, rvdk_report, gi_report "
             "or document (a ruling) sets. Repeatable.")] = None,
) -> None:
    """Send an agency event to a case and show what it did.

    The body is validated against the event's model before Temporal is contacted. Each
    --attach FIELD=PATH stores the file once, encrypted under the case's key (outside
    Temporal), and puts its reference (id, media type, size, SHA-256) in the body at
    FIELD; the event's recipients can then get it (`kbflow document get`). Every
    reference in the body must name a document of the case uploaded by the sender.

    Exit codes: **0** applied (prints the outcome); **1** refused (prints the case's
    reason) or another error; **3** pending: Temporal holds the event but it is not
    applied within --wait seconds, because no worker polls the task queue or because the
    case accepted it and its deliveries are still being retried (e.g. a storage fault on
    the worker). Re-send the same file to learn the outcome: a re-send is never applied
    twice.
    """
    settings = Settings.from_env()
    case_ref = _run_sync(lambda: inputs.check_case_ref(case_ref))
    _run_sync(lambda: inputs.event_name(event_name))
    document = _run_sync(lambda: inputs.read_json_object(body_file))
    files = [_run_sync(functools.partial(attachments.read_attachment, spec))
             for spec in attach or []]
    document, files = _run_sync(lambda: attachments.with_attachments(document, files,
                                                                     case_ref))
    body = _run_sync(lambda: inputs.event_body(event_name, document, source=str(body_file)))

    async def work() -> Any:
        # Only reads keys (the case's key exists since its start): works on a read-only
        # data dir too (unless a file is attached: it is stored in the data dir).
        keys = data_dir_keys(settings, read_only=True)
        client = await open_client(settings, keys=keys)
        if not keys.has_key(workflow_id(case_ref)):
            raise await without_key_here(client, case_ref, settings)
        if document_ids(body):
            await asyncio.to_thread(_documents_of_event, settings, keys, case_ref, body,
                                    files, str(body_file))
        with trace.use(trace.TraceContext.start()):  # a new trace: the command's span
            return await send_event(client, case_ref, event_name, body,
                                    timeout=dt.timedelta(seconds=wait))

    for line in render.outcome_lines(_run(work)):
        typer.echo(line)


def _documents_of_event(settings: Settings, keys: KeyStore, case_ref: str, body: Any,
                        files: list[attachments.Attachment], source: str) -> None:
    """Check the event's document references (``DocumentStore.reference_problems``, as
    the API does), then store its attached files: a refused body stores nothing.

    Raises:
        InputError: a reference names no document of the case uploaded by the sender.
    """
    new = {attachment.ref.document_id for attachment in files}
    attached = {path for path, ref in document_refs(body) if ref.document_id in new}
    documents = DocumentStore(keys, open_store(settings, read_only=not files).documents)
    problems = [problem for problem in documents.reference_problems(case_ref, body.sender, body)
                if problem.name.rsplit(".", 1)[0] not in attached]  # not stored yet
    if problems:
        raise inputs.InputError(f"{source}: invalid document reference(s): "
                                + "; ".join(str(problem) for problem in problems))
    for attachment in files:
        attachment.store(documents, case_ref, body.sender)


EventOrCaseArgument = Annotated[str, typer.Argument(
    metavar="EVENT", help="An event name (see `kbflow event --help`), or `case` for the "
                          "case start.")]


@app.command()
def schema(name: EventOrCaseArgument) -> None:
    """Print the JSON Schema of an event body (or, for `case`, of the case start).

    Every field with its type, limits and description, as the CLI and the workflow
    validate it. An unknown name exits with code 1 and lists the known ones.
    """
    _echo_json(_run_sync(lambda: reference.json_schema(name)))


@app.command()
def template(name: EventOrCaseArgument) -> None:
    """Print a filled-in fictional example body of an event (or, for `case`, a case start).

    It is accepted as is in the event's phase; it carries a fresh `idempotency_key`.
    Replace the fictional values with the case's own. An unknown name exits with code 1.
    """
    _echo_json(_run_sync(lambda: reference.template(name)))


@app.command()
def status(case_ref: CaseRefArgument, as_json: JsonOption = False) -> None:
    """Show a case: phase, end state, steps done, what it awaits, timeline.

    An erased case shows "erased" with the date and reason of its erasure, however it
    ended (completed, terminated, erased while open, retention ended); its timeline is
    gone and no worker is asked for it. A closed case kept by its retention workflow
    shows when its data will be erased (read from that workflow, no worker needed). Only
    reads: works on a read-only data dir.
    """
    settings = Settings.from_env()
    case_ref = _run_sync(lambda: inputs.check_case_ref(case_ref))

    async def work() -> CaseView:
        keys = data_dir_keys(settings, read_only=True)
        client = await open_client(settings, keys=keys)
        erasure = _erasure_of(settings, case_ref, keys)
        return await case_view(client, case_ref, erasure=erasure,
                               key_destroyed=keys.is_destroyed(workflow_id(case_ref)))

    view = _run(work)
    retention = view.retention
    if as_json:
        _echo_json({
            **(view.status.model_dump(mode="json") if view.status else
               {"case_ref": case_ref}),
            "workflow_id": workflow_id(case_ref),
            "erased": view.erased,
            "erasure": None if view.erasure is None else view.erasure.model_dump(mode="json"),
            "timeline": None if view.timeline is None
            else [entry.model_dump(mode="json") for entry in view.timeline],
            "retention": None if retention is None else {
                "workflow_id": retention.workflow_id,
                "running": retention.running,
                "erase_due": retention.retention.erase_due.isoformat(),
            },
        })
        return
    for line in render.view_lines(view):
        typer.echo(line)
    if retention is not None and not view.erased:
        typer.echo(f"personal data kept until {retention.retention.erase_due:%Y-%m-%d %H:%M} "
                   f"UTC, then erased (workflow {retention.workflow_id})")


def _erasure_of(settings: Settings, case_ref: str, keys: KeyStore) -> Erasure | None:
    """The erasure of ``case_ref`` on record in the data dir's outbox store, if any."""
    if local_file_missing(settings, settings.outbox_path):
        return None
    store = OutboxStore(settings, keys=keys, read_only=True)
    return next((e for e in store.erasures() if e.case_ref == case_ref), None)


@app.command()
def packets(
    case_ref: CaseRefArgument,
    party: Annotated[Party | None, typer.Option(
        case_sensitive=False, help="Only what this party received.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the packets delivered for a case.

    Read from the outbox in the data dir. The text form names the items; --json shows
    the packets as delivered, bodies included.
    """
    settings = Settings.from_env()
    case_ref = _run_sync(lambda: inputs.check_case_ref(case_ref))
    if local_file_missing(settings, settings.outbox_path):
        _fail(f"no outbox at {settings.outbox_path}; is KBFLOW_DATA_DIR the worker's?")
    store = _outbox(settings, read_only=True)
    erased = [e for e in _run_sync(store.erasures) if e.case_ref == case_ref]
    if erased:
        _fail(f"case {case_ref}: erased on {erased[0].at:%Y-%m-%d} ({erased[0].reason}); "
              "its packets are gone")
    try:
        if not _run_sync(lambda: store.packets(case_ref)):
            _fail(f"case {case_ref}: no packets in {settings.outbox_path} (unknown case, or "
                  "a worker with another KBFLOW_DATA_DIR)")
        found = _run_sync(lambda: store.packets(case_ref, party))
    except PacketUnreadable as error:
        _fail(f"{error}; with only some parties' keys here, ask for one --party")
    if as_json:
        _echo_json([packet.model_dump(mode="json") for packet in found])
        return
    who = f" received by {party.value}" if party else ""
    typer.echo(f"case {case_ref}: {len(found)} packet(s){who}")
    for packet in found:
        typer.echo(render.packet_line(packet))


@app.command()
def inbox(
    party: Annotated[Party, typer.Argument(
        case_sensitive=False, metavar="PARTY", help="The receiving party, e.g. IND.")],
    case_ref: Annotated[str | None, typer.Option(
        "--case", help="Only packets of this case.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Read PARTY's inbox: every packet delivered to it, opened with PARTY's private key.

    Packets rest sealed to their recipient (and under their case's key): only PARTY's
    private key opens them, so no party reads another's. The key is looked up in
    KBFLOW_PARTY_KEYS_DIR (default KBFLOW_DATA_DIR/party-keys). --json shows bodies.
    """
    settings = Settings.from_env()
    if case_ref is not None:
        given = case_ref
        case_ref = _run_sync(lambda: inputs.check_case_ref(given))
    if local_file_missing(settings, settings.outbox_path):
        _fail(f"no outbox at {settings.outbox_path}; is KBFLOW_DATA_DIR the worker's?")
    try:
        found = _run_sync(lambda: _outbox(settings, read_only=True).inbox(party))
    except PacketUnreadable as error:
        _fail(str(error))
    if case_ref is not None:
        found = [packet for packet in found if packet.case_ref == case_ref]
    if as_json:
        _echo_json([packet.model_dump(mode="json") for packet in found])
        return
    typer.echo(f"inbox of {party.value}: {len(found)} packet(s)")
    for packet in found:
        typer.echo(f"{packet.case_ref}  {render.packet_line(packet)}")


@app.command()
def cases(
    phase: Annotated[str | None, typer.Option(
        metavar="PHASE", help="Only cases in this phase: reported, announced, investigating, "
                              "awaiting_ruling, ots, closed.")] = None,
    awaiting: Annotated[str | None, typer.Option(
        metavar="PARTY", help="Only cases awaiting an event from this party, e.g. IND.")
    ] = None,
    overdue: Annotated[bool, typer.Option(
        "--overdue", help="Only open cases with an awaited reply past its deadline.")] = False,
    step: Annotated[str | None, typer.Option(
        metavar="N", help="Only cases whose last step done is N (1-12).")] = None,
    status: Annotated[str | None, typer.Option(
        metavar="STATUS", help="Only runs with this Temporal status: running, completed, "
                               "failed, canceled, terminated, continued_as_new, timed_out.")
    ] = None,
    page_size: Annotated[str, typer.Option(
        metavar="N", help=f"Cases per page, 1 to {lists.MAX_PAGE_SIZE}.")
    ] = str(lists.DEFAULT_PAGE_SIZE),
    page: Annotated[str | None, typer.Option(
        metavar="TOKEN", help="The page after the one that printed this token.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List cases from Temporal's visibility: no worker and no keys needed.

    Columns: case ref, run status, phase, last step done, parties awaited, next deadline,
    overdue, end state; running cases first, the newest first. Filters combine (AND); a
    value that is not allowed is refused before Temporal is contacted. A page ends with
    `next page: --page TOKEN` when there is more. --json prints one JSON object:
    `{"total", "cases": [...], "next_page"}`. No personal data: case refs, statuses,
    phases, steps, party codes, dates.
    """
    settings = Settings.from_env()
    filters = _run_sync(lambda: lists.case_filters(
        phase=phase, awaiting=awaiting, overdue=overdue, step=step, status=status))
    size = _run_sync(lambda: lists.check_page_size(page_size))
    if page is not None:
        _run_sync(lambda: lists.decode_page_token(page))

    async def work() -> lists.CasePage:
        client = await lists.open_list_client(settings)
        return await lists.list_cases(client, filters, page_size=size, page=page)

    found = _run(work)
    if as_json:
        _echo_json(found.as_json())
        return
    for line in lists.case_lines(found):
        typer.echo(line)


@app.command()
def worklist(
    party: Annotated[str, typer.Argument(
        metavar="PARTY", help="The party, e.g. IND (RVDK, IND, DTV, VT, COA, AVIM, GI).")],
    limit: Annotated[str, typer.Option(
        metavar="N", help="Show the first N (of the order over all of them).")
    ] = str(lists.DEFAULT_WORKLIST_LIMIT),
    every: Annotated[bool, typer.Option(
        "--all", help="Show every one (reads every case awaiting PARTY).")] = False,
    as_json: JsonOption = False,
) -> None:
    """What PARTY must send, in which case, by when: overdue first, then by due date, no
    due date last.

    From Temporal's visibility (the running cases awaiting PARTY and their progress
    memo): no worker and no keys needed. An event counts as overdue once its due date has
    passed. --json prints one JSON object: `{"party", "as_of", "cases", "complete",
    "items": [...]}`; `complete` is false when there are more than --limit.
    """
    settings = Settings.from_env()
    wanted = _run_sync(lambda: lists.party(party))
    first = _run_sync(lambda: lists.check_limit(limit))

    async def work() -> lists.Worklist:
        client = await lists.open_list_client(settings)
        return await lists.worklist(client, wanted, limit=None if every else first)

    found = _run(work)
    if as_json:
        _echo_json(found.as_json())
        return
    for line in lists.worklist_lines(found):
        typer.echo(line)


@app.command()
def erase(
    case_ref: CaseRefArgument,
    requested_by: Annotated[str, typer.Option(
        help="Function or staff id of who asks (not a name).")],
    reason: Annotated[ErasureReason, typer.Option(help="Why, from a fixed list.")],
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Erase a case now (crypto-shredding): destroy its data key, so its Temporal history
    and every backup become unreadable, remove its packets, and record the erasure.

    A running case erases itself (the workflow's `erase` update; an open case closes as
    `erased`); a closed case in retention is erased by its retention workflow (its
    `erase` update). For a case whose runs have ended (terminated, or closed before
    retention workflows), the stored data is erased directly. The processing log stays:
    it holds no personal values.

    Exit codes: **0** erased, now or earlier by the same request (same --requested-by
    and --reason: a re-run learns the outcome of a pending one); **1** refused (erased
    already by another request) or an error (e.g. a read-only data dir); **3** pending:
    Temporal holds the request but no worker carried it out within --wait seconds; run
    the same command again to learn the outcome.
    """
    settings = Settings.from_env()
    case_ref = _run_sync(lambda: inputs.check_case_ref(case_ref))
    if reason is ErasureReason.RETENTION_ENDED:
        _fail("--reason: retention-ended is the retention timer's own reason; give why the "
              "case is erased now (art-17-request, art-21-objection, unlawful-processing, "
              "court-order)")
    try:
        request = ErasureRequest(requested_by=requested_by, reason=reason)
    except ValidationError as error:
        _fail(inputs.describe(error))
    store = _outbox(settings)
    for earlier in _run_sync(store.erasures):
        if earlier.case_ref == case_ref:
            _erased_already(ErasedAlready(case_ref, earlier), request)

    async def work() -> Erasure | ErasedAlready | None:
        client = await open_client(settings)
        try:
            return await erase_running_case(client, case_ref, request,
                                            timeout=dt.timedelta(seconds=wait))
        except ErasedAlready as already:
            return already

    erasure = _run(work)
    if isinstance(erasure, ErasedAlready):
        _erased_already(erasure, request)
    if erasure is None:  # no open run: erase what rests in the data dir
        if not _run_sync(lambda: store.keys.has_key(workflow_id(case_ref))):
            _fail(f"case {case_ref}: unknown case (no run, no data in {settings.data_dir})")
        erasure = _run_sync(lambda: store.erase(
            case_ref, reason=request.reason.value, requested_by=request.requested_by,
            at=dt.datetime.now(dt.UTC)))
    typer.echo(f"erased case {case_ref} on {erasure.at:%Y-%m-%d %H:%M} UTC: data key "
               f"{'destroyed' if erasure.key_destroyed else 'already gone'}, "
               f"{erasure.packets_removed} packet(s) removed; reason: {erasure.reason}")


def _erased_already(already: ErasedAlready, request: ErasureRequest) -> NoReturn:
    """An erase of an erased case: done (exit 0) when the record is this very request (a
    re-run after *pending*, exit 3, learns that it was carried out), else refused (exit
    1: the record keeps another requester's or reason's erasure)."""
    if already.is_outcome_of(request):
        assert already.erasure is not None
        typer.echo(f"case {already.case_ref}: erased on {already.erasure.at:%Y-%m-%d %H:%M} "
                   f"UTC by this request ({already.erasure.reason}); nothing left to erase")
        raise typer.Exit(0)
    _fail(str(already))


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print only a JSON summary of the cases on stdout.")] = False,
    ui_port: Annotated[int, typer.Option(
        help="Web UI port of a dev server the demo starts.")] = DEFAULT_UI_PORT,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log at INFO level (stderr).")] = False,
) -> None:
    """Run every example scenario end to end.

    Starts the dev server and a worker when none is running, and stops them afterwards.
    """
    # JSON logs in both modes: the console renderer prints tracebacks with locals.
    configure_logging(json=True, level=logging.INFO if verbose else logging.WARNING)
    settings = Settings.from_env()

    def note(message: str) -> None:
        typer.echo(message, err=True)

    async def work() -> DemoReport:
        # SIGTERM cancels the demo like Ctrl-C does, so that it stops what it started.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_demo(settings, ui_port, note)

    report = _run(work)
    if as_json:
        _echo_json({"cases": [case.summary() for case in report.cases]})
    else:
        _print_demo(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_demo(report: DemoReport) -> None:
    for number, case in enumerate(report.cases, start=1):
        typer.echo("")
        typer.echo(f"[{number}/{len(report.cases)}] {case.title}  ({case.file.name})")
        typer.echo(f"  case ref:  {case.case_ref or '-'}")
        typer.echo(f"  steps:     {', '.join(str(step) for step in case.steps) or '-'}")
        typer.echo(f"  phase:     {case.phase or '-'}   end state: {case.end_state or '-'}")
        typer.echo(f"  result:    {'as expected' if case.as_expected else 'NOT AS EXPECTED'}")
        if case.problem:
            typer.echo(f"  problem:   {case.problem}")
        if case.packets:
            typer.echo("  received (step, sender, items):")
            for line in render.received_lines(case.packets):
                typer.echo(f"    {line}")
    expected = sum(1 for case in report.cases if case.as_expected)
    typer.echo("")
    typer.echo(f"{expected} of {len(report.cases)} cases as expected, "
               f"in {report.seconds:.1f} s")
    if report.started_server:
        typer.echo(f"Browse the cases: run `kbflow server`, then open {report.workflows_url}")
    else:
        typer.echo(f"Browse the cases: {report.workflows_url}")


@app.command("codec-server")
def codec_server_command(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)
                    ] = codec.DEFAULT_PORT,
    host: Annotated[str, typer.Option(
        help="Address to listen on. Keep it on loopback: the tokens travel in plain HTTP "
             "unless TLS is put in front.")] = "127.0.0.1",
    ui_origin: Annotated[list[str] | None, typer.Option(
        "--ui-origin", help="Browser origin of the Temporal Web UI allowed to call "
                            "(repeatable). Default: the dev server's UI, "
                            "http://localhost:8233 and http://127.0.0.1:8233.")] = None,
    show_token: Annotated[bool, typer.Option(
        "--show-token", help="Print the services' (encode-only) codec token in the "
                             "instructions (stderr).")] = False,
) -> None:
    """Run the remote codec server for the Temporal Web UI and the temporal CLI.

    It decrypts payloads with the data keys in the data dir (KBFLOW_DATA_DIR) for an
    operator who presents their own token (`kbflow operator issue`): as `Authorization:
    Bearer <token>` or in the path, `/t/<token>/decode`; each decode is written to the
    processing log (operator, case, time, payload count) before it is answered. No
    token, an unknown or a revoked one gets 401, a foreign browser origin 403; no token
    reaches a log. The services' codec token (KBFLOW_CODEC_TOKEN, or the data dir's
    codec.token) only encodes. A payload of an erased case is not decoded. Stop it with
    Ctrl-C.
    """
    import uvicorn

    settings = Settings.from_env()
    origins = ui_origin or list(codec.DEFAULT_UI_ORIGINS)
    try:
        keys = open_existing(settings)
    except KeyAdminError as error:
        _fail(str(error))
    from_env = settings.codec_token is not None
    token = _run_sync(lambda: codec.load_token(settings))
    operator_store = OperatorStore.open(settings, read_only=True)
    decode_log = _run_sync(lambda: DecodeLog.open(settings))
    endpoint = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    for line in render.codec_server_lines(
            endpoint, None if from_env else settings.codec_token_path,
            token if show_token else None, origins):
        typer.echo(line, err=True)
    if not any(t.revoked_at is None for t in _run_sync(operator_store.tokens)):
        typer.echo("note: no operator has a live token yet, so nothing can be decoded; "
                   "issue one with `kbflow operator issue STAFF-ID`", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: put TLS in front, or the tokens and the "
                   "decoded personal data cross the network in plain text", err=True)
    uvicorn.run(codec.create_app(keys, operator_store, decode_log, origins, token),
                host=host, port=port, log_config=codec.access_log_config(),
                server_header=False)


@app.command("api")
def api_command(
    openapi: Annotated[bool, typer.Option(
        "--openapi", help="Print the OpenAPI document (as committed in api/openapi.json) "
                          "and exit.")] = False,
) -> None:
    """Run the agencies' HTTP API over mutual TLS on KBFLOW_API_ADDRESS (default
    127.0.0.1:8443), with the TLS material and OIN table of KBFLOW_API_TLS_DIR (default
    KBFLOW_DATA_DIR/api-tls; `kbflow certs init` makes a development set).

    Every path but /v1/openapi.json needs a client certificate from ca.crt's CAs whose
    subject serialNumber is an OIN listed in parties.json. Stop it with Ctrl-C.
    """
    from api.app import create_app, openapi_document

    if openapi:
        typer.echo(openapi_document(), nl=False)
        return
    import uvicorn

    from api import fsc, server
    from api.context import ApiContext
    from api.tls import TlsFiles, TlsMaterialError

    configure_logging(json=True)  # as the worker: one JSON line per request, no value
    settings = Settings.from_env()
    files = TlsFiles(settings.api_tls_path)
    try:
        files.check()
        fsc.check_keys(settings.api_fsc_public_keys)  # FSC mode: its keys file usable
        listening = server.listen(settings.api_address)  # a port in use: one line, now
    except (TlsMaterialError, server.ListenError) as error:
        _fail(str(error))
    api_context = _run(lambda: ApiContext.open(settings))
    try:
        config = server.config(create_app(api_context), files, settings.api_address,
                               server_header=False, log_config=None)
    except TlsMaterialError as error:
        _fail(str(error))
    typer.echo(f"kbflow API on https://{settings.api_address}/v1 (OpenAPI: "
               f"{settings.api_base_url}/v1/openapi.json)", err=True)
    uvicorn.Server(config).run(sockets=[listening])


certs_app = typer.Typer(help="TLS material of the agencies' API.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")


@certs_app.command("init")
def certs_init(folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="An empty (or new) folder: where KBFLOW_API_TLS_DIR will "
                          "point.")]) -> None:
    """Make a development CA, the API's server certificate and one client certificate per
    party (fictional OINs in the subject serialNumber), and parties.json: the layout
    KBFLOW_API_TLS_DIR reads. For development only; production uses PKIoverheid."""
    from api.certs import CertsExistError, init_dev_certs

    try:
        files = init_dev_certs(folder)
    except CertsExistError as error:
        _fail(str(error))
    typer.echo(f"wrote {files.ca}, server.crt/.key and <PARTY>.crt/.key for "
               f"{', '.join(p.value for p in Party)}, and parties.json in {folder}")


document_app = typer.Typer(help="Documents sent by reference (`kbflow event --attach`).",
                           no_args_is_help=True)
app.add_typer(document_app, name="document")


@document_app.command("get")
def document_get(
    document_id: Annotated[str, typer.Argument(
        metavar="DOCUMENT_ID", help="The document's id, from the packet that references it "
                                    "(e.g. doc-0123456789abcdef0123456789abcdef).")],
    party: Annotated[Party, typer.Option(
        case_sensitive=False, help="The party reading it: a recipient of a packet that "
                                   "references it, or its uploader.")],
    out: Annotated[Path, typer.Option(
        "--out", metavar="FILE", help="Where to write it (a new file, mode 0600).")],
) -> None:
    """Write a document to FILE for PARTY: only a recipient of a packet that references
    it, or the party that uploaded it, may read it. An erased case's documents are gone.
    Only reads the data dir (the file written is FILE)."""
    settings = Settings.from_env()
    if local_file_missing(settings, settings.outbox_path):
        _fail(f"no outbox at {settings.outbox_path}; is KBFLOW_DATA_DIR the worker's?")
    if out.exists():
        _fail(f"--out {out}: exists already; choose a new file")
    try:
        keys = _run_sync(lambda: data_dir_keys(settings, read_only=True))
    except CaseError as error:
        _fail(str(error))
    documents = DocumentStore(keys, _run_sync(
        lambda: open_store(settings, read_only=True).documents))
    try:
        ref, data = _run_sync(lambda: documents.read(document_id, party))
    except DocumentError as error:
        _fail(str(error))

    def write() -> None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    _run_sync(write)
    typer.echo(f"wrote {out}: {ref.size} bytes, {ref.media_type}, sha256 {ref.sha256}")


operator_app = typer.Typer(
    help="Operators who may decode cases through the codec server: their own tokens, "
         "issued, listed and revoked.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")

OperatorIdArgument = Annotated[str, typer.Argument(
    metavar="OPERATOR_ID", help="The operator's staff or function id (not a name), "
                                "e.g. rvdk-ops-017.")]


@operator_app.command("issue")
def operator_issue(operator_id: OperatorIdArgument) -> None:
    """Issue OPERATOR_ID a codec token of their own and print it, once, on stdout.

    Only its SHA-256 digest is stored (the data dir's operators.sqlite3): it cannot be
    shown again. An operator with a live token is refused: revoke it first. Every decode
    made with the token is on record under OPERATOR_ID (`kbflow disclosures`).
    """
    settings = Settings.from_env()
    try:
        token = _run_sync(lambda: OperatorStore.open(settings).issue(operator_id))
    except OperatorError as error:
        _fail(str(error))
    typer.echo(token)
    typer.echo(f"issued a codec token to {operator_id}; it is shown only now. In the "
               "Web UI's codec server settings use the endpoint "
               f"http://127.0.0.1:{codec.DEFAULT_PORT}/t/<this token>, with the temporal "
               'CLI --codec-auth "Bearer <this token>".', err=True)


@operator_app.command("list")
def operator_list(as_json: JsonOption = False) -> None:
    """List every operator token ever issued: operator id, issued, revoked (never a token).

    Only reads: works on a read-only data dir.
    """
    settings = Settings.from_env()
    tokens = _run_sync(lambda: OperatorStore.open(settings, read_only=True).tokens())
    if as_json:
        _echo_json([token.model_dump(mode="json") for token in tokens])
        return
    if not tokens:
        typer.echo("no operator tokens issued (kbflow operator issue OPERATOR_ID)")
    for token in tokens:
        revoked = (f"revoked {token.revoked_at:%Y-%m-%d %H:%M} UTC" if token.revoked_at
                   else "live")
        typer.echo(f"{token.operator_id}  issued {token.issued_at:%Y-%m-%d %H:%M} UTC  "
                   f"{revoked}")


@operator_app.command("revoke")
def operator_revoke(operator_id: OperatorIdArgument) -> None:
    """Revoke OPERATOR_ID's token: the codec server refuses it (401) from now on.

    Revoking a revoked token again changes nothing (exit 0); an operator never issued a
    token is refused (exit 1).
    """
    settings = Settings.from_env()
    try:
        operator = operators.operator_id(operator_id)
    except OperatorError as error:
        _fail(str(error))
    if local_file_missing(settings, settings.operators_path):
        _fail(f"operator {operator}: no token was ever issued (no {settings.operators_path})")
    try:
        revoked = _run_sync(lambda: OperatorStore.open(settings).revoke(operator_id))
    except OperatorError as error:
        _fail(str(error))
    assert revoked.revoked_at is not None
    typer.echo(f"operator {revoked.operator_id}: token revoked "
               f"{revoked.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@app.command("rotate-master-key")
def rotate_master_key_command() -> None:
    """Add a new master key and rewrap every case's data key with it.

    For master keys in the data dir (master.keys). With KBFLOW_MASTER_KEYS set it
    refuses: put the new key first in that list in your secret store, restart kbflow's
    processes, then run `kbflow rewrap`. Only the wrapped data keys change; no payload,
    packet or history is rewritten. Running workers and codec servers reload master.keys
    when they meet the new key id. With a KMS (KBFLOW_KMS_URL) it asks the KMS to rotate
    the transit key (the token must be allowed to), then rewraps through the KMS.
    """
    settings = Settings.from_env()
    try:
        rotation = rotate_master_key(settings)
    except KeyAdminError as error:
        _fail(str(error))
    if rotation.in_kms:
        key, _, version = rotation.master_key_id.removeprefix("transit:").rpartition(":v")
        typer.echo(f"transit key {key} rotated by the KMS to version {version}; "
                   f"rewrapped {rotation.rewrapped} data key(s)")
        return
    typer.echo(f"new master key {rotation.master_key_id} is current; "
               f"rewrapped {rotation.rewrapped} data key(s)")


@app.command()
def rewrap() -> None:
    """Rewrap every case's data key with the current master key.

    Run it after putting a new master key first in KBFLOW_MASTER_KEYS and restarting
    kbflow's processes, or (with a KMS) after rotating the transit key in the KMS: then
    the KMS rewraps each data key to the key's newest version, and data keys still under
    master keys move into the KMS. Keys already under the current one are left alone.
    """
    settings = Settings.from_env()
    try:
        count = rewrap_data_keys(settings)
    except KeyAdminError as error:
        _fail(str(error))
    typer.echo(f"rewrapped {count} data key(s)")


@app.command("register")
def register_command(as_json: JsonOption = False) -> None:
    """Print the register of processing activities (GDPR art. 30(1)).

    One activity per step and disclosing party of the process table; its id is the
    processing_activity_id every processing-log entry points to.
    """
    entries = processing_register()
    if as_json:
        _echo_json([entry.model_dump(mode="json") for entry in entries])
        return
    for line in render.register_lines(entries):
        typer.echo(line)


@app.command()
def disclosures(
    subject: Annotated[str | None, typer.Option(
        help="The data subject's pseudonymous id (subj-…), as in the processing log.")
    ] = None,
    name: Annotated[str | None, typer.Option(
        help="The data subject's full name (with --date-of-birth).")] = None,
    date_of_birth: Annotated[str | None, typer.Option(
        metavar="YYYY-MM-DD", help="The data subject's date of birth (with --name).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a data subject's access request (GDPR art. 15) from the processing log.

    Lists every disclosure of the subject's data: the organisation that received it, the
    sender, step, purpose, legal basis, items, time and case ref; then which operators
    looked at the subject's cases through the codec server (operator id, time, case,
    payload count); and how long the data is kept. Give --subject, or --name and
    --date-of-birth (turned into the subject's pseudonym with the worker's key). Prints
    item names and staff ids, never personal values.
    """
    settings = Settings.from_env()
    by_person = name is not None or date_of_birth is not None
    if (subject is None) == (not by_person):
        _fail("give --subject, or --name and --date-of-birth")
    if local_file_missing(settings, settings.outbox_path):
        _fail(f"no processing log at {settings.outbox_path}; is KBFLOW_DATA_DIR the "
              "worker's?")
    if subject is not None:
        if not SUBJECT_ID.match(subject):
            _fail("--subject: must be subj- followed by 32 hex characters")
        subject_id = subject
    else:
        subject_id = _subject_of(settings, name, date_of_birth)
    log = _run_sync(lambda: _outbox(settings, read_only=True
                                    ).processing_log(data_subject_id=subject_id))
    cases = sorted({entry.case_ref for entry in log})
    decodes = _run_sync(lambda: DecodeLog.open(settings, read_only=True
                                          ).entries(case_refs=cases))
    answer = access_answer(subject_id, log, decodes=decodes)
    if as_json:
        _echo_json(answer.model_dump(mode="json"))
        return
    for line in render.disclosure_lines(answer):
        typer.echo(line)


def _subject_of(settings: Settings, name: str | None, date_of_birth: str | None) -> str:
    """The pseudonym of the person with ``name`` and ``date_of_birth``; errors never
    repeat either."""
    if name is None or date_of_birth is None:
        _fail("--name and --date-of-birth go together")
    try:
        born = dt.date.fromisoformat(date_of_birth)
    except ValueError:
        _fail("--date-of-birth: must be a date, YYYY-MM-DD")
    if not settings.pseudonym_key and not settings.pseudonym_key_path.is_file():
        _fail(f"no pseudonym key: set {PSEUDONYM_KEY_ENV} or use the worker's "
              "KBFLOW_DATA_DIR")
    try:
        pseudonymise = Pseudonymiser.load(settings)
        return subject_id_of(name, born, pseudonymise)
    except ValidationError:
        _fail("--name: must be 1 to 200 characters")
    except ValueError as error:  # a malformed KBFLOW_PSEUDONYM_KEY
        _fail(str(error))


def _outbox(settings: Settings, *, read_only: bool = False) -> OutboxStore:
    """The worker's outbox store with the data dir's existing keys: never a fresh master
    key (in a wrong KBFLOW_DATA_DIR the command would otherwise make keys no worker knows,
    and ``erase`` would send its update encrypted under them). ``read_only`` opens it
    read-only (creating nothing). Fails with one line."""
    try:
        keys = _run_sync(lambda: open_existing(settings, read_only=read_only))
    except KeyAdminError as error:
        _fail(str(error))
    return _run_sync(lambda: OutboxStore(settings, keys=keys, read_only=read_only))


def _run_sync(check: Callable[[], _T]) -> _T:
    """Run a local check or a local read or write of the data dir; an ``InputError``, an
    unknown event name or a storage fault becomes one line and exit 1."""
    try:
        return check()
    except (inputs.InputError, reference.UnknownEventError) as error:
        _fail(str(error))
    except (StorageError, sqlite3.Error, OSError) as error:
        _fail(_storage_message(error))

