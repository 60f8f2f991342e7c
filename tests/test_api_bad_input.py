"""The API's bad-input corpus (issue 8, point 6): each request of ``CORPUS`` is refused
with its status and problem type, as problem+json with ``status``, ``title`` and
``detail``, never a 5xx, never echoing a personal value of the request, and the case's
history gains no event.

One case is started (VT) and announced (RVDK), so it awaits IND's and DT&V's step-3
replies; every request then runs against it, counting its history events before and
after (on a real Temporal dev server: ``tests.api_world.served_api``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.bodies import RAW_BODY_MAX_BYTES
from api.tls import TlsFiles
from kbflow.items import GOALS_MAX, LONG_TEXT_MAX, CourtRequest
from kbflow.process import Party
from kbflow.settings import workflow_id
from tests import factories as f
from tests.api_world import (
    Served,
    as_json,
    event_path,
    history_length,
    post_event,
    settled,
    start_body,
)


@dataclass(frozen=True)
class World:
    """The case the corpus runs against, and what it takes to build requests."""

    case_ref: str
    announce_key: str
    start: dict[str, Any]  # the body that started the case


@dataclass(frozen=True)
class Bad:
    """One bad request: who sends it, how, and the status and problem type expected."""

    label: str
    party: Party | None  # None: no client certificate
    method: str
    path: Callable[[World], str]
    status: int
    problem: str
    json: Callable[[World], Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def _residence(**changes: Any) -> Callable[[World], Any]:
    return lambda world: {**as_json(f.residence_ind().event), **changes}


def _without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != name}


def _start(**changes: Any) -> Callable[[World], Any]:
    return lambda world: {**start_body(), **changes}


def _residence_path(world: World) -> str:
    return event_path(world.case_ref, "residence_information")


def _case(world: World) -> str:
    return f"/v1/cases/{world.case_ref}"


_BORN_IN_FUTURE = [{**as_json(f.CHILD), "date_of_birth": "2999-01-01"}]
_BAD_DATE = [{**as_json(f.CHILD), "date_of_birth": "2014-02-30"}]
_TOO_LONG = ["g" * LONG_TEXT_MAX] * GOALS_MAX  # 120 000 characters: over 128 KiB twice
_OVERSIZED = b'{"padding": "' + b"x" * RAW_BODY_MAX_BYTES + b'"}'
_V_NUMBER = f.V_NUMBERS[0]
INVALID, CONFLICT = "invalid-input", "conflict"

CORPUS: list[Bad] = [
    # ---- POST /v1/cases ----------------------------------------------------------------
    Bad("start: malformed JSON", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        content=b'{"persons": [', headers={"Content-Type": "application/json"}),
    Bad("start: not an object", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        json=lambda w: [f.CHILD.name]),
    Bad("start: a key twice", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        content=b'{"reporter": "VT", "reporter": "VT"}',
        headers={"Content-Type": "application/json"}),
    Bad("start: a number too long to read", Party.VT, "POST", lambda w: "/v1/cases", 400,
        INVALID, content=b'{"n": ' + b"9" * 5000 + b"}",
        headers={"Content-Type": "application/json"}),
    Bad("event: a number too long to read", Party.IND, "POST", _residence_path, 400,
        INVALID, content=b'{"n": ' + b"9" * 5000 + b"}",
        headers={"Content-Type": "application/json"}),
    Bad("start: not UTF-8", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        content=b'{"reporter": "\xff"}', headers={"Content-Type": "application/json"}),
    Bad("start: text/plain", Party.VT, "POST", lambda w: "/v1/cases", 415,
        "unsupported-media-type", content=b"{}", headers={"Content-Type": "text/plain"}),
    Bad("start: no media type", Party.VT, "POST", lambda w: "/v1/cases", 415,
        "unsupported-media-type", content=b"{}"),
    Bad("start: raw body over the limit", Party.VT, "POST", lambda w: "/v1/cases", 413,
        "too-large", content=_OVERSIZED, headers={"Content-Type": "application/json"}),
    # ---- POST /v1/subscriptions: its body read as every body is ----------------------
    Bad("webhook: raw body over the limit", Party.IND, "POST", lambda w: "/v1/subscriptions",
        413, "too-large", content=_OVERSIZED, headers={"Content-Type": "application/json"}),
    Bad("webhook: text/plain", Party.IND, "POST", lambda w: "/v1/subscriptions", 415,
        "unsupported-media-type", content=b'{"url": "https://indigo.example.nl/hook"}',
        headers={"Content-Type": "text/plain"}),
    Bad("webhook: url twice", Party.IND, "POST", lambda w: "/v1/subscriptions", 400, INVALID,
        content=b'{"url": "https://indigo.example.nl/a", "url": "https://indigo.example.nl/b"}',
        headers={"Content-Type": "application/json"}),
    Bad("start: unknown field", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        json=_start(favourite_colour=f.CHILD.name)),
    Bad("start: missing relaas", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        json=lambda w: _without(start_body(), "relaas")),
    Bad("start: missing idempotency_key", Party.VT, "POST", lambda w: "/v1/cases", 400,
        INVALID, json=lambda w: _without(start_body(), "idempotency_key")),
    Bad("start: a case_ref chosen", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        json=_start(case_ref="KB-2026-7K4M2XCH-R")),
    Bad("start: persons a string", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        json=_start(persons=f.CHILD.name)),
    Bad("start: retention_days a string", Party.VT, "POST", lambda w: "/v1/cases", 400,
        INVALID, json=_start(retention_days="30")),
    Bad("start: a date that does not exist", Party.VT, "POST", lambda w: "/v1/cases", 400,
        INVALID, json=_start(persons=_BAD_DATE)),
    Bad("start: born in the future", Party.VT, "POST", lambda w: "/v1/cases", 400,
        INVALID, json=_start(persons=_BORN_IN_FUTURE)),
    Bad("start: reporter not the caller", Party.VT, "POST", lambda w: "/v1/cases", 403,
        "forbidden", json=lambda w: start_body(Party.COA)),
    Bad("start: a party that may not report", Party.RVDK, "POST", lambda w: "/v1/cases",
        403, "forbidden", json=lambda w: start_body()),
    Bad("start: the key again with another body", Party.VT, "POST", lambda w: "/v1/cases",
        409, "idempotency-key-reused", json=lambda w: {**w.start, "retention_days": 31}),
    Bad("start: Idempotency-Key header differs", Party.VT, "POST", lambda w: "/v1/cases",
        400, INVALID, json=lambda w: start_body(), headers={"Idempotency-Key": "other-0001"}),
    Bad("start: a V-nummer in the query", Party.VT, "POST", lambda w: "/v1/cases", 400,
        INVALID, json=lambda w: start_body(), params={"secondCase": _V_NUMBER}),
    Bad("start: secondCase neither true nor false", Party.VT, "POST", lambda w: "/v1/cases",
        400, INVALID, json=lambda w: start_body(), params={"secondCase": "yes"}),
    Bad("start: unknown query key", Party.VT, "POST", lambda w: "/v1/cases", 400, INVALID,
        json=lambda w: start_body(), params={"name": f.CHILD.name}),
    # ---- POST /v1/cases/{caseRef}/events/{event} ----------------------------------------
    Bad("event: malformed JSON", Party.IND, "POST", _residence_path, 400, INVALID,
        content=b'{"sender": "IND",', headers={"Content-Type": "application/json"}),
    Bad("event: a flag as a string", Party.IND, "POST", _residence_path, 400, INVALID,
        json=_residence(known_to_sender="yes")),
    Bad("event: unknown field", Party.IND, "POST", _residence_path, 400, INVALID,
        json=_residence(nickname=f.CHILD.name)),
    Bad("event: a key that is no field name", Party.IND, "POST", _residence_path, 400,
        INVALID, json=_residence(**{f.CHILD.name: True})),
    Bad("event: missing field", Party.IND, "POST", _residence_path, 400, INVALID,
        json=lambda w: _without(as_json(f.residence_ind().event), "known_to_sender")),
    Bad("event: a date that does not exist", Party.IND, "POST", _residence_path, 400,
        INVALID, json=_residence(removal_date="2026-13-01")),
    Bad("event: a naive date-time for a date", Party.IND, "POST", _residence_path, 400,
        INVALID, json=_residence(removal_date="2026-05-01T10:30:00")),
    Bad("event: a date-time at midnight for a date", Party.IND, "POST", _residence_path,
        400, INVALID, json=_residence(removal_date="2026-05-01T00:00:00Z")),
    Bad("event: a number of seconds for a date", Party.IND, "POST", _residence_path, 400,
        INVALID, json=_residence(removal_date=1777593600)),
    Bad("event: a V-nummer that is no V-nummer", Party.IND, "POST", _residence_path, 400,
        INVALID, json=_residence(v_number=[{"person": 0, "v_number": "12345"}])),
    Bad("event: an item of another sender's flow", Party.IND, "POST", _residence_path, 400,
        INVALID, json=_residence(departure_procedure="pending")),
    Bad("event: a V-nummer for a person the case lacks", Party.IND, "POST",
        _residence_path, 400, INVALID,
        json=_residence(v_number=[{"person": 7, "v_number": _V_NUMBER}])),
    Bad("event: text/plain", Party.IND, "POST", _residence_path, 415,
        "unsupported-media-type", content=b"{}", headers={"Content-Type": "text/plain"}),
    Bad("event: raw body over the limit", Party.IND, "POST", _residence_path, 413,
        "too-large", content=_OVERSIZED, headers={"Content-Type": "application/json"}),
    Bad("event: over 128 KiB as compact JSON", Party.RVDK, "POST",
        lambda w: event_path(w.case_ref, "investigation_result"), 413, "too-large",
        json=lambda w: {**as_json(f.result(CourtRequest.OTS).event), "goals": _TOO_LONG,
                        "means": _TOO_LONG}),
    Bad("event: wrong sender in the body", Party.IND, "POST", _residence_path, 403,
        "forbidden", json=_residence(sender="DTV")),
    Bad("event: an event the party may not send", Party.IND, "POST",
        lambda w: event_path(w.case_ref, "announce_investigation"), 403, "forbidden",
        json=lambda w: as_json(f.announce(Party.IND).event)),
    Bad("event: VT sends advice", Party.VT, "POST", lambda w: event_path(w.case_ref,
                                                                            "advice"),
        403, "forbidden", json=lambda w: {**as_json(f.advice().event), "sender": "VT"}),
    Bad("event: out of order", Party.RVDK, "POST",
        lambda w: event_path(w.case_ref, "investigation_decision"), 409, CONFLICT,
        json=lambda w: as_json(f.decision(True).event)),
    Bad("event: a ruling out of order", Party.RVDK, "POST",
        lambda w: event_path(w.case_ref, "court_ruling"), 409, CONFLICT,
        json=lambda w: as_json(f.ruling().event)
        | {"gi": {**as_json(f.GI_DETAILS), "oin": "00000099000000000007"}}),
    Bad("event: the announce key with another event", Party.IND, "POST", _residence_path,
        409, "idempotency-key-reused", json=lambda w: {
            **as_json(f.residence_ind().event), "idempotency_key": w.announce_key}),
    Bad("event: unknown event", Party.IND, "POST",
        lambda w: f"/v1/cases/{w.case_ref}/events/not-an-event", 404, "not-found",
        json=lambda w: as_json(f.residence_ind().event)),
    Bad("event: unknown case", Party.IND, "POST",
        lambda w: event_path(f.new_case_ref(), "residence_information"), 404, "not-found",
        json=lambda w: as_json(f.residence_ind().event)),
    Bad("event: a case ref of the wrong pattern", Party.IND, "POST",
        lambda w: event_path("kb-2026-lower", "residence_information"), 400, INVALID,
        json=lambda w: as_json(f.residence_ind().event)),
    Bad("event: a case ref whose check character is wrong", Party.IND, "POST",
        lambda w: event_path(w.case_ref[:-1] + ("A" if w.case_ref[-1] != "A" else "B"),
                             "residence_information"), 400, INVALID,
        json=lambda w: as_json(f.residence_ind().event)),
    Bad("event: a V-nummer in the query", Party.IND, "POST", _residence_path, 400, INVALID,
        json=lambda w: as_json(f.residence_ind().event), params={"v": _V_NUMBER}),
    Bad("event: GET on an event", Party.IND, "GET", _residence_path, 405,
        "method-not-allowed"),
    # ---- GET /v1/cases/{caseRef} ---------------------------------------------------------
    Bad("status: no certificate", None, "GET", _case, 401, "unauthenticated"),
    Bad("status: a party that takes no part", Party.COA, "GET", _case, 403, "forbidden"),
    Bad("status: unknown case", Party.VT, "GET", lambda w: f"/v1/cases/{f.new_case_ref()}",
        404, "not-found"),
    Bad("status: a case ref of the wrong pattern", Party.VT, "GET",
        lambda w: "/v1/cases/KB-26-X", 400, INVALID),
    Bad("status: a date of birth in the query", Party.VT, "GET", _case, 400, INVALID,
        params={"born": f.CHILD.date_of_birth.isoformat()}),
    # ---- the inbox -------------------------------------------------------------------------
    Bad("inbox: a cursor of no page", Party.RVDK, "GET", lambda w: "/v1/inbox", 400,
        INVALID, params={"cursor": "not-a-cursor"}),
    Bad("inbox: limit 0", Party.RVDK, "GET", lambda w: "/v1/inbox", 400, INVALID,
        params={"limit": "0"}),
    Bad("inbox: limit 101", Party.RVDK, "GET", lambda w: "/v1/inbox", 400, INVALID,
        params={"limit": "101"}),
    Bad("inbox: limit not a number", Party.RVDK, "GET", lambda w: "/v1/inbox", 400,
        INVALID, params={"limit": "twenty"}),
    Bad("inbox: caseRef of the wrong pattern", Party.RVDK, "GET", lambda w: "/v1/inbox",
        400, INVALID, params={"caseRef": "KB-lower"}),
    Bad("inbox: acknowledged neither true nor false", Party.RVDK, "GET",
        lambda w: "/v1/inbox", 400, INVALID, params={"acknowledged": "yes"}),
    Bad("inbox: a V-nummer as an unknown key", Party.RVDK, "GET", lambda w: "/v1/inbox",
        400, INVALID, params={"vNumber": _V_NUMBER}),
    Bad("inbox: unknown packet", Party.RVDK, "GET", lambda w: "/v1/inbox/no-such-packet",
        404, "not-found"),
    Bad("inbox: a packet id of the wrong pattern", Party.RVDK, "GET",
        lambda w: "/v1/inbox/two%20words", 400, INVALID),
    Bad("acknowledgement: unknown packet", Party.RVDK, "POST",
        lambda w: "/v1/inbox/no-such-packet/acknowledgement", 404, "not-found"),
]


def test_the_corpus_has_at_least_40_requests() -> None:
    assert len(CORPUS) >= 40
    assert len({bad.label for bad in CORPUS}) == len(CORPUS)


def _sent_values(bad: Bad, body: Any) -> list[str]:
    """The request's own values that are personal (or could be): none may come back."""
    values = [*f.PERSONAL_VALUES, _V_NUMBER, f.CHILD.date_of_birth.isoformat()]
    text = json.dumps(body) if body is not None else ""
    return [value for value in values if value in text or value in bad.params.values()]


