"""Bounded input (issue 6 finding 1): the largest valid event of every type, and a case
made only of such events, pass through CaseWorkflow on the time-skipping test server with
room to spare against Temporal's limits; one byte or one item over a limit is refused at
the edge (``starter.inputs``, before Temporal is asked) and by the workflow's validator
(for clients that bypass the CLI), naming the field, the limit and the size.

Texts are filled with a 4-byte UTF-8 character, so every text weighs its most.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities.outbox_store import OutboxStore
from kbflow.case import RULES, EventOutcome, Phase
from kbflow.events import CaseStart, Event, body_size
from kbflow.items import (
    BODY_MAX_BYTES,
    DOSSIER_DOCUMENTS_MAX,
    GOALS_MAX,
    LONG_TEXT_MAX,
    PERSONS_MAX,
    SHORT_TEXT_MAX,
)
from kbflow.settings import workflow_id
from starter import inputs
from tests import factories as f
from tests.test_case_workflow import plausible
from workflows.case_workflow import CaseWorkflow

HEAVY = "\U0001d509"  # MATHEMATICAL FRAKTUR CAPITAL F: 4 bytes in UTF-8, NFC-stable
#: Temporal's limits: a payload (blob) and a gRPC message, e.g. a workflow task's reply.
PAYLOAD_LIMIT, MESSAGE_LIMIT = 2 * 1024 * 1024, 4 * 1024 * 1024


def short(n: int = SHORT_TEXT_MAX) -> str:
    return HEAVY * n


def long(n: int = LONG_TEXT_MAX) -> str:
    return HEAVY * n


def json_size(name: str, body: dict[str, Any]) -> int:
    """Bytes of ``body`` as the limit counts them (``kbflow.events.body_size``)."""
    model = CaseStart if name == "case" else RULES[Event(name)].model
    return body_size(model.model_validate(body))


def weighing(party: str) -> dict[str, Any]:
    return {"necessary": True, "proportionate": True, "subsidiarity": True,
            "note": long(), "by": "x" * 40}


def persons() -> list[dict[str, Any]]:
    return [{"name": f"{i:02d}" + short(SHORT_TEXT_MAX - 2), "address": short(),
             "place_of_residence": short(),
             "date_of_birth": "2015-01-01", "role": "child" if i == 0 else "parent"}
            for i in range(PERSONS_MAX)]


def v_numbers() -> list[dict[str, Any]]:
    return [{"person": i, "v_number": f"{i:010d}"} for i in range(PERSONS_MAX)]


def fill_to_limit(name: str, body: dict[str, Any], list_field: str,
                  extra: int = 0) -> dict[str, Any]:
    """``body`` with ``list_field`` cut to what fits and a last text appended, sized so
    that the body is exactly ``BODY_MAX_BYTES`` + ``extra`` bytes."""
    chars = SHORT_TEXT_MAX if list_field == "dossier_documents" else LONG_TEXT_MAX
    items: list[str] = body[list_field]
    target = BODY_MAX_BYTES + extra
    items.pop()  # room for the last text, within the list's limit
    while len(items) > 1 and json_size(name, {**body, list_field: [*items, "a"]}) > target:
        items.pop()
    missing = target - json_size(name, {**body, list_field: [*items, "a"]})
    heavy, light = divmod(missing, 4)
    assert missing >= 0 and 1 + heavy + light <= chars, "the list cannot reach the limit"
    items.append("a" + HEAVY * heavy + "b" * light)
    assert json_size(name, body) == target
    return body


def largest(name: str, key: str, ruled_on: dt.date) -> dict[str, Any]:
    """The largest valid body of event ``name``: every field filled to its limit, and the
    body cut to ``BODY_MAX_BYTES`` where the fields could hold more."""
    common: dict[str, Any] = {"idempotency_key": key}
    bodies: dict[str, dict[str, Any]] = {
        "announce_investigation": {"sender": "RVDK", "weighing": weighing("RVDK")},
        "residence_information": {"sender": "IND", "weighing": weighing("IND"),
                                  "known_to_sender": True, "v_number": v_numbers(),
                                  "residence_status": short(), "procedure_history": long(),
                                  "removal_date": "2027-01-31"},
        "residence_information/DTV": {"sender": "DTV", "weighing": weighing("DTV"),
                                      "known_to_sender": True, "v_number": v_numbers(),
                                      "departure_procedure": {
                                          "travel_documents": True,
                                          "departure_feasible_short_term": False}},
        "investigation_decision": {"sender": "RVDK", "investigate": True},
        "investigation_result": {"sender": "RVDK", "court_request": "ots",
                                 "goals": [long()] * 2, "means": [long()] * GOALS_MAX},
        "court_ruling": {"sender": "RVDK", "measure": "ots", "ruled_on": ruled_on.isoformat(),
                         "summary": long(), "gi": {"name": short(), "contact": short()},
                         "goals": [long()] * 2, "means": [long()] * GOALS_MAX,
                         "ots_months": 12},
        "advice_availability_request": {"sender": "IND"},
        "advice_availability": {"sender": "DTV", "weighing": weighing("DTV"),
                                "advice_available": False},
        "advice_request": {"sender": "IND",
                           "vv_application": {"kind": "first", "filed_on": "2026-10-01",
                                              "document": long()},
                           "rvdk_report": long()},
        "advice": {"sender": "DTV", "return_perspective": long(), "transferability": long()},
        "extension_ruling": {"sender": "RVDK", "extended": True,
                             "ruled_on": ruled_on.isoformat(), "summary": long(),
                             "goals": [long()] * 2, "means": [long()] * GOALS_MAX,
                             "ots_months": 12},
        "extension_advice_request": {"sender": "IND",
                                     "vv_application": {"kind": "extension",
                                                        "filed_on": "2027-09-01",
                                                        "document": long()},
                                     "gi_report": long(), "rvdk_report": long()},
        "extension_advice": {"sender": "DTV", "return_perspective": long(),
                             "transferability": long()},
        "application_rejected": {"sender": "IND", "decision": "rejection",
                                 "procedure_history": long(),
                                 "dossier_documents": [short()] * DOSSIER_DOCUMENTS_MAX},
        "warm_handover": {"sender": "DTV", "handover_progress": long()},
        "weighing": {"sender": "AVIM", "weighing": weighing("AVIM")},
        "v_number_correction": {"sender": "IND", "v_number": v_numbers()},
    }
    body = {**bodies[name], **common}
    name = name.partition("/")[0]
    for list_field in ("means", "dossier_documents"):
        if list_field in body and json_size(name, body) > BODY_MAX_BYTES:
            return fill_to_limit(name, body, list_field)
    assert json_size(name, body) <= BODY_MAX_BYTES
    return body


def largest_start() -> dict[str, Any]:
    return {"persons": persons(), "reporter": "VT",
            "relaas": {"concerns": long(), "history": long(), "assistance": long()},
            "weighing": weighing("VT")}


#: A maximum case: every event type at its largest, in an order the rules allow.
MAXIMUM_CASE = ["weighing", "announce_investigation", "residence_information",
                "residence_information/DTV", "v_number_correction", "investigation_decision",
                "investigation_result", "court_ruling", "advice_availability_request",
                "advice_availability", "advice_request", "advice", "extension_ruling",
                "extension_advice_request", "extension_advice", "application_rejected",
                "warm_handover"]


def test_limits_of_the_largest_bodies() -> None:
    today = dt.date(2026, 12, 1)
    start = largest_start()
    assert json_size("case", {**start, "case_ref": f.new_case_ref()}) <= BODY_MAX_BYTES
    sizes = {name: json_size(name, largest(name, f.new_key(), today))
             for name in [*RULES, "residence_information/DTV"] if "/" not in name}
    # the events whose fields can hold more than the limit are cut exactly to it
    for name in ("investigation_result", "court_ruling", "extension_ruling",
                 "application_rejected"):
        assert sizes[name] == BODY_MAX_BYTES, name


@pytest.mark.parametrize("name", ["investigation_result", "court_ruling",
                                  "application_rejected"])
def test_one_byte_over_is_refused_at_the_edge(name: str) -> None:
    body = largest(name, f.new_key(), dt.date(2026, 12, 1))
    assert inputs.event_body(name, body)  # exactly the limit: accepted
    field = "dossier_documents" if name == "application_rejected" else "means"
    over = fill_to_limit(name, json.loads(json.dumps(body)), field, extra=1)
    with pytest.raises(inputs.InputError) as refused:
        inputs.event_body(name, over)
    message = str(refused.value)
    assert f"{BODY_MAX_BYTES + 1} bytes" in message and f"limit of {BODY_MAX_BYTES}" in message
    assert HEAVY not in message


@pytest.mark.parametrize(("field", "value", "limit"), [
    ("means", [long(10)] * (GOALS_MAX + 1), f"at most {GOALS_MAX} items"),
    ("goals", [long(LONG_TEXT_MAX + 1)], f"at most {LONG_TEXT_MAX} characters"),
])
def test_one_item_over_a_list_or_text_limit_is_refused(field: str, value: Any,
                                                         limit: str) -> None:
    body = {"sender": "RVDK", "idempotency_key": f.new_key(), "court_request": "ots",
            "goals": ["g"], "means": ["m"], field: value}
    with pytest.raises(inputs.InputError) as refused:
        inputs.event_body("investigation_result", body)
    assert field in str(refused.value) and limit in str(refused.value)


def test_one_v_nummer_too_many_is_refused() -> None:
    body = {"sender": "IND", "idempotency_key": f.new_key(), "known_to_sender": True,
            "v_number": [{"person": i % PERSONS_MAX, "v_number": f"{i:010d}"}
                         for i in range(PERSONS_MAX + 1)]}
    with pytest.raises(inputs.InputError, match=f"v_number: .*at most {PERSONS_MAX} items"):
        inputs.event_body("residence_information", body)


async def _send_raw(handle: WorkflowHandle[Any, Any], name: str,
                    body: dict[str, Any]) -> EventOutcome:
    # A dict goes through the client's converter as JSON as it is: no model, no CLI check.
    return await handle.execute_update(name, body, result_type=EventOutcome)


async def test_validator_refuses_oversized_bodies_from_clients_that_bypass_the_cli(
        client: Client, task_queue: str, worker: Worker) -> None:
    start = await plausible(client, f.case_start())
    handle = await client.start_workflow(CaseWorkflow.run, start, id=workflow_id(start.case_ref),
                                         task_queue=task_queue)
    name = "investigation_result"
    at_limit = largest(name, f.new_key(), dt.date(2026, 12, 1))
    over = fill_to_limit(name, json.loads(json.dumps(at_limit)), "means", extra=1)
    model = RULES[Event(name)].model
    # The model itself has no total limit: a client without the CLI's check sends it.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(name, model.model_validate(over), result_type=EventOutcome)
    message = str(refused.value.cause)
    over_limit = f"{BODY_MAX_BYTES + 1} bytes as compact JSON, over the limit of {BODY_MAX_BYTES}"
    assert over_limit in message
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # the size passes; the order not
        await handle.execute_update(name, model.model_validate(at_limit),
                                    result_type=EventOutcome)
    assert "bytes as compact JSON" not in str(refused.value.cause)  # refused on its merits
    outcome = await _send_raw(handle, "announce_investigation", {
        "sender": "RVDK", "idempotency_key": f.new_key(), "weighing": weighing("RVDK")})
    assert outcome.phase is Phase.ANNOUNCED  # the refusals changed nothing


async def test_a_maximum_case_runs_with_room_to_spare(
        client: Client, task_queue: str, worker: Worker, store: OutboxStore) -> None:
    case_ref = f.new_case_ref()
    start = await plausible(client, CaseStart.model_validate(
        {**largest_start(), "case_ref": case_ref}))
    handle = await client.start_workflow(CaseWorkflow.run, start, id=workflow_id(case_ref),
                                         task_queue=task_queue)
    reported = (await handle.describe()).start_time.date()
    for name in MAXIMUM_CASE:
        body = largest(name, f.new_key(), reported)
        outcome = await _send_raw(handle, name.partition("/")[0], body)
        assert not outcome.duplicate, name
    assert {name.partition("/")[0] for name in MAXIMUM_CASE} == {event.value for event in Event}
    status = await handle.query(CaseWorkflow.status)
    assert status.end_state is not None and status.end_state.value == "handed_over"
    assert len(store.packets(case_ref)) == 20  # 1 + 2 + 2 + 2 + 2 + 2 + 1 + 1 + 1 + 2 + ...

    history = await handle.fetch_history()
    failed = [e for e in history.events
              if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failed
    biggest_event = max(e.ByteSize() for e in history.events)
    # One workflow task's reply: the events its completion wrote, up to the next task.
    replies, current = [], 0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            replies.append(current)
            current = 0
        current += event.ByteSize()
    replies.append(current)
    assert biggest_event < PAYLOAD_LIMIT / 4, biggest_event
    assert max(replies) < MESSAGE_LIMIT / 4, max(replies)
    print(f"maximum case: {len(history.events)} history events, "
          f"{sum(e.ByteSize() for e in history.events)} bytes; largest event "
          f"{biggest_event} bytes; largest workflow-task reply about {max(replies)} bytes")
