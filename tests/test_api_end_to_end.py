"""Issue 8's end to end: three parties, each with its own certificate, drive an OTS case
from the report to the warm handover through the API alone, documents included; each
(and the GI the ruling names) gets its notifications and reads its inbox; a certificate
of an unknown CA is refused at the handshake; a party acting outside its rights gets 403;
and the processing log carries each request's trace.

IND reports (an urgent report, step 1), the RvdK announces and decides, IND and DT&V
answer (step 3), the RvdK reports its result (step 5) and passes on the court's OTS
ruling with the ruling as a document (step 6, naming the GI by its OIN), IND informs DT&V
of a rejection with a dossier document (step 4), DT&V hands the case over (step 12).
On a real dev server, with the API over mutual TLS, a worker that notifies, and a
webhook receiver on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.notifications import NotificationSettings, recorded_case_oins
from activities.outbox_store import OutboxStore
from api.certs import DEV_OINS, init_dev_certs
from api.context import ApiContext
from api.tls import PartyTable, own_oin
from encryption.keys import KeyStore
from encryption.sealed import PartyKeys
from kbflow import trace
from kbflow.case import EndState, Phase
from kbflow.items import CourtRequest, GiDetails
from kbflow.packets import Packet
from kbflow.process import Party
from kbflow.settings import Settings
from store import open_store
from tests import factories as f
from tests.api_harness import ApiEndpoint, serve_api, write_impostor
from tests.api_world import as_json, event_path
from tests.test_notifications import Receiver, until
from worker import build_worker, connect

#: The three parties that drive the case, and the GI that its ruling names.
DRIVERS = (Party.IND, Party.RVDK, Party.DTV)
SCAN = b"%PDF-1.7\n% overdrachtsdossier (fictief)\n" + bytes(range(256)) * 64
RULING = b"%PDF-1.7\n% beschikking ondertoezichtstelling (fictief)\n" + bytes(range(256)) * 32
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass
class World:
    endpoint: ApiEndpoint
    settings: Settings
    store: OutboxStore
    receiver: Receiver


@pytest_asyncio.fixture
async def world(dev_server: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[World]:
    files = init_dev_certs(tmp_path / "api-tls")
    settings = Settings(temporal_address=dev_server.client.service_client.config.target_host,
                        namespace=dev_server.client.namespace,
                        task_queue=f"kbflow-e2e-{uuid.uuid4()}", data_dir=tmp_path / "data",
                        api_tls_dir=files.folder)
    keys = KeyStore.open(settings)
    client = await connect(settings, keys)
    store = OutboxStore(settings, keys=keys)
    api_context = ApiContext(settings=settings, client=client,
                             parties=PartyTable.load(files.parties), oin=own_oin(files),
                             keys=keys, outbox=store)
    receiver = Receiver()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(receiver.close)
        endpoint = await stack.enter_async_context(serve_api(api_context, files))
        notifications = NotificationSettings(
            oin=own_oin(files), api_base_url=endpoint.base_url, tls=files,
            retry_maximum=dt.timedelta(seconds=1),
            case_oins=recorded_case_oins(lambda: open_store(settings).acknowledgements))
        await stack.enter_async_context(build_worker(
            client, settings.task_queue, store, notifications=notifications))
        await receiver.up()
        yield World(endpoint, settings, store, receiver)


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    return response.json() if response.content else None


#: The API's span of each event request, by the packets the event disclosed.
SPANS: dict[str, str] = {}


async def _event(client: httpx.AsyncClient, case_ref: str, event: f.Ev,
                 **changes: Any) -> dict[str, Any]:
    """POST an event in the caller's trace ``TRACE_ID``; note the API's answered span."""
    body = {**as_json(event.event), **changes}
    traceparent = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"
    response = await client.post(event_path(case_ref, event.name), json=body,
                                 headers={"traceparent": traceparent})
    outcome: dict[str, Any] = await _ok(response)
    answered = trace.parse(response.headers["traceparent"])
    assert answered is not None and answered.trace_id == TRACE_ID
    SPANS.update({packet["packet_id"]: answered.parent_id for packet in outcome["packets"]})
    return outcome


async def _upload(client: httpx.AsyncClient, case_ref: str, data: bytes) -> dict[str, Any]:
    ref: dict[str, Any] = await _ok(await client.post(
        f"/v1/cases/{case_ref}/documents", content=data,
        headers={"Content-Type": "application/pdf"}), 201)
    assert ref["sha256"] == hashlib.sha256(data).hexdigest() and ref["size"] == len(data)
    return ref


async def _inbox(client: httpx.AsyncClient, case_ref: str) -> list[dict[str, Any]]:
    """Every packet of the case in the caller's inbox, page by page (5 a page)."""
    shown: list[dict[str, Any]] = []
    url: str | None = f"/v1/inbox?caseRef={case_ref}&limit=5"
    while url is not None:
        page = await _ok(await client.get(url))
        shown += page["packets"]
        url = page["next"]
    return shown


