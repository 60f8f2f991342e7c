"""Documents by reference (issue 8, point 4): the models (``kbflow.items.DocumentRef``
and the text-or-document unions), finding and attaching references
(``kbflow.documents``), and the command line end to end on the real Temporal dev server:
``kbflow event … --attach FIELD=PATH`` and ``kbflow document get``.

The CLI runs as subprocesses of the installed script; the worker runs in this process
on the CLI's data dir (as in ``tests/test_cli.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment

from activities.documents import MediaTypeRefused, check_media_type
from activities.outbox_store import OutboxStore
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow.documents import ATTACHABLE, AttachError, attach, document_ids, document_refs
from kbflow.errors import describe
from kbflow.events import AdviceRequest, ApplicationRejected, CourtRulingEvent
from kbflow.items import DOCUMENT_MAX_BYTES, DOCUMENT_MEDIA_TYPES, DocumentRef, VvApplication
from kbflow.packets import project_packet
from kbflow.process import Party, Step
from kbflow.record import CaseRecord
from kbflow.scenario import EXAMPLES_DIR, Scenario
from kbflow.settings import Settings, workflow_id
from tests import factories as f
from worker import build_worker, connect

KBFLOW = Path(sys.executable).parent / "kbflow"
CLI_TIMEOUT = 120
REF = DocumentRef(document_id="doc-" + "ab" * 16, media_type="application/pdf", size=1234,
                  sha256="cd" * 32)


# ---- the models -----------------------------------------------------------------------------

def test_a_text_stays_a_text_and_an_object_is_a_document_reference() -> None:
    # what committed histories hold (texts) decodes as before; an object is a DocumentRef
    body = ApplicationRejected.model_validate({
        "sender": "IND", "idempotency_key": "ind-rejection-0001", "decision": "rejection",
        "procedure_history": "Afgewezen.", "dossier_documents": [
            "beschikking-fictief-001.pdf", REF.model_dump(mode="json")]})
    assert body.dossier_documents == ("beschikking-fictief-001.pdf", REF)
    application = VvApplication.model_validate({"kind": "first", "filed_on": "2026-10-01",
                                                "document": REF.model_dump(mode="json")})
    assert application.document == REF
    assert VvApplication(kind="first", filed_on=dt.date(2026, 10, 1),
                         document="VV-aanvraag Fictief").document == "VV-aanvraag Fictief"


def test_a_bad_reference_is_refused_naming_its_fields_never_a_value() -> None:
    with pytest.raises(ValidationError) as error:
        AdviceRequest.model_validate({
            "sender": "IND", "idempotency_key": "ind-advice-0001",
            "vv_application": {"kind": "first", "filed_on": "2026-10-01", "document": {
                "document_id": "Fenna-Fictief", "media_type": "text/html", "size": 0,
                "sha256": "xyz"}},
            "rvdk_report": {**REF.model_dump(mode="json"), "name": "Fenna Fictief"}})
    assert "Fenna" not in str(error.value)
    said = describe(error.value, AdviceRequest)
    assert "vv_application.document.document_id: must be a string matching" in said
    assert "vv_application.document.media_type: must be one of" in said
    assert "vv_application.document.size" in said and "rvdk_report.name: unknown field" in said
    assert DOCUMENT_MAX_BYTES == 32 * 1024 * 1024 and "application/pdf" in DOCUMENT_MEDIA_TYPES


def test_the_references_of_a_body_are_found_by_path() -> None:
    ruling = CourtRulingEvent.model_validate({
        **f.ruling().event.model_dump(mode="json", exclude_none=True),
        "document": REF.model_dump(mode="json")})
    assert list(document_refs(ruling)) == [("document", REF)]
    other = REF.model_copy(update={"document_id": "doc-" + "ef" * 16})
    body = {"persons": [], "dossier_documents": ["a", REF.model_dump(mode="json"),
                                                 other.model_dump(mode="json")],
            "court_ruling": {"summary": "x", "document": REF.model_dump(mode="json")}}
    assert [path for path, _ in document_refs(body)] == [
        "dossier_documents[1]", "dossier_documents[2]", "court_ruling.document"]
    assert document_ids(body) == (REF.document_id, other.document_id)  # each once


def test_a_packet_carries_the_references_it_is_projected_with() -> None:
    record = f.full_record().model_copy(update={"rvdk_report": REF, "gi_report": "Tekst."})
    packet = project_packet(record, Step.EXTENSION_ADVICE_REQUEST, Party.IND, Party.DTV,
                            packet_id="p-1",
                            created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    assert packet.body["rvdk_report"] == REF.model_dump(mode="json")
    assert packet.body["gi_report"] == "Tekst."
    assert document_ids(packet.body) == (REF.document_id,)


def test_a_record_with_references_survives_continue_as_new() -> None:
    record = f.full_record().model_copy(update={
        "dossier_documents": ("beschikking-fictief-001.pdf", REF), "gi_report": REF,
        "court_ruling": f.full_record().court_ruling.model_copy(  # type: ignore[union-attr]
            update={"document": REF})})
    again = CaseRecord.model_validate_json(record.model_dump_json())
    assert again == record and again.gi_report == REF
    assert again.court_ruling is not None and again.court_ruling.document == REF


def test_a_refused_media_type_is_never_repeated() -> None:
    """A header can hold anything a caller typed, also something shaped like a media type
    (``Fenna/Fictief``)."""
    for typed in ("text/html; charset=utf-8", "Fenna/Fictief", "Fenna Fictief, Verzinsellaan 3"):
        with pytest.raises(MediaTypeRefused, match="media type: the one given is not "
                                                   "allowed") as error:
            check_media_type(typed)
        assert "html" not in str(error.value) and "Fenna" not in str(error.value)
    with pytest.raises(MediaTypeRefused, match="media type: none given is not allowed"):
        check_media_type("")
    assert check_media_type("Application/PDF; x=1") == "application/pdf"


def test_attach_appends_to_a_list_and_sets_a_field() -> None:
    body = {"dossier_documents": ["a"], "vv_application": {"kind": "first"}}
    attached = attach(attach(body, "dossier_documents", REF), "vv_application.document", REF)
    assert attached["dossier_documents"] == ["a", REF.model_dump(mode="json")]
    assert attached["vv_application"] == {"kind": "first", "document": REF.model_dump(
        mode="json")}
    assert body == {"dossier_documents": ["a"], "vv_application": {"kind": "first"}}
    assert attach({}, "dossier_documents", REF) == {"dossier_documents": [
        REF.model_dump(mode="json")]}
    with pytest.raises(AttachError, match="summary: no field that holds a document"):
        attach(body, "summary", REF)
    with pytest.raises(AttachError, match="is not an array"):
        attach({"dossier_documents": "a"}, "dossier_documents", REF)
    assert set(ATTACHABLE) == {"dossier_documents", "vv_application.document", "rvdk_report",
                               "gi_report", "document"}


# ---- the command line, end to end -----------------------------------------------------------

@dataclass
class Cli:
    env: dict[str, str]
    data_dir: Path

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [str(KBFLOW), *args], env=self.env, capture_output=True,
            text=True, timeout=CLI_TIMEOUT, check=False)


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def _documents_stored(store: OutboxStore) -> int:
    with sqlite3.connect(store.path) as db:
        return int(db.execute("SELECT count(*) FROM documents").fetchone()[0])


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


async def _history_payloads(dev_server: WorkflowEnvironment, keys: KeyStore,
                            case_ref: str) -> list[bytes]:
    """Every payload of the case's history, decoded with the case's key."""
    history = await dev_server.client.get_workflow_handle(workflow_id(case_ref)).fetch_history()
    found: list[Payload] = []

    def collect(message: object) -> None:
        if isinstance(message, Payload):
            found.append(message)
        elif hasattr(message, "ListFields"):
            for _, value in message.ListFields():
                if hasattr(value, "ListFields"):
                    collect(value)
                elif hasattr(value, "values"):
                    for item in value.values():
                        collect(item)
                elif not isinstance(value, str | bytes | int | float | bool):
                    for item in value:
                        collect(item)

    for event in history.events:
        collect(event)
    codec = encrypted_data_converter(keys).payload_codec
    assert codec is not None
    return [payload.data for payload in await codec.decode(found)]


async def test_documents_through_the_cli(dev_server: WorkflowEnvironment,
                                         tmp_path: Path) -> None:
    task_queue = f"kbflow-docs-{uuid.uuid4()}"
    data_dir = tmp_path / "data"
    keys = KeyStore.open(Settings(data_dir=data_dir))
    env = {**os.environ,
           "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
           "TEMPORAL_NAMESPACE": dev_server.client.namespace,
           "KBFLOW_TASK_QUEUE": task_queue, "KBFLOW_DATA_DIR": str(data_dir)}
    cli = Cli(env, data_dir)
    scenario = Scenario.load(EXAMPLES_DIR / "03_ots_advice_requested.json")
    ruling_pdf = tmp_path / "beschikking.pdf"
    ruling_pdf.write_bytes(b"%PDF-1.7\n% beschikking OTS Fenna Fictief\n" + os.urandom(70000))
    application = tmp_path / "vv-aanvraag.odt"
    application.write_bytes(b"PK\x03\x04 vv-aanvraag Fictief " + os.urandom(5000))
    report = tmp_path / "raadsrapport.txt"
    report.write_text("Raadsrapport Fictief: OTS gevraagd.\n", encoding="utf-8")
    settings = Settings(temporal_address=env["TEMPORAL_ADDRESS"],
                        namespace=env["TEMPORAL_NAMESPACE"], data_dir=data_dir)
    store = OutboxStore(settings)
    client = await connect(settings)
    async with build_worker(client, task_queue, store):
        started = await cli("start", str(_write(tmp_path / "case.json", scenario.case)))
        assert started.returncode == 0, started.stderr
        match = re.search(r"started case (KB-\S+)$", started.stdout, re.MULTILINE)
        assert match, started.stdout
        ref = match.group(1)
        files = {item.body["idempotency_key"]: (item.event, _write(
            tmp_path / f"{index:02d}.json", item.body))
            for index, item in enumerate(scenario.events)}
        for key in ("rvdk-announce-0003", "ind-residence-0003", "dtv-residence-0003",
                    "rvdk-decision-0003", "rvdk-result-0003"):
            sent = await cli("event", ref, *map(str, files[key]))
            assert sent.returncode == 0, sent.stderr
        # bad attachments: one line each, before anything is stored or sent
        ruling = files["rvdk-ruling-0003"]
        wrong_field = _one_line_error(await cli("event", ref, *map(str, ruling),
                                                "--attach", f"summary={ruling_pdf}"))
        assert "--attach summary: no field that holds a document" in wrong_field
        exe = tmp_path / "scan.exe"
        exe.write_bytes(b"MZ")
        wrong_type = _one_line_error(await cli("event", ref, *map(str, ruling),
                                               "--attach", f"document={exe}"))
        assert "the suffix .exe names no allowed media type" in wrong_type
        missing = _one_line_error(await cli("event", ref, *map(str, ruling), "--attach",
                                            f"document={tmp_path / 'absent.pdf'}"))
        assert missing.endswith("absent.pdf: no such file")
        # another sender's document may not be referenced (checked before Temporal)
        available = json.loads(files["ind-advice-request-0003"][1].read_text())
        foreign = {**json.loads(ruling[1].read_text()),
                   "document": REF.model_dump(mode="json")}
        refused = _one_line_error(await cli("event", ref, "court_ruling",
                                            str(_write(tmp_path / "foreign.json", foreign))))
        assert "document.document_id: no document of this case has this id" in refused
        assert _documents_stored(store) == 0

        # the ruling, attached: stored under the case's key, the packets carry its ref
        done = await cli("event", ref, *map(str, ruling), "--attach", f"document={ruling_pdf}")
        assert done.returncode == 0, done.stderr
        to_ind = [p for p in store.packets(ref, Party.IND) if p.step == Step.COURT_RULING]
        document = to_ind[0].body["court_ruling"]["document"]
        assert document["media_type"] == "application/pdf"
        assert document["size"] == ruling_pdf.stat().st_size
        assert document["sha256"] == hashlib.sha256(ruling_pdf.read_bytes()).hexdigest()

        for key in ("ind-availability-0003", "dtv-availability-0003"):
            sent = await cli("event", ref, *map(str, files[key]))
            assert sent.returncode == 0, sent.stderr
        # step 8: the VV application and the RvdK report as documents (two --attach)
        del available["rvdk_report"]
        done = await cli("event", ref, "advice_request",
                         str(_write(tmp_path / "advice.json", available)),
                         "--attach", f"vv_application.document={application}",
                         "--attach", f"rvdk_report={report}")
        assert done.returncode == 0, done.stderr
        stored = _documents_stored(store)
        again = await cli("event", ref, "advice_request", str(tmp_path / "advice.json"),
                          "--attach", f"vv_application.document={application}",
                          "--attach", f"rvdk_report={report}")
        assert (again.returncode, again.stdout) == (0, done.stdout)  # the first outcome
        assert _documents_stored(store) == stored == 3
        request = next(p for p in store.packets(ref, Party.DTV)
                       if p.step == Step.ADVICE_REQUEST)
        assert request.body["vv_application"]["document"]["media_type"] == (
            "application/vnd.oasis.opendocument.text")
        assert request.body["rvdk_report"]["media_type"] == "text/plain"
        assert request.body["court_ruling"]["document"] == document  # step 8 carries it

        # the recipient gets the same bytes; a party with no packet referencing it, not
        out = tmp_path / "got.pdf"
        got = await cli("document", "get", document["document_id"], "--party", "IND",
                        "--out", str(out))
        assert got.returncode == 0, got.stderr
        assert out.read_bytes() == ruling_pdf.read_bytes()
        assert out.stat().st_mode & 0o777 == 0o600
        assert got.stdout.startswith(f"wrote {out}: {ruling_pdf.stat().st_size} bytes")
        app_out = tmp_path / "got.odt"
        got = await cli("document", "get", request.body["vv_application"]["document"][
            "document_id"], "--party", "DTV", "--out", str(app_out))
        assert got.returncode == 0 and app_out.read_bytes() == application.read_bytes()
        denied = _one_line_error(await cli("document", "get", document["document_id"],
                                           "--party", "VT", "--out", str(tmp_path / "vt")))
        assert "VT may not read it" in denied and not (tmp_path / "vt").exists()

        # Temporal's history holds only the references
        payloads = await _history_payloads(dev_server, keys, ref)
        assert any(document["document_id"].encode() in data for data in payloads)
        for original in (ruling_pdf, application):
            assert not any(original.read_bytes()[-2048:] in data for data in payloads)
        assert not any(b"%PDF" in data for data in payloads)

        # erasure shreds them with the case
        erased = await cli("erase", ref, "--requested-by", "RvdK-privacy-01",
                           "--reason", "art-17-request")
        assert erased.returncode == 0, erased.stderr
        gone = _one_line_error(await cli("document", "get", document["document_id"],
                                         "--party", "IND", "--out", str(tmp_path / "late")))
        assert "its case was erased" in gone


def test_the_readmes_documents_section_says_what_the_code_does() -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Documents by reference"):text.index("### Event reference")]
    assert all(f"`{media_type}`" in section for media_type in DOCUMENT_MEDIA_TYPES)
    assert "at most 32 MiB (`DOCUMENT_MAX_BYTES`" in section
    assert DOCUMENT_MAX_BYTES == 32 * 1024 * 1024
    assert all(f"`{field}`" in section for field in ATTACHABLE)
    openapi = json.loads((root / "api" / "openapi.json").read_text(encoding="utf-8"))
    for path in ("/v1/cases/{caseRef}/documents", "/v1/documents/{documentId}"):
        assert f"`POST {path}`" in section or f"`GET {path}`" in section
        assert path in openapi["paths"]
    assert "#### Object `document`" in text  # the reference's fields, in the event reference
    for name in re.findall(r"`(tests/[a-z_]+\.py)`", section):
        assert (root / name).is_file()
