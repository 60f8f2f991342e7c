"""The API's inbox (``api.routes.inbox``): a party's packets a page at a time by an opaque
cursor (``next`` and ``Link``), filtered by case and acknowledgement, each sealed to the
caller's key (opened here with the party's private key from the data dir, which the API
never holds), acknowledged once, readable after; no party reads another's packet, and of
two GIs each sees only the case whose ruling named it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from api.certs import DEV_OINS
from kbflow.items import Measure
from kbflow.packets import Packet
from kbflow.process import Party
from tests import factories as f
from tests.api_harness import ApiEndpoint
from tests.api_world import (
    OTHER_GI_OIN,
    Served,
    as_json,
    event_path,
    post_event,
    served_api,
    started,
    two_gi_folders,
)


@pytest.fixture
def store(served: Served) -> OutboxStore:
    return served.store


async def _to_step_3(endpoint: ApiEndpoint) -> str:
    """A case through step 3: the RvdK has the report and both replies (3 packets)."""
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.RVDK) as rvdk, \
            endpoint.client(Party.IND) as ind, endpoint.client(Party.DTV) as dtv:
        case_ref = await started(vt)
        for client, event in ((rvdk, f.announce()), (ind, f.residence_ind()),
                              (dtv, f.residence_dtv())):
            response = await post_event(client, case_ref, event)
            assert response.status_code == 200, response.text
    return case_ref


def _readme_snippet() -> str:
    """The Python block of the README's "The inbox"."""
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n### The inbox\n"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


def _opened(store: OutboxStore, party: Party, shown: dict[str, object]) -> Packet:
    """Open a shown packet as the README says (its snippet, run as written, but for the
    key file's folder and party): with the party's private key, here the data dir's party
    keys, which the API never reads."""
    key_file = store.party_keys.folder / f"{party.value}.key"
    snippet = _readme_snippet().replace('".kbflow/party-keys/IND.key"', repr(str(key_file)))
    scope: dict[str, object] = {"page": {"packets": [shown]}}
    exec(snippet, scope)
    return Packet.model_validate(scope["packet"])


async def test_the_inbox_pages_by_cursor_and_each_packet_opens_with_the_callers_key(
        endpoint: ApiEndpoint, store: OutboxStore) -> None:
    case_ref = await _to_step_3(endpoint)
    other_case = await _to_step_3(endpoint)
    async with endpoint.client(Party.RVDK) as rvdk:
        first = await rvdk.get("/v1/inbox", params={"caseRef": case_ref, "limit": 2})
        assert first.status_code == 200, first.text
        page = first.json()
        assert len(page["packets"]) == 2 and page["next"]
        assert first.headers["Link"] == f'<{page["next"]}>; rel="next"'
        second = (await rvdk.get(page["next"])).json()
        assert len(second["packets"]) == 1 and second["next"] is None
        everything = (await rvdk.get("/v1/inbox", params={"limit": 100})).json()
    shown = [*page["packets"], *second["packets"]]
    assert [p["step"] for p in shown] == [1, 3, 3]
    assert {p["case_ref"] for p in shown} == {case_ref}
    assert {p["case_ref"] for p in everything["packets"]} == {case_ref, other_case}
    assert len(everything["packets"]) == 6 and everything["next"] is None
    for packet in shown:
        assert set(packet) == {"packet_id", "case_ref", "step", "sender", "recipient",
                               "created_at", "processing_activity_id", "acknowledged_at",
                               "sealed_packet"}
        assert packet["recipient"] == "RVDK" and packet["acknowledged_at"] is None
        assert packet["created_at"].endswith("Z") or packet["created_at"].endswith("+00:00")
        assert packet["processing_activity_id"]
        assert not f.leaked(str({k: v for k, v in packet.items() if k != "sealed_packet"}))
        opened = _opened(store, Party.RVDK, packet)
        assert opened.packet_id == packet["packet_id"] and opened.case_ref == case_ref
    assert f.CHILD.name in _opened(store, Party.RVDK, shown[0]).model_dump_json()


