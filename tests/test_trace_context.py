"""W3C Trace Context from the caller to the processing log (issue 8, point 7).

``kbflow.trace`` parses and makes ``traceparent``; ``workflows.trace_context`` carries the
current trace from a start or update through a Temporal header to the activities it
schedules; ``api.trace`` makes each API request a span and answers its ``traceparent``.
End to end: the packets' processing-log entries carry the caller's trace id, and their
parent span is the span kbflow answered (the API's) or made (the CLI's).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
from fastapi import APIRouter, FastAPI
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Worker

from activities.outbox_store import OutboxStore
from api.certs import init_dev_certs
from api.context import ApiContext, ContextDep
from api.tls import PartyTable, TlsFiles, own_oin
from encryption.codec import ENCODING, CaseCodec, PublicPayloadConverter
from encryption.keys import KeyStore, KeyUnavailable
from kbflow import trace
from kbflow.case import EventOutcome
from kbflow.process import Party, Step
from kbflow.processing_log import ProcessingLogEntry
from kbflow.settings import Settings, workflow_id
from starter.cases import send_event
from tests import api_harness
from tests import factories as f
from tests.test_case_workflow import plausible, settled
from worker import build_worker
from workflows.case_workflow import CaseWorkflow
from workflows.trace_context import HEADER, TraceContextClient, from_headers

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


# ---- kbflow.trace: parse and make --------------------------------------------------------

def test_a_valid_traceparent_is_parsed() -> None:
    parsed = trace.parse(f"00-{TRACE_ID}-{PARENT_ID}-01")
    assert parsed == trace.TraceParent(TRACE_ID, PARENT_ID, "01")


@pytest.mark.parametrize("value", [
    "", "garbage", f"00-{TRACE_ID}-{PARENT_ID}",                    # too few fields
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",                       # upper-case hex
    f"00-{'0' * 32}-{PARENT_ID}-01",                               # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",                                # all-zero parent id
    f"ff-{TRACE_ID}-{PARENT_ID}-01",                               # version ff
    f"00-{TRACE_ID}-{PARENT_ID}-01-extra",                         # version 00 is 55 chars
    f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",                          # short trace id
    f"00-{TRACE_ID}-{PARENT_ID}-1",                                # short flags
    f"01-{TRACE_ID}-{PARENT_ID}-01x",                              # later version, no dash
])
def test_a_malformed_traceparent_is_ignored(value: str) -> None:
    assert trace.parse(value) is None


def test_a_later_version_is_read_by_its_first_fields() -> None:
    parsed = trace.parse(f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-adds")
    assert parsed == trace.TraceParent(TRACE_ID, PARENT_ID, "01")


def test_kbflow_makes_its_own_span_in_the_callers_trace() -> None:
    context = trace.TraceContext.start(trace.parse(f"00-{TRACE_ID}-{PARENT_ID}-00"))
    assert context.trace_id == TRACE_ID
    assert context.span_id != PARENT_ID and len(context.span_id) == 16
    assert context.traceparent == f"00-{TRACE_ID}-{context.span_id}-01"  # never sampled out
    fresh = trace.TraceContext.start()
    assert trace.parse(fresh.traceparent) is not None and fresh.trace_id != TRACE_ID


def test_an_fsc_transaction_id_is_the_trace_id_when_no_traceparent_came() -> None:
    transaction = "01890a5d-ac96-774b-bcce-b302099a8057"  # a UUIDv7
    assert trace.transaction_id(transaction.upper()) == transaction
    context = trace.TraceContext.start(None, transaction)
    assert context.trace_id == uuid.UUID(transaction).hex
    assert context.fsc_transaction_id == transaction
    both = trace.TraceContext.start(trace.parse(f"00-{TRACE_ID}-{PARENT_ID}-01"), transaction)
    assert both.trace_id == TRACE_ID and both.fsc_transaction_id == transaction
    for not_v7 in (str(uuid.uuid4()), "not-a-uuid", "01890a5d"):
        assert trace.transaction_id(not_v7) is None


# ---- the header: plaintext, public, ignored when malformed --------------------------------

async def test_the_header_payload_stays_plaintext_through_the_codec(keys: KeyStore) -> None:
    context = trace.TraceContext.start(None, "01890a5d-ac96-774b-bcce-b302099a8057")
    payload = PublicPayloadConverter().to_payloads([trace.TraceHeader.of(context)])[0]
    [encoded] = await CaseCodec(keys, "kb-case-KB-2026-7K4M2XCH-R").encode([payload])
    assert encoded.metadata["encoding"] == b"json/plain" != ENCODING
    assert json.loads(encoded.data) == {"traceparent": context.traceparent,
                                        "fsc_transaction_id": context.fsc_transaction_id}
    assert from_headers({HEADER: encoded}, PublicPayloadConverter()) == context


async def test_the_header_needs_no_key(keys: KeyStore) -> None:
    """``kbflow event`` runs on a read-only data dir that may hold no system key: the
    client encodes headers without a workflow's context (the system scope)."""
    class NoKeys:
        def key_for_scope(self, scope: str) -> tuple[str, bytes]:
            raise KeyUnavailable(f"no key for {scope}")

    payload = PublicPayloadConverter().to_payloads([trace.TraceHeader.of(
        trace.TraceContext.start())])[0]
    [encoded] = await CaseCodec(NoKeys()).encode([payload])  # type: ignore[arg-type]
    assert encoded.metadata["encoding"] == b"json/plain"
    secret = PublicPayloadConverter().to_payloads(["Fenna Fictief"])[0]
    with pytest.raises(KeyUnavailable):  # anything else still needs its key
        await CaseCodec(NoKeys()).encode([payload, secret])  # type: ignore[arg-type]