def _impostor_refused(endpoint: ApiEndpoint, folder: Path) -> bool:
    """Whether a certificate of a CA kbflow does not know, with IND's OIN, is refused in
    the TLS handshake (TLS 1.2: the server ends it)."""
    context = ssl.create_default_context(cafile=str(endpoint.files.ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(*write_impostor(folder))
    port = int(endpoint.base_url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost"):
            return False
    except ssl.SSLError:
        return True


async def test_three_parties_drive_an_ots_case_to_the_warm_handover_through_the_api(
        world: World, tmp_path: Path) -> None:
    endpoint = world.endpoint
    async with contextlib.AsyncExitStack() as stack:
        api = {party: await stack.enter_async_context(endpoint.client(party))
               for party in (*DRIVERS, Party.GI, Party.VT)}
        # every party that takes part hears of its packets (the GI too: the ruling names it)
        for party in (*DRIVERS, Party.GI):
            await _ok(await api[party].post("/v1/subscriptions", json={
                "url": world.receiver.url(f"/{party.value}")}), 201)

        # step 1: IND's urgent report
        start = as_json(f.case_start(reporter=Party.IND,
                                     idempotency_key=f.new_key("e2e")), without=("case_ref",))
        started = await _ok(await api[Party.IND].post("/v1/cases", json=start), 201)
        case_ref = started["case_ref"]
        # steps 2, 3 and the RvdK's decision
        await _event(api[Party.RVDK], case_ref, f.announce())
        await _event(api[Party.IND], case_ref, f.residence_ind())
        await _event(api[Party.DTV], case_ref, f.residence_dtv())
        # outside its rights: DT&V may not announce, VT (not in the case) may not look
        refused = await api[Party.DTV].post(event_path(case_ref, "announce_investigation"),
                                            json=as_json(f.announce(sender=Party.DTV).event))
        assert refused.status_code == 403 and "only RVDK sends it" in refused.json()["detail"]
        looked = await api[Party.VT].get(f"/v1/cases/{case_ref}")
        assert looked.status_code == 403, looked.text
        await _event(api[Party.RVDK], case_ref, f.decision(True))
        # step 5, then step 6 with the ruling itself as a document, naming the GI by OIN
        await _event(api[Party.RVDK], case_ref, f.result(CourtRequest.OTS))
        ruling_ref = await _upload(api[Party.RVDK], case_ref, RULING)
        gi = GiDetails(name=f.GI_DETAILS.name, contact=f.GI_DETAILS.contact,
                       oin=DEV_OINS[Party.GI])
        ruled = await _event(api[Party.RVDK], case_ref, f.ruling(),
                             gi=gi.model_dump(mode="json"), document=ruling_ref)
        assert ruled["phase"] == Phase.OTS.value
        # step 4: IND's rejection with a document of the overdrachtsdossier
        scan_ref = await _upload(api[Party.IND], case_ref, SCAN)
        await _event(api[Party.IND], case_ref, f.rejection(),
                     dossier_documents=[f.DOSSIER_DOCUMENTS[0], scan_ref])
        # step 12: DT&V hands the case over; the case closes
        handed = await _event(api[Party.DTV], case_ref, f.handover())
        assert (handed["phase"], handed["end_state"]) == (Phase.CLOSED.value,
                                                         EndState.HANDED_OVER.value)
        status = await _ok(await api[Party.RVDK].get(f"/v1/cases/{case_ref}"))
        assert status["end_state"] == EndState.HANDED_OVER.value
        assert status["steps_done"] == [1, 2, 3, 5, 6, 4, 12]

        # each party reads its inbox: exactly its packets, opened with its own key only
        delivered = {party: {row.packet_id for row in world.store.records.packet_rows(
            case_ref, party.value)} for party in Party}
        keys = PartyKeys(world.settings.party_keys_path)
        opened: dict[Party, list[Packet]] = {}
        for party in (*DRIVERS, Party.GI):
            shown = await _inbox(api[party], case_ref)
            assert {p["packet_id"] for p in shown} == delivered[party] != set(), party
            opened[party] = [Packet.model_validate_json(keys.unseal(
                party, base64.b64decode(p["sealed_packet"]))) for p in shown]
            assert all(packet.recipient is party for packet in opened[party])
            for p in shown:
                receipt = await _ok(await api[party].post(
                    f"/v1/inbox/{p['packet_id']}/acknowledgement"))
                assert receipt["packet_id"] == p["packet_id"]
            again = await _inbox(api[party], case_ref)
            assert all(p["acknowledged_at"] for p in again)  # on record, still readable
        other = await api[Party.IND].get(f"/v1/inbox/{next(iter(delivered[Party.DTV]))}")
        assert other.status_code in (403, 404)

        # documents: the recipients download the bytes, nobody else does
        dtv_step_4 = next(p for p in opened[Party.DTV] if int(p.step) == 4)
        assert scan_ref in dtv_step_4.body["dossier_documents"]
        scan = await api[Party.DTV].get(f"/v1/documents/{scan_ref['document_id']}")
        assert scan.status_code == 200 and scan.content == SCAN
        assert scan.headers["content-type"] == "application/pdf"
        assert scan.headers["x-content-type-options"] == "nosniff"
        assert scan.headers["content-disposition"].startswith("attachment")
        for party in (Party.IND, Party.DTV):  # step 6's recipients
            ruling = await api[party].get(f"/v1/documents/{ruling_ref['document_id']}")
            assert ruling.status_code == 200 and ruling.content == RULING
        for party, ref in ((Party.GI, scan_ref), (Party.RVDK, scan_ref)):
            denied = await api[party].get(f"/v1/documents/{ref['document_id']}")
            assert denied.status_code == 403, (party, denied.text)

        # notifications: every packet of every subscribed party, once, by event id
        def notified(party: Party) -> set[str]:
            return {json.loads(post.body)["data"]["packetId"]
                    for post in world.receiver.posts
                    if post.path == f"/{party.value}" and 200 <= post.status < 300}

        async def all_notified() -> bool:
            return all(notified(party) >= delivered[party] for party in (*DRIVERS, Party.GI))

        await until(all_notified, "every party notified of each of its packets")
        accepted = world.receiver.accepted()
        assert len(accepted) == len(set(accepted))  # exactly once by event id
        assert sum(len(delivered[party]) for party in (*DRIVERS, Party.GI)) == len(accepted)

    # the processing log: one LDV record per data subject per packet, each request's trace
    log = world.store.processing_log(case_ref)
    traced = [entry for entry in log if entry.trace_id == TRACE_ID]
    assert traced and {entry.packet_id for entry in traced} == {
        row.packet_id for row in world.store.records.packet_rows(case_ref)
        if row.step != 1} == set(SPANS)
    # each entry's parent is the API's span of the request that caused it
    assert all(entry.parent_span_id == SPANS[entry.packet_id] for entry in traced)
    assert await asyncio.to_thread(_impostor_refused, endpoint, tmp_path)
