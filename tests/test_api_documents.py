"""Documents by reference through the API (issue 8, point 4; ``api.routes.documents``),
over real mutual TLS, with a real worker on the session's test server sharing the API's
key store and state store.

A case runs to step 4; IND uploads a document, references it in its
``application_rejected`` (checked by ``check_event_documents``, then sent as the CLI
sends it); the packet to DT&V carries the reference; DT&V downloads the same bytes,
other parties get 403; Temporal's history holds only the reference; erasure makes the
document 410. Refused uploads (415, 413 by Content-Length and while streaming, 403, 400)
store nothing.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.worker import Worker

from activities.documents import DocumentStore
from activities.outbox_store import OutboxStore
from api.certs import DEV_OINS, init_dev_certs
from api.context import ApiContext
from api.identity import Caller
from api.problems import ApiProblem
from api.routes.documents import check_event_documents
from api.tls import PartyTable, TlsFiles, own_oin
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow.events import ErasureReason, ErasureRequest
from kbflow.items import DOCUMENT_MAX_BYTES, DocumentRef
from kbflow.process import Party
from kbflow.settings import Settings, workflow_id
from starter.cases import erase_running_case, send_event
from tests import factories as f
from tests.api_harness import ApiEndpoint, serve_api
from tests.test_case_workflow import start_case

#: A fictional scan: a PDF header, a fictional name, and bytes of every value.
SCAN = b"%PDF-1.7\n% overdrachtsdossier Fenna Fictief\n" + bytes(range(256)) * 512


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_dev_certs(tmp_path_factory.mktemp("api-tls"))


@pytest_asyncio.fixture
async def endpoint(tls_files: TlsFiles, tmp_path: Path, client: Client, store: OutboxStore,
                   keys: KeyStore, worker: Worker) -> AsyncIterator[ApiEndpoint]:
    async with serve_api(_context(tls_files, tmp_path, client, store, keys),
                         tls_files) as served:
        yield served


def _context(tls_files: TlsFiles, tmp_path: Path, client: Client, store: OutboxStore,
             keys: KeyStore) -> ApiContext:
    return ApiContext(settings=Settings(data_dir=tmp_path), client=client,
                      parties=PartyTable.load(tls_files.parties), oin=own_oin(tls_files),
                      keys=keys, outbox=store)


async def _announced(client: Client, task_queue: str) -> str:
    """A case in phase ``announced``: IND and DT&V received step 2 (they take part)."""
    handle = await start_case(client, task_queue)
    case_ref = handle.id.removeprefix("kb-case-")
    await send_event(client, case_ref, f.announce().name, f.announce().event)
    return case_ref


def _stored_documents(store: OutboxStore) -> int:
    with sqlite3.connect(store.path) as db:
        return int(db.execute("SELECT count(*) FROM documents").fetchone()[0])


async def _payloads(client: Client, keys: KeyStore, case_ref: str) -> list[bytes]:
    """Every payload of the case's history, decoded with the case's key."""
    history = await client.get_workflow_handle(workflow_id(case_ref)).fetch_history()
    found: list[Payload] = []

    def collect(message: object) -> None:
        if isinstance(message, Payload):
            found.append(message)
            return
        if not hasattr(message, "ListFields"):  # a repeated scalar's item
            return
        for _, value in message.ListFields():
            if hasattr(value, "ListFields"):
                collect(value)
            elif hasattr(value, "values"):  # a map (memo, headers)
                for item in value.values():
                    collect(item)
            elif not isinstance(value, str | bytes | int | float | bool):  # repeated
                for item in value:
                    collect(item)

    for event in history.events:
        collect(event)
    codec = encrypted_data_converter(keys).payload_codec
    assert codec is not None
    decoded = await codec.decode(found)
    return [payload.data for payload in decoded]


async def test_a_document_goes_by_reference_to_the_packets_recipient_only(
        endpoint: ApiEndpoint, client: Client, task_queue: str, store: OutboxStore,
        keys: KeyStore, tls_files: TlsFiles, tmp_path: Path) -> None:
    case_ref = await _announced(client, task_queue)
    async with endpoint.client(Party.IND) as ind:
        uploaded = await ind.post(f"/v1/cases/{case_ref}/documents", content=SCAN,
                                  headers={"Content-Type": "application/pdf"})
    assert uploaded.status_code == 201, uploaded.text
    ref = DocumentRef.model_validate(uploaded.json())
    assert uploaded.headers["Location"] == f"/v1/documents/{ref.document_id}"
    assert (ref.media_type, ref.size, ref.sha256) == (
        "application/pdf", len(SCAN), hashlib.sha256(SCAN).hexdigest())

    # the event references it: checked as the event route checks it, then sent
    rejection = f.rejection().event.model_copy(update={
        "dossier_documents": (f.DOSSIER_DOCUMENTS[0], ref)})
    api = _context(tls_files, tmp_path, client, store, keys)
    ind_caller = Caller(Party.IND, DEV_OINS[Party.IND])
    await check_event_documents(api, ind_caller, case_ref, rejection)  # no problem
    outcome = await send_event(client, case_ref, "application_rejected", rejection)
    assert [packet.recipient for packet in outcome.packets] == [Party.DTV]
    packet = store.packets(case_ref, Party.DTV)[-1]
    assert packet.body["dossier_documents"] == [f.DOSSIER_DOCUMENTS[0],
                                                ref.model_dump(mode="json")]

    async with endpoint.client(Party.DTV) as dtv:
        downloaded = await dtv.get(f"/v1/documents/{ref.document_id}")
    assert downloaded.status_code == 200
    assert downloaded.content == SCAN
    assert downloaded.headers["content-type"] == "application/pdf"
    assert downloaded.headers["ETag"] == f'"{ref.sha256}"'
    digest = base64.b64encode(hashlib.sha256(SCAN).digest()).decode()
    assert downloaded.headers["Digest"] == f"sha-256={digest}"
    assert downloaded.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    async with endpoint.client(Party.IND) as ind:  # the uploader
        assert (await ind.get(f"/v1/documents/{ref.document_id}")).content == SCAN
    for other in (Party.RVDK, Party.VT, Party.COA):  # took part, or not: no packet with it
        async with endpoint.client(other) as party:
            refused = await party.get(f"/v1/documents/{ref.document_id}")
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:kbflow:problem:forbidden"
        assert "only its uploader and the recipients of a packet" in refused.json()["detail"]

    # Temporal's history holds the reference, never the bytes (nor a piece of them)
    payloads = await _payloads(client, keys, case_ref)
    assert any(ref.document_id.encode() in data for data in payloads)  # decoded, readable
    assert not any(SCAN[-4096:] in data or b"%PDF" in data for data in payloads)
    assert max(len(data) for data in payloads) < 64 * 1024

    erasure = await erase_running_case(client, case_ref, ErasureRequest(
        requested_by="RvdK-privacy-01", reason=ErasureReason.ART_17_REQUEST))
    assert erasure is not None and erasure.key_destroyed
    for reader in (Party.DTV, Party.IND):
        async with endpoint.client(reader) as party:
            gone = await party.get(f"/v1/documents/{ref.document_id}")
        assert gone.status_code == 410
        assert gone.json()["type"] == "urn:kbflow:problem:gone"
    assert _stored_documents(store) == 0
    async with endpoint.client(Party.IND) as ind:  # an erased case takes no document
        late = await ind.post(f"/v1/cases/{case_ref}/documents", content=b"x",
                              headers={"Content-Type": "text/plain"})
    assert late.status_code == 410 and late.json()["type"] == "urn:kbflow:problem:gone"


async def test_refused_uploads_store_nothing(endpoint: ApiEndpoint, client: Client,
                                            task_queue: str, store: OutboxStore) -> None:
    case_ref = await _announced(client, task_queue)
    path = f"/v1/cases/{case_ref}/documents"
    async with endpoint.client(Party.IND) as ind:
        html = await ind.post(path, content=b"<html></html>",
                              headers={"Content-Type": "text/html"})
        assert html.status_code == 415
        assert html.json()["type"] == "urn:kbflow:problem:unsupported-media-type"
        assert "application/pdf" in html.json()["detail"]
        none = await ind.post(path, content=b"plain")
        assert none.status_code == 415
        # over the limit, said by Content-Length: refused before anything is read
        over = await ind.post(path, content=b"\0" * (DOCUMENT_MAX_BYTES + 1),
                              headers={"Content-Type": "application/pdf"})
        assert over.status_code == 413
        assert over.json()["type"] == "urn:kbflow:problem:too-large"
        assert over.json()["invalidParams"][0]["name"] == "body"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: found while reading
            for _ in range(DOCUMENT_MAX_BYTES // 65536 + 1):
                yield b"\0" * 65536

        streamed = await ind.post(path, content=chunks(),
                                  headers={"Content-Type": "application/pdf"})
        assert streamed.status_code == 413
        empty = await ind.post(path, content=b"", headers={"Content-Type": "text/plain"})
        assert empty.status_code == 400 and "empty" in empty.json()["detail"]
        # another check character than the ref's own (a ref's last character)
        wrong = "X" if case_ref[-1] != "X" else "W"
        mistyped = await ind.post(f"/v1/cases/{case_ref[:-1]}{wrong}/documents", content=b"x",
                                  headers={"Content-Type": "text/plain"})
        assert mistyped.status_code == 400
    async with endpoint.client(Party.COA) as coa:  # takes no part in this case
        outsider = await coa.post(path, content=b"note", headers={"Content-Type": "text/plain"})
    assert outsider.status_code == 403
    assert outsider.json()["type"] == "urn:kbflow:problem:forbidden"
    assert _stored_documents(store) == 0
    async with endpoint.client(Party.IND) as ind:
        exactly = await ind.post(path, content=b"\x89PNG" + b"\0" * 60,
                                 headers={"Content-Type": "image/png; charset=binary"})
        assert exactly.status_code == 201 and exactly.json()["media_type"] == "image/png"
        unknown = await ind.get("/v1/documents/doc-" + "0" * 32)
        assert unknown.status_code == 404 and unknown.json()["type"] == (
            "urn:kbflow:problem:not-found")
        malformed = await ind.get("/v1/documents/not-a-document-id")
        assert malformed.status_code == 400
    assert _stored_documents(store) == 1


async def test_an_event_may_reference_only_its_senders_documents_of_its_case(
        endpoint: ApiEndpoint, client: Client, task_queue: str, store: OutboxStore,
        keys: KeyStore, tls_files: TlsFiles, tmp_path: Path) -> None:
    case_ref = await _announced(client, task_queue)
    other_case = await _announced(client, task_queue)
    documents = DocumentStore.of(store)
    mine = documents.upload(case_ref, b"scan one", "text/plain", uploader=Party.IND,
                            uploader_oin=DEV_OINS[Party.IND])
    dtvs = documents.upload(case_ref, b"scan two", "text/plain", uploader=Party.DTV)
    elsewhere = documents.upload(other_case, b"scan three", "text/plain", uploader=Party.IND)
    body = f.rejection().event.model_copy(update={"dossier_documents": (
        mine, dtvs, elsewhere, mine.model_copy(update={"size": 9}),
        mine.model_copy(update={"sha256": "0" * 64}),
        DocumentRef(document_id="doc-" + "1" * 32, media_type="text/plain", size=1,
                    sha256="0" * 64))})
    api = _context(tls_files, tmp_path, client, store, keys)
    before = len(store.packets(case_ref))
    with pytest.raises(ApiProblem) as refused:
        await check_event_documents(api, Caller(Party.IND, DEV_OINS[Party.IND]), case_ref,
                                    body)
    assert refused.value.kind.status == 400
    assert [(p.name, p.reason) for p in refused.value.invalid_params] == [
        ("dossier_documents[1].document_id", "not uploaded by the sender (IND); a sender "
         "references only documents it uploaded"),
        ("dossier_documents[2].document_id", "no document of this case has this id (upload "
         "it first)"),
        ("dossier_documents[3].size", "differs from the uploaded document's"),
        ("dossier_documents[4].sha256", "differs from the uploaded document's"),
        ("dossier_documents[5].document_id", "no document of this case has this id (upload "
         "it first)"),
    ]
    # another GI-like organisation of the same party, by OIN: not the uploader
    with pytest.raises(ApiProblem):
        await check_event_documents(api, Caller(Party.IND, "0" * 20), case_ref,
                                    body.model_copy(update={"dossier_documents": (mine,)}))
    assert len(store.packets(case_ref)) == before  # nothing was sent