def test_a_header_that_is_no_trace_header_is_ignored() -> None:
    converter = PublicPayloadConverter()
    for value in ({"traceparent": "Fenna Fictief"}, "00-x", 42,
                  {"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"}):
        [payload] = converter.to_payloads([value])
        assert from_headers({HEADER: payload}, converter) is None
    assert from_headers({HEADER: Payload(metadata={"encoding": b"json/plain"}, data=b"{")},
                        converter) is None
    assert from_headers({}, converter) is None


# ---- through Temporal -------------------------------------------------------------------

def traced(client: Client) -> Client:
    """``client`` as ``worker.connect`` makes it: trace interceptor, headers through the
    codec."""
    config = client.config()
    config["interceptors"] = [TraceContextClient()]
    config["header_codec_behavior"] = HeaderCodecBehavior.CODEC
    return Client(**config)


@pytest_asyncio.fixture
async def traced_worker(client: Client, task_queue: str, store: OutboxStore
                        ) -> AsyncIterator[Worker]:
    from tests.conftest import terminate_open_workflows

    running = build_worker(traced(client), task_queue, store)
    async with running:
        yield running
        await terminate_open_workflows(client)


def entries_of(store: OutboxStore, case_ref: str, step: Step) -> list[ProcessingLogEntry]:
    found = [entry for entry in store.processing_log(case_ref) if entry.step is step]
    assert found and all(isinstance(entry, ProcessingLogEntry) for entry in found)
    return found  # type: ignore[return-value]


