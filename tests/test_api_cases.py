"""The API's cases (``api.routes.cases``): a start (201, a repeat 200, the key with
another body 409), events by the parties the process table gives (403 otherwise), the
case's refusals by their code, pending without a worker (503 ``Retry-After``), and the
status only to a party that takes part (``api.authorisation``). Over real mutual TLS,
with a worker on the suite's Temporal server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.routes import cases as cases_route
from api.tls import TlsFiles
from kbflow.case import RULES, RefusalCode
from kbflow.items import Measure
from kbflow.process import Party
from kbflow.settings import workflow_id
from tests import factories as f
from tests.api_harness import ApiEndpoint
from tests.api_world import (
    Served,
    as_json,
    event_path,
    history_length,
    post_event,
    reported,
    served_api,
    settled,
    start_body,
    started,
)


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


async def test_a_second_open_case_for_a_child_needs_second_case(
        endpoint: ApiEndpoint, served: Served) -> None:
    store = served.store
    async with endpoint.client(Party.VT) as vt:
        first = await started(vt)
        # the first case is found by the child's pseudonym once its report is delivered
        await reported(store, first)
        refused = await vt.post("/v1/cases", json=start_body())
        intended = await vt.post("/v1/cases", json=start_body(),
                                 params={"secondCase": "true"})
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:kbflow:problem:conflict"
    assert "secondCase=true" in refused.json()["detail"]
    assert not f.leaked(refused.text)
    assert intended.status_code == 201


async def test_a_reporter_outside_the_childs_open_case_is_not_told_its_ref(
        endpoint: ApiEndpoint, served: Served) -> None:
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.COA) as coa:
        first = await started(vt)
        await reported(served.store, first)
        refused = await coa.post("/v1/cases", json=start_body(Party.COA))
        told = await vt.post("/v1/cases", json=start_body(Party.VT))
    assert refused.status_code == 409
    assert first not in refused.text
    assert "an open case (in which COA takes no part)" in refused.json()["detail"]
    assert told.status_code == 409 and first in told.json()["detail"]  # VT reported it


async def test_a_key_reused_by_another_reporter_does_not_tell_it_the_cases_ref(
        endpoint: ApiEndpoint) -> None:
    body = start_body(Party.VT)
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.COA) as coa:
        first = await vt.post("/v1/cases", json=body, params={"secondCase": "true"})
        reused = await coa.post("/v1/cases", json={
            **start_body(Party.COA), "idempotency_key": body["idempotency_key"]},
            params={"secondCase": "true"})
    assert first.status_code == 201, first.text
    assert reused.status_code == 409
    assert reused.json()["type"] == "urn:kbflow:problem:idempotency-key-reused"
    assert first.json()["case_ref"] not in reused.text
    assert "a case COA takes no part in" in reused.json()["detail"]


async def test_an_unknown_case_ref_as_typed_is_not_repeated(endpoint: ApiEndpoint) -> None:
    typed = "KB-2014-0000000011"  # a ref of the earlier pattern, a V-nummer inside
    async with endpoint.client(Party.RVDK) as rvdk:
        answers = [await rvdk.get(f"/v1/cases/{typed}"),
                   await rvdk.post(f"/v1/cases/{typed}/events/announce-investigation",
                                   json=as_json(f.announce().event))]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert "0000000011" not in answer.text


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
        endpoint: ApiEndpoint, served: Served) -> None:
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
        # IND only received a packet (step 2) so far: it takes part
        assert (await ind.get(f"/v1/cases/{case_ref}")).status_code == 200
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
        endpoint: ApiEndpoint, served: Served) -> None:
    client = served.client
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.IND) as ind, \
            endpoint.client(Party.RVDK) as rvdk:
        case_ref = await started(vt)
        await settled(client, case_ref)  # the report's delivery is done
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


async def test_send_event_raises_the_validators_refusal_with_its_code(
        endpoint: ApiEndpoint, served: Served) -> None:
    from starter.cases import EventRefusedError, send_event

    async with endpoint.client(Party.VT) as vt:
        case_ref = await started(vt)
    decision = f.decision(True)
    with pytest.raises(EventRefusedError, match=r"^refused: out of order") as refused:
        await send_event(served.client, case_ref, decision.name, decision.event)
    assert refused.value.code is RefusalCode.NOT_NOW
    ind_announces = f.announce(Party.IND)
    with pytest.raises(EventRefusedError) as wrong:
        await send_event(served.client, case_ref, ind_announces.name, ind_announces.event)
    assert wrong.value.code is RefusalCode.WRONG_SENDER


async def test_an_ots_ruling_names_its_gi_by_oin_and_the_gi_takes_part(
        endpoint: ApiEndpoint, served: Served) -> None:
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
async def without_worker(dev_server: WorkflowEnvironment, tmp_path: Path, tls_files: TlsFiles,
                         monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setattr(cases_route, "EVENT_WAIT", cases_route.timedelta(seconds=2))
    async with served_api(dev_server, tmp_path, tls_files, worker=False) as serving:
        yield serving


async def test_an_event_no_worker_takes_up_is_503_pending_with_retry_after(
        without_worker: Served) -> None:
    endpoint, client = without_worker.endpoint, without_worker.client
    async with endpoint.client(Party.VT) as vt, endpoint.client(Party.RVDK) as rvdk:
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


# ---- the README's section "The agencies' API" -------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## The agencies' API\n")
    return text[start:text.index("\n## ", start + 5)]



def test_the_readme_states_the_apis_limits_rules_and_problems() -> None:
    import re

    from api.app import create_app
    from api.bodies import RAW_BODY_MAX_BYTES
    from api.problems import ProblemType
    from kbflow.items import BODY_MAX_BYTES
    from tests.test_api_bad_input import CORPUS

    section = _section()
    assert f"at most {RAW_BODY_MAX_BYTES} bytes as sent" in section
    assert f"{BODY_MAX_BYTES} bytes (128 KiB)" in section
    assert f"sends {len(CORPUS)} bad requests" in section
    assert f"up to {cases_route.EVENT_WAIT.total_seconds():.0f} s" in section
    assert f"`Retry-After: {cases_route.RETRY_AFTER_SECONDS}`" in section
    assert "`case rule 'advice': only DTV sends it (PROCESS.md §3 step 9)`" in section
    # the resources are the served paths
    document = create_app(None).openapi()
    listed = set(re.findall(r"^\| `(GET|POST|DELETE) (/v1/[^`]+)` \|", section,
                            re.MULTILINE))
    served = {(method.upper(), path) for path, item in document["paths"].items()
              for method in item if not path.startswith("/v1/cases/{caseRef}/events/")}
    served.add(("POST", "/v1/cases/{caseRef}/events/{event}"))
    served.add(("GET", "/v1/openapi.json"))
    assert served == listed
    limit = next(p for p in document["paths"]["/v1/inbox"]["get"]["parameters"]
                 if p["name"] == "limit")["schema"]
    assert (limit["default"], limit["minimum"], limit["maximum"]) == (20, 1, 100)
    assert "20 a page\n(`limit` 1-100)" in section
    # every problem row names a real type with its status; the skeleton's are all there
    rows = dict(re.findall(r"^\| `urn:kbflow:problem:([a-z-]+)` \| (\d{3}) \|", section,
                           re.MULTILINE))
    by_slug = {kind.slug: kind for kind in ProblemType}
    assert all(by_slug[slug].status == int(status) for slug, status in rows.items())
    assert set(rows) == set(by_slug)  # every kind of problem the API answers is listed


async def test_the_readmes_curl_examples_work(endpoint: ApiEndpoint, tmp_path: Path) -> None:
    import json
    import re
    import shlex
    import subprocess

    from kbflow.reference import template

    block = _section().split("### Examples with the development certificates")[1]
    lines = block.split("```sh\n")[1].split("```")[0].strip().splitlines()
    assert lines[0] == "T=.kbflow/api-tls"
    work = tmp_path / "curl"
    work.mkdir()
    (work / "start.json").write_text(json.dumps(template("case")))
    (work / "announce.json").write_text(json.dumps(template("announce_investigation")))
    assert lines[1] == "kbflow template case > start.json"
    assert lines[3] == "kbflow template announce_investigation > announce.json"
    found = {"KB-2026-7K4M2XCH-R": "", "PACKET_ID": ""}

    def curl(line: str) -> tuple[int, dict[str, object]]:
        for placeholder, value in found.items():
            line = line.replace(placeholder, value)
        line = line.replace("$T", str(endpoint.files.folder)).replace(
            "https://127.0.0.1:8443", endpoint.base_url)
        done = subprocess.run([*shlex.split(line), "-s", "-w", "\n%{http_code}"], cwd=work,
                              capture_output=True, text=True, timeout=120, check=False)
        body, _, status = done.stdout.rpartition("\n")
        return int(status), json.loads(body) if body else {}

    commands = [line for line in lines if line.startswith("curl ")]
    assert len(commands) == 5
    status, started_case = await asyncio.to_thread(curl, commands[0])
    assert status == 201, started_case
    found["KB-2026-7K4M2XCH-R"] = str(started_case["case_ref"])
    status, outcome = await asyncio.to_thread(curl, commands[1])
    assert status == 200, outcome
    status, page = await asyncio.to_thread(curl, commands[2])
    assert status == 200 and page["packets"], page
    found["PACKET_ID"] = str(page["packets"][0]["packet_id"])  # type: ignore[index]
    status, receipt = await asyncio.to_thread(curl, commands[3])
    assert status == 200 and receipt["packet_id"] == found["PACKET_ID"]
    status, shown = await asyncio.to_thread(curl, commands[4])
    assert status == 200 and re.match(r"^KB-", str(shown["case_ref"]))
    assert shown["steps_done"] == [1, 2]