async def test_a_packet_is_acknowledged_once_and_can_be_read_again(
        endpoint: ApiEndpoint, store: OutboxStore) -> None:
    case_ref = await _to_step_3(endpoint)
    async with endpoint.client(Party.RVDK) as rvdk:
        packets = (await rvdk.get("/v1/inbox", params={"caseRef": case_ref})).json()["packets"]
        packet_id = packets[0]["packet_id"]
        first = await rvdk.post(f"/v1/inbox/{packet_id}/acknowledgement")
        again = await rvdk.post(f"/v1/inbox/{packet_id}/acknowledgement")
        read = await rvdk.get(f"/v1/inbox/{packet_id}")
        acknowledged = (await rvdk.get("/v1/inbox", params={
            "caseRef": case_ref, "acknowledged": "true"})).json()["packets"]
        waiting = (await rvdk.get("/v1/inbox", params={
            "caseRef": case_ref, "acknowledged": "false"})).json()["packets"]
    assert first.status_code == 200, first.text
    assert first.json()["oin"] == DEV_OINS[Party.RVDK]
    assert again.status_code == 200 and again.json() == first.json()  # the first record
    assert read.status_code == 200
    assert read.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    assert _opened(store, Party.RVDK, read.json()).packet_id == packet_id
    assert [p["packet_id"] for p in acknowledged] == [packet_id]
    assert packet_id not in [p["packet_id"] for p in waiting] and len(waiting) == 2


async def test_no_party_reads_or_acknowledges_another_partys_packet(
        endpoint: ApiEndpoint) -> None:
    case_ref = await _to_step_3(endpoint)
    async with endpoint.client(Party.RVDK) as rvdk, endpoint.client(Party.IND) as ind:
        packet_id = (await rvdk.get("/v1/inbox", params={"caseRef": case_ref})
                     ).json()["packets"][0]["packet_id"]
        read = await ind.get(f"/v1/inbox/{packet_id}")
        acknowledged = await ind.post(f"/v1/inbox/{packet_id}/acknowledgement")
        own = (await ind.get("/v1/inbox", params={"caseRef": case_ref})).json()["packets"]
        unchanged = (await rvdk.get(f"/v1/inbox/{packet_id}")).json()
    assert read.status_code == 404 and acknowledged.status_code == 404
    assert {p["recipient"] for p in own} == {"IND"}
    assert unchanged["acknowledged_at"] is None


async def test_of_two_gis_each_sees_only_the_case_whose_ruling_named_it(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    files, other_files = two_gi_folders(tmp_path / "tls")
    async with served_api(dev_server, tmp_path, files) as serving:
        served = serving.endpoint
        other = ApiEndpoint(served.base_url, other_files)
        clients = {party: served.client(party) for party in (Party.VT, Party.RVDK,
                                                             Party.IND, Party.DTV)}
        async with clients[Party.VT] as vt, clients[Party.RVDK] as rvdk, \
                clients[Party.IND] as ind, clients[Party.DTV] as dtv, \
                served.client(Party.GI) as gi, other.client(Party.GI) as other_gi:
            senders: dict[Party, httpx.AsyncClient] = {
                Party.RVDK: rvdk, Party.IND: ind, Party.DTV: dtv}
            case_ref = await started(vt)
            for event in f.to_awaiting_ruling():
                response = await post_event(senders[event.event.sender], case_ref, event)
                assert response.status_code == 200, response.text
            body = as_json(f.ruling(Measure.OTS).event)
            ruling = await rvdk.post(event_path(case_ref, "court_ruling"), json={
                **body, "gi": {**body["gi"], "oin": DEV_OINS[Party.GI]}})
            assert ruling.status_code == 200, ruling.text
            handover = await post_event(dtv, case_ref, f.handover())  # step 12: to the GI
            assert handover.status_code == 200, handover.text
            assert "GI" in {p["recipient"] for p in handover.json()["packets"]}
            mine = (await gi.get("/v1/inbox")).json()["packets"]
            theirs = await other_gi.get("/v1/inbox")
            assert [p["case_ref"] for p in mine] == [case_ref]
            assert theirs.status_code == 200 and theirs.json()["packets"] == []
            assert (await other_gi.get(f"/v1/inbox/{mine[0]['packet_id']}")).status_code == 404
            assert (await other_gi.get(f"/v1/cases/{case_ref}")).status_code == 403
            assert (await gi.get(f"/v1/cases/{case_ref}")).status_code == 200
            assert DEV_OINS[Party.GI] != OTHER_GI_OIN