async def _send(clients: dict[Party | None, httpx.AsyncClient], bad: Bad, world: World
                ) -> tuple[httpx.Response, Any]:
    client = clients[bad.party]
    body = bad.json(world) if bad.json is not None else None
    options: dict[str, Any] = {"headers": bad.headers, "params": bad.params}
    if body is not None:
        options["json"] = body
    elif bad.content is not None:
        options["content"] = bad.content
    return await client.request(bad.method, bad.path(world), **options), body


async def test_every_bad_request_is_a_problem_and_changes_nothing(served: Served) -> None:
    endpoint, client = served.endpoint, served.client
    parties = {bad.party for bad in CORPUS} | {Party.VT, Party.RVDK}
    clients: dict[Party | None, httpx.AsyncClient] = {
        party: endpoint.client(party) if party is not None else endpoint.anonymous()
        for party in parties}
    try:
        start = start_body()
        response = await clients[Party.VT].post("/v1/cases", json=start,
                                                params={"secondCase": "true"})
        assert response.status_code == 201, response.text
        case_ref = response.json()["case_ref"]
        announce = f.announce()
        assert (await post_event(clients[Party.RVDK], case_ref, announce)).status_code == 200
        world = World(case_ref, announce.event.idempotency_key, start)
        await settled(client, case_ref)
        failures = []
        for bad in CORPUS:
            before = await history_length(client, case_ref)
            answer, body = await _send(clients, bad, world)
            after = await history_length(client, case_ref)
            problems = _check(bad, answer, body, before, after)
            if problems:
                failures.append(f"{bad.label}: {'; '.join(problems)} ({answer.text[:300]})")
        assert not failures, "\n".join(failures)
        # the case still takes the events it awaits
        assert (await post_event(clients[Party.IND], case_ref, f.residence_ind())
                ).status_code == 200
        await client.get_workflow_handle(workflow_id(case_ref)).terminate()
    finally:
        for each in clients.values():
            await each.aclose()