async def test_a_start_and_an_event_carry_their_traces_into_the_processing_log(
        client: Client, task_queue: str, store: OutboxStore, traced_worker: Worker) -> None:
    kbflow = traced(client)
    start = await plausible(client, f.case_start())
    started = trace.TraceContext.start()
    with trace.use(started):
        handle = await kbflow.start_workflow(CaseWorkflow.run, start,
                                             id=workflow_id(start.case_ref),
                                             task_queue=task_queue)
    await settled(handle)
    sent = trace.TraceContext.start(trace.parse(f"00-{TRACE_ID}-{PARENT_ID}-01"))
    with trace.use(sent):
        outcome = await send_event(kbflow, start.case_ref, "announce_investigation",
                                   f.announce().event)
    assert isinstance(outcome, EventOutcome) and outcome.packets

    reported = entries_of(store, start.case_ref, Step.REPORT)
    assert {(e.trace_id, e.parent_span_id) for e in reported} == {
        (started.trace_id, started.span_id)}
    announced = entries_of(store, start.case_ref, Step.ANNOUNCE_INVESTIGATION)
    assert {(e.trace_id, e.parent_span_id) for e in announced} == {(TRACE_ID, sent.span_id)}
    spans = [e.span_id for e in reported + announced]
    assert len(set(spans)) == len(spans)  # each entry its own span

    # In history the header is plaintext public JSON on the update and on each delivery.
    history = (await handle.fetch_history()).events
    scheduled = [e.activity_task_scheduled_event_attributes for e in history
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    headers = [a.header.fields[HEADER] for a in scheduled if HEADER in a.header.fields]
    assert len(headers) == len(scheduled)  # every delivery carries one
    for payload in headers:
        assert payload.metadata["encoding"] == b"json/plain"
        assert set(json.loads(payload.data)) == {"traceparent", "fsc_transaction_id"}
    assert any(TRACE_ID.encode() in payload.data for payload in headers)


async def test_deliveries_without_a_trace_start_one_each(
        client: Client, task_queue: str, store: OutboxStore, traced_worker: Worker) -> None:
    start = await plausible(client, f.case_start())
    handle = await traced(client).start_workflow(  # no trace current
        CaseWorkflow.run, start, id=workflow_id(start.case_ref), task_queue=task_queue)
    await settled(handle)
    await send_event(traced(client), start.case_ref, "announce_investigation",
                     f.announce().event)
    reported = entries_of(store, start.case_ref, Step.REPORT)
    announced = entries_of(store, start.case_ref, Step.ANNOUNCE_INVESTIGATION)
    traces = {(e.trace_id, e.parent_span_id) for e in reported} | {
        (e.trace_id, e.parent_span_id) for e in announced}
    # Per packet one new trace with its delivery span as the entries' parent.
    packets = {e.packet_id for e in reported + announced}
    assert len(traces) == len(packets)
    assert all(parent is not None for _, parent in traces)


# ---- the API: each request a span ----------------------------------------------------------

_probe = APIRouter()


@_probe.post("/trace-probe/{caseRef}")
async def _send_announcement(caseRef: str, api: ContextDep) -> dict[str, Any]:
    """A test-only route (part A's event routes are built elsewhere): sends an
    announcement to the case as the API's routes do, in the request's context."""
    outcome = await send_event(api.client, caseRef, "announce_investigation",
                               f.announce().event)
    current = trace.current()
    return {"packets": len(outcome.packets),
            "current": None if current is None else current.traceparent,
            "logged_trace_id": structlog.contextvars.get_contextvars().get("trace_id")}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_dev_certs(tmp_path_factory.mktemp("api-tls"))


@pytest_asyncio.fixture
async def endpoint(client: Client, store: OutboxStore, keys: KeyStore, tls_files: TlsFiles,
                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                   ) -> AsyncIterator[api_harness.ApiEndpoint]:
    create_app = api_harness.create_app

    def with_probe(api_context: ApiContext | None) -> FastAPI:
        app = create_app(api_context)
        app.include_router(_probe, prefix="/v1")
        return app

    monkeypatch.setattr(api_harness, "create_app", with_probe)
    api_context = ApiContext(settings=Settings(data_dir=tmp_path), client=traced(client),
                             parties=PartyTable.load(tls_files.parties),
                             oin=own_oin(tls_files), keys=keys, outbox=store)
    async with api_harness.serve_api(api_context, tls_files) as served:
        yield served


async def test_the_api_answers_its_own_span_in_the_callers_trace(
        endpoint: api_harness.ApiEndpoint) -> None:
    async with endpoint.client(Party.IND) as ind:
        given = await ind.get("/v1/cases/KB-2026-7K4M2XCH-R",
                              headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        malformed = await ind.get("/v1/cases/KB-2026-7K4M2XCH-R",
                                  headers={"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"})
        none = await ind.get("/v1/cases/KB-2026-7K4M2XCH-R")
        fsc_only = await ind.get("/v1/cases/KB-2026-7K4M2XCH-R", headers={
            "Fsc-Transaction-Id": "01890a5d-ac96-774b-bcce-b302099a8057"})
    answered = trace.parse(given.headers["traceparent"])
    assert answered is not None and answered.trace_id == TRACE_ID
    assert answered.parent_id != PARENT_ID  # kbflow's span, not the caller's
    for response in (malformed, none):  # a new trace each
        started = trace.parse(response.headers["traceparent"])
        assert started is not None and started.trace_id not in (TRACE_ID, "0" * 32)
    assert given.headers["content-type"] == "application/problem+json"  # a problem, too
    from_fsc = trace.parse(fsc_only.headers["traceparent"])
    assert from_fsc is not None and from_fsc.trace_id == "01890a5dac96774bbcceb302099a8057"


async def test_an_event_through_the_api_is_logged_under_the_apis_span(
        endpoint: api_harness.ApiEndpoint, client: Client, task_queue: str,
        store: OutboxStore, traced_worker: Worker) -> None:
    start = await plausible(client, f.case_start())
    handle = await client.start_workflow(CaseWorkflow.run, start,
                                         id=workflow_id(start.case_ref), task_queue=task_queue)
    await settled(handle)
    transaction = "01890a5d-ac96-774b-bcce-b302099a8057"
    async with endpoint.client(Party.RVDK) as rvdk:
        response = await rvdk.post(f"/v1/trace-probe/{start.case_ref}", headers={
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
            "Fsc-Transaction-Id": transaction})
    assert response.status_code == 200, response.text
    api_span = trace.parse(response.headers["traceparent"])
    assert api_span is not None and response.json()["current"] == response.headers[
        "traceparent"]
    assert response.json()["logged_trace_id"] == TRACE_ID  # the API's log lines carry it
    announced = entries_of(store, start.case_ref, Step.ANNOUNCE_INVESTIGATION)
    assert len(announced) == len(f.PERSONS) * response.json()["packets"]
    for entry in announced:
        assert (entry.trace_id, entry.parent_span_id) == (TRACE_ID, api_span.parent_id)
        assert entry.attributes.fsc_transaction_id == transaction


# ---- the CLI: kbflow start and kbflow event each make a new trace --------------------------

class _Captured(Exception):
    pass


def test_kbflow_start_and_event_run_in_a_new_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal is replaced at the two calls the commands make (``start_case``,
    ``send_event``): each sees a trace of its own that no caller gave."""
    from typer.testing import CliRunner

    import starter.cli as cli
    from starter.cases import CaseError

    seen: list[trace.TraceContext | None] = []

    async def capture(*args: Any, **kwargs: Any) -> Any:
        seen.append(trace.current())
        raise CaseError("captured")

    async def no_temporal(*args: Any, **kwargs: Any) -> Any:
        return object()

    class Keys:
        def has_key(self, scope: str) -> bool:
            return True

    monkeypatch.setattr(cli, "start_case", capture)
    monkeypatch.setattr(cli, "send_event", capture)
    monkeypatch.setattr(cli, "open_client", no_temporal)
    monkeypatch.setattr(cli, "data_dir_keys", lambda *args, **kwargs: Keys())
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(cli.reference.template("case")), encoding="utf-8")
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(cli.reference.template("announce_investigation")),
                          encoding="utf-8")
    env = {"KBFLOW_DATA_DIR": str(tmp_path), "KBFLOW_PSEUDONYM_KEY": "ab" * 32}
    runner = CliRunner()
    started = runner.invoke(cli.app, ["start", str(case_file)], env=env)
    sent = runner.invoke(cli.app, ["event", "KB-2026-7K4M2XCH-R", "announce_investigation",
                                   str(event_file)], env=env)
    assert (started.exit_code, sent.exit_code) == (1, 1), (started.output, sent.output)
    assert "captured" in started.stderr and "captured" in sent.stderr
    assert len(seen) == 2 and None not in seen
    assert seen[0].trace_id != seen[1].trace_id  # type: ignore[union-attr]
    assert trace.current() is None  # nothing left behind
