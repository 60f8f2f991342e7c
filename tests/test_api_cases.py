"""The API's cases (``api.routes.cases``): a start (201, a repeat 200, the key with
another body 409), events by the parties the process table gives (403 otherwise), the
case's refusals by their code, pending without a worker (503 ``Retry-After``), and the
status only to a party that takes part (``api.authorisation``). Over real mutual TLS,
with a worker on the suite's Temporal server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from activities.outbox_store import OutboxStore
from api.certs import init_dev_certs
from api.routes import cases as cases_route
from api.tls import TlsFiles
from encryption.keys import KeyStore
from kbflow.case import RULES, RefusalCode
from kbflow.items import Measure
from kbflow.process import Party
from kbflow.settings import workflow_id
from tests import factories as f
from tests.api_harness import ApiEndpoint, serve_api
from tests.api_world import (
    api_context,
    as_json,
    event_path,
    history_length,
    post_event,
    start_body,
    started,
)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_dev_certs(tmp_path_factory.mktemp("api-tls"))


@pytest_asyncio.fixture
async def endpoint(client: Client, store: OutboxStore, keys: KeyStore, task_queue: str,
                   tmp_path: Path, tls_files: TlsFiles, worker: Worker
                   ) -> AsyncIterator[ApiEndpoint]:
    async with serve_api(api_context(client, store, keys, task_queue, tmp_path, tls_files),
                         tls_files) as served:
        yield served


def test_every_refusal_code_has_a_problem() -> None:
    assert set(cases_route.REFUSALS) == set(RefusalCode)


async def test_a_start_is_201_with_location_and_a_repeat_200(endpoint: ApiEndpoint) -> None:
    body = start_body()
    async with endpoint.client(Party.VT) as vt:
        first = await vt.post("/v1/cases", json=body,
                              headers={"Idempotency-Key": body["idempotency_key"]})
        again = await vt.post("/v1/cases", json=body)
        other = await vt.post("/v1/cases", json={**body, "retention_days": 30})
    assert first.status_code == 201, first.text
    case_ref = first.json()["case_ref"]
    assert first.headers["Location"] == f"/v1/cases/{case_ref}"
    assert first.json() == {"case_ref": case_ref, "already_started": False}
    assert again.status_code == 200
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json()["already_started"] is True
    assert other.status_code == 409
    assert other.json()["type"] == "urn:kbflow:problem:idempotency-key-reused"
    assert other.headers["content-type"] == "application/problem+json"


async def test_the_idempotency_key_header_must_match_the_body(endpoint: ApiEndpoint) -> None:
    async with endpoint.client(Party.VT) as vt:
        response = await vt.post("/v1/cases", json=start_body(),
                                 headers={"Idempotency-Key": "another-key-0001"})
    assert response.status_code == 400
    assert [p["name"] for p in response.json()["invalidParams"]] == ["Idempotency-Key"]


async def test_only_a_reporter_of_step_1_starts_and_only_as_itself(
        endpoint: ApiEndpoint) -> None:
    async with endpoint.client(Party.RVDK) as rvdk, endpoint.client(Party.VT) as vt:
        not_a_reporter = await rvdk.post("/v1/cases", json=start_body(Party.VT))
        as_another = await vt.post("/v1/cases", json=start_body(Party.COA))
    assert not_a_reporter.status_code == 403
    assert not_a_reporter.json()["detail"].startswith(
        "case rule 'report': only VT, COA, AVIM or IND report in step 1 "
        "(PROCESS.md §3 step 1)")
    assert as_another.status_code == 403
    assert as_another.json()["detail"].startswith("reporter: must be the caller's own party")


async def test_events_by_their_senders_and_the_status_to_participants(
        endpoint: ApiEndpoint, client: Client) -> None:
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.RVDK) as rvdk, \
            endpoint.client(Party.IND) as ind, endpoint.client(Party.DTV) as dtv, \
            endpoint.client(Party.COA) as coa:
        case_ref = await started(vt)
        announce = f.announce()
        response = await post_event(rvdk, case_ref, announce)
        assert response.status_code == 200, response.text
        outcome = response.json()
        assert outcome["event"] == "announce_investigation" and outcome["sender"] == "RVDK"
        assert {p["recipient"] for p in outcome["packets"]} == {"IND", "DTV"}
        repeat = await post_event(rvdk, case_ref, announce)
        # a true repeat answers the first outcome (the same update id), applied once
        assert repeat.status_code == 200 and repeat.json() == outcome
        for party, event in ((ind, f.residence_ind()), (dtv, f.residence_dtv())):
            assert (await post_event(party, case_ref, event)).status_code == 200
        status = await vt.get(f"/v1/cases/{case_ref}")
        assert status.status_code == 200
        assert status.json()["case_ref"] == case_ref and 3 in status.json()["steps_done"]
        for party in (rvdk, ind, dtv):
            assert (await party.get(f"/v1/cases/{case_ref}")).status_code == 200
        outsider = await coa.get(f"/v1/cases/{case_ref}")
        assert outsider.status_code == 403
        assert "COA takes no part in this case" in outsider.json()["detail"]
        unknown = await vt.get(f"/v1/cases/{f.new_case_ref()}")
        assert unknown.status_code == 404


async def test_a_party_outside_its_rights_gets_403_naming_the_rule(
        endpoint: ApiEndpoint, client: Client) -> None:
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.IND) as ind, \
            endpoint.client(Party.RVDK) as rvdk:
        case_ref = await started(vt)
        before = await history_length(client, case_ref)
        not_its_event = await post_event(ind, case_ref, f.advice())
        as_another = await post_event(rvdk, case_ref, f.announce(), sender="IND")
        assert await history_length(client, case_ref) == before
    assert not_its_event.status_code == 403
    assert not_its_event.json()["detail"] == (
        "case rule 'advice': only DTV sends it (PROCESS.md §3 step 9)")
    assert as_another.status_code == 403
    assert as_another.json()["detail"].startswith("sender: must be the caller's own party "
                                                  "(RVDK")


async def test_the_cases_refusals_travel_by_their_code(endpoint: ApiEndpoint,
                                                       client: Client) -> None:
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.RVDK) as rvdk:
        case_ref = await started(vt)
        out_of_order = await post_event(rvdk, case_ref, f.decision(True))
        announce = f.announce()
        assert (await post_event(rvdk, case_ref, announce)).status_code == 200
        reused = await post_event(rvdk, case_ref, f.decision(True),
                                  idempotency_key=announce.event.idempotency_key)
    assert out_of_order.status_code == 409
    assert out_of_order.json()["type"] == "urn:kbflow:problem:conflict"
    assert out_of_order.json()["detail"].startswith("out of order:")
    assert reused.status_code == 409
    assert reused.json()["type"] == "urn:kbflow:problem:idempotency-key-reused"


async def test_an_ots_ruling_names_its_gi_by_oin_and_the_gi_takes_part(
        endpoint: ApiEndpoint, client: Client) -> None:
    from api.certs import DEV_OINS

    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.RVDK) as rvdk, \
            endpoint.client(Party.IND) as ind, endpoint.client(Party.DTV) as dtv, \
            endpoint.client(Party.GI) as gi:
        case_ref = await started(vt)
        senders = {Party.RVDK: rvdk, Party.IND: ind, Party.DTV: dtv}
        for event in f.to_awaiting_ruling():
            response = await post_event(senders[event.event.sender], case_ref, event)
            assert response.status_code == 200, response.text
        assert (await gi.get(f"/v1/cases/{case_ref}")).status_code == 403
        ruling = f.ruling(Measure.OTS)
        body = as_json(ruling.event)
        without_oin = await rvdk.post(event_path(case_ref, "court_ruling"), json=body)
        assert without_oin.status_code == 400
        assert [p["name"] for p in without_oin.json()["invalidParams"]] == ["gi.oin"]
        not_a_gi = await rvdk.post(event_path(case_ref, "court_ruling"), json={
            **body, "gi": {**body["gi"], "oin": DEV_OINS[Party.IND]}})
        assert not_a_gi.status_code == 400
        named = await rvdk.post(event_path(case_ref, "court_ruling"), json={
            **body, "gi": {**body["gi"], "oin": DEV_OINS[Party.GI]}})
        assert named.status_code == 200, named.text
        assert (await gi.get(f"/v1/cases/{case_ref}")).status_code == 200


@pytest_asyncio.fixture
async def without_worker(client: Client, store: OutboxStore, keys: KeyStore,
                         task_queue: str, tmp_path: Path, tls_files: TlsFiles,
                         monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ApiEndpoint]:
    monkeypatch.setattr(cases_route, "EVENT_WAIT", cases_route.timedelta(seconds=2))
    async with serve_api(api_context(client, store, keys, task_queue, tmp_path, tls_files),
                         tls_files) as served:
        yield served


async def test_an_event_no_worker_takes_up_is_503_pending_with_retry_after(
        without_worker: ApiEndpoint, client: Client) -> None:
    async with without_worker.client(Party.VT) as vt, \
            without_worker.client(Party.RVDK) as rvdk:
        case_ref = await started(vt)  # a start needs no worker
        response = await post_event(rvdk, case_ref, f.announce())
    assert response.status_code == 503
    assert response.json()["type"] == "urn:kbflow:problem:pending"
    assert response.headers["Retry-After"] == str(cases_route.RETRY_AFTER_SECONDS)
    assert "re-send the same body" in response.json()["detail"]
    await client.get_workflow_handle(workflow_id(case_ref)).terminate()


def test_there_is_one_route_per_event_with_its_schema() -> None:
    from api.app import create_app

    document = create_app(None).openapi()
    for event in RULES:
        path = f"/v1/cases/{{caseRef}}/events/{event.value.replace('_', '-')}"
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert "$defs" not in str(body)
        assert set(body["schema"]["properties"]) == set(RULES[event].model.model_fields)