def _check(bad: Bad, answer: httpx.Response, body: Any, before: int, after: int
           ) -> list[str]:
    problems = []
    if answer.status_code >= 500:
        problems.append(f"a 5xx: {answer.status_code}")
    if answer.status_code != bad.status:
        problems.append(f"status {answer.status_code}, expected {bad.status}")
    if answer.headers.get("content-type") != "application/problem+json":
        problems.append(f"content-type {answer.headers.get('content-type')}")
        return problems
    problem = answer.json()
    if problem.get("type") != f"urn:kbflow:problem:{bad.problem}":
        problems.append(f"type {problem.get('type')}")
    if not (problem.get("title") and problem.get("detail")
            and problem.get("status") == answer.status_code):
        problems.append("no status, title or detail")
    if answer.status_code == 400 and not problem.get("invalidParams"):
        problems.append("a 400 without invalidParams")
    echoed = [value for value in _sent_values(bad, body) if value in answer.text]
    if echoed:
        problems.append(f"echoes {len(echoed)} personal value(s)")
    if after != before:
        problems.append(f"the history gained {after - before} event(s)")
    return problems


def test_the_server_writes_no_access_log_that_could_hold_a_query(tls_files: TlsFiles) -> None:
    from api import server
    from api.app import create_app

    config = server.config(create_app(None), tls_files, "127.0.0.1:0")
    assert config.access_log is False
