"""Packets (kbflow/packets.py): a body holds ``persons`` plus exactly its flow's items.

Every (step, sender, recipient) of the process table is projected from a FULLY populated
case record, so that an item can only be missing from a body because the flow leaves it
out (PROCESS.md §5).
"""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import BaseModel, ValidationError

from kbflow.events import CaseStart, ResidenceInformation, Weighing
from kbflow.items import (
    CourtRuling,
    GiDetails,
    Person,
    PersonVNumber,
    Relaas,
    VvApplication,
)
from kbflow.packets import Packet, body_model, project_packet
from kbflow.process import (
    PROCESS_TABLE,
    Item,
    Party,
    Step,
    legal_basis_of,
    processing_activity_id,
)
from kbflow.record import CaseRecord
from tests import factories as f

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)

#: Every (step, sender, recipient) in the table.
TRIPLES = [
    (step, flow.sender, recipient)
    for step, spec in PROCESS_TABLE.items()
    for flow in spec.flows
    for recipient in flow.recipients
]
#: Every (step, sender) in the table.
FLOWS = [(step, flow.sender) for step, spec in PROCESS_TABLE.items() for flow in spec.flows]

#: A text that betrays each item's value in a packet's JSON (from tests/factories.py).
TELLTALE: dict[Item, str] = {
    Item.RELAAS: f.RELAAS.concerns,
    Item.V_NUMBER: f.V_NUMBERS[0],
    Item.RESIDENCE_STATUS: f.RESIDENCE_STATUS,
    Item.PROCEDURE_HISTORY: f.PROCEDURE_HISTORY,
    Item.REMOVAL_DATE: f.REMOVAL_DATE.isoformat(),
    Item.DEPARTURE_PROCEDURE: "departure_feasible_short_term",
    Item.DOSSIER_DOCUMENTS: f.DOSSIER_DOCUMENTS[0],
    Item.GOALS: f.GOALS[0],
    Item.MEANS: f.MEANS[0],
    Item.GI: f.GI_DETAILS.name,
    Item.COURT_RULING: f.RULING_SUMMARY,
    Item.VV_APPLICATION: f.VV_DOCUMENT,
    Item.RVDK_REPORT: f.RVDK_REPORT,
    Item.GI_REPORT: f.GI_REPORT,
    Item.RETURN_PERSPECTIVE: f.RETURN_PERSPECTIVE,
    Item.TRANSFERABILITY: f.TRANSFERABILITY,
    Item.HANDOVER_PROGRESS: f.HANDOVER_PROGRESS,
}


def _id(value: object) -> str:
    if isinstance(value, Step):
        return f"step{int(value)}"
    return str(getattr(value, "value", value))


def project(record: CaseRecord, step: Step, sender: Party, recipient: Party) -> Packet:
    return project_packet(record, step, sender, recipient, packet_id="packet-0001",
                          created_at=NOW)


@pytest.fixture(scope="module")
def record() -> CaseRecord:
    return f.full_record()


def test_full_record_knows_every_item(record: CaseRecord) -> None:
    # Guards the tests below: an item missing from the record would vanish from every body.
    for item in Item:
        for sender in (Party.IND, Party.DTV):
            assert record.value_of(item, sender) is not None, item
    assert {number.person for number in record.v_numbers} == set(range(len(record.persons)))


@pytest.mark.parametrize(("step", "sender", "recipient"), TRIPLES, ids=_id)
def test_body_holds_persons_and_exactly_the_flow_items(
    record: CaseRecord, step: Step, sender: Party, recipient: Party
) -> None:
    packet = project(record, step, sender, recipient)
    flow = PROCESS_TABLE[step].flow_of(sender)
    assert set(packet.body) == {"persons"} | {item.value for item in flow.items}
    assert packet.items == flow.items


@pytest.mark.parametrize(("step", "sender", "recipient"), TRIPLES, ids=_id)
def test_no_value_of_another_item_reaches_the_packet(
    record: CaseRecord, step: Step, sender: Party, recipient: Party
) -> None:
    packet = project(record, step, sender, recipient)
    text = packet.model_dump_json()
    flow_items = PROCESS_TABLE[step].flow_of(sender).items
    for item, telltale in TELLTALE.items():
        if item not in flow_items:
            assert telltale not in text, f"{item.value} leaks into step {int(step)}"


def packet_body(record: CaseRecord, step: Step, sender: Party, recipient: Party) -> dict:
    return project(record, step, sender, recipient).body


@pytest.mark.parametrize("step", [Step(6), Step(9), Step(11), Step(12)], ids=_id)
def test_steps_6_9_11_12_carry_no_v_number(record: CaseRecord, step: Step) -> None:
    for flow in PROCESS_TABLE[step].flows:
        for recipient in flow.recipients:
            packet = project(record, step, flow.sender, recipient)
            assert "v_number" not in packet.body
            assert not any(v in packet.model_dump_json() for v in f.V_NUMBERS)


@pytest.mark.parametrize(("step", "sender", "recipient"), TRIPLES, ids=_id)
def test_persons_are_naw_date_of_birth_and_role_only(
    record: CaseRecord, step: Step, sender: Party, recipient: Party
) -> None:
    packet = project(record, step, sender, recipient)
    persons = packet.body["persons"]
    assert len(persons) == len(record.persons)
    for person in persons:
        assert set(person) == {"name", "address", "place_of_residence", "date_of_birth", "role"}


@pytest.mark.parametrize(("step", "sender", "recipient"), TRIPLES, ids=_id)
def test_envelope_comes_from_the_table(
    record: CaseRecord, step: Step, sender: Party, recipient: Party
) -> None:
    packet = project(record, step, sender, recipient)
    spec = PROCESS_TABLE[step]
    flow = spec.flow_of(sender)
    assert (packet.step, packet.sender, packet.recipient) == (step, sender, recipient)
    assert packet.case_ref == record.case_ref
    assert packet.processing_activity_id == processing_activity_id(step, sender)
    assert packet.legal_basis == legal_basis_of(sender).value
    assert packet.purpose == spec.purpose
    assert packet.systems == tuple(system.value for system in spec.systems)
    assert packet.channel == flow.channel.value
    assert packet.created_at == NOW
    assert packet.persons == tuple(
        Person.model_validate(p.model_dump(include=set(Person.model_fields)))
        for p in record.persons
    )


def test_v_numbers_index_the_persons(record: CaseRecord) -> None:
    packet = project(record, Step.EXTENSION_ADVICE_REQUEST, Party.IND, Party.DTV)
    assert packet.body["v_number"] == [
        {"person": index, "v_number": number} for index, number in enumerate(f.V_NUMBERS)
    ]


@pytest.mark.parametrize("sender", [Party.IND, Party.DTV], ids=_id)
def test_sender_unknown_to_family_discloses_only_known_to_sender(
    record: CaseRecord, sender: Party
) -> None:
    other = Party.DTV if sender is Party.IND else Party.IND
    unknown = record.model_copy(update={"known_to": {sender: False, other: True}})
    packet = project(unknown, Step.RESIDENCE_INFORMATION, sender, Party.RVDK)
    assert set(packet.body) == {"persons", "known_to_sender"}
    assert packet.body["known_to_sender"] is False
    # The other sender, who knows the family, still sends its full step-3 packet.
    full = project(unknown, Step.RESIDENCE_INFORMATION, other, Party.RVDK)
    flow = PROCESS_TABLE[Step.RESIDENCE_INFORMATION].flow_of(other)
    assert set(full.body) == {"persons"} | {item.value for item in flow.items}
    assert full.body["known_to_sender"] is True


def test_unknown_items_are_left_out_of_the_body() -> None:
    start = f.case_start()
    record = CaseRecord.open(start)
    packet = project(record, Step.ADVICE_REQUEST, Party.IND, Party.DTV)
    assert set(packet.body) == {"persons"}  # nothing of step 8 is known yet


def test_packet_round_trips_through_json(record: CaseRecord) -> None:
    packet = project(record, Step.RESIDENCE_INFORMATION, Party.IND, Party.RVDK)
    assert Packet.model_validate_json(packet.model_dump_json()) == packet


# ---- refusals ---------------------------------------------------------------------------


def test_project_refuses_a_recipient_outside_the_flow(record: CaseRecord) -> None:
    with pytest.raises(ValidationError, match="recipient: GI gets nothing in step 6 from RVDK"):
        project(record, Step.COURT_RULING, Party.RVDK, Party.GI)


def test_project_refuses_a_sender_without_a_flow(record: CaseRecord) -> None:
    with pytest.raises(KeyError):
        project(record, Step.COURT_RULING, Party.IND, Party.DTV)
    with pytest.raises(KeyError):
        body_model(Step.ANNOUNCE_INVESTIGATION, Party.DTV)


def packet_fields(record: CaseRecord, step: Step, sender: Party, recipient: Party) -> dict:
    """The fields of a valid packet, to be spoiled one at a time."""
    return project(record, step, sender, recipient).model_dump()


@pytest.mark.parametrize("recipient", [Party.GI, Party.VT, Party.RVDK], ids=_id)
def test_packet_refuses_a_recipient_outside_the_flow(record: CaseRecord,
                                                     recipient: Party) -> None:
    data = packet_fields(record, Step.ADVICE_REQUEST, Party.IND, Party.DTV)
    with pytest.raises(ValidationError, match="recipient"):
        Packet.model_validate({**data, "recipient": recipient})


@pytest.mark.parametrize(("step", "sender"), FLOWS, ids=_id)
def test_body_models_refuse_extra_fields(record: CaseRecord, step: Step, sender: Party) -> None:
    model = body_model(step, sender)
    persons = [Person.model_validate(p.model_dump(include=set(Person.model_fields)))
               for p in record.persons]
    model.model_validate({"persons": persons})  # the base data alone is a valid body
    with pytest.raises(ValidationError, match="extra"):
        model.model_validate({"persons": persons, "favourite_colour": "blauw-Fictief"})


@pytest.mark.parametrize(("step", "sender"), FLOWS, ids=_id)
def test_body_models_refuse_items_of_other_flows(record: CaseRecord, step: Step,
                                                 sender: Party) -> None:
    model = body_model(step, sender)
    allowed = PROCESS_TABLE[step].flow_of(sender).items
    body = packet_body(record, Step.EXTENSION_ADVICE_REQUEST, Party.IND, Party.DTV)
    for item in (Item.V_NUMBER, Item.RELAAS):
        if item in allowed:
            continue
        value = f.full_record().value_of(item, sender)
        with pytest.raises(ValidationError) as error:
            model.model_validate({"persons": body["persons"], item.value: value})
        assert not f.leaked(str(error.value))


def test_packet_refuses_a_body_with_an_item_outside_the_flow(record: CaseRecord) -> None:
    data = packet_fields(record, Step.COURT_RULING, Party.RVDK, Party.IND)
    data["body"] = {**data["body"],
                    "v_number": [{"person": 0, "v_number": f.V_NUMBERS[0]}]}
    with pytest.raises(ValidationError) as error:
        Packet.model_validate(data)
    assert "v_number" in str(error.value)
    assert f.V_NUMBERS[0] not in str(error.value)
    assert not f.leaked(str(error.value))


def test_packet_refuses_a_body_without_persons(record: CaseRecord) -> None:
    data = packet_fields(record, Step.ADVICE, Party.DTV, Party.IND)
    with pytest.raises(ValidationError, match="persons"):
        Packet.model_validate({**data, "body": {**data["body"], "persons": []}})
    body = {k: v for k, v in data["body"].items() if k != "persons"}
    with pytest.raises(ValidationError, match="persons"):
        Packet.model_validate({**data, "body": body})


# ---- validation errors never echo the input --------------------------------------------

BAD_V_NUMBER = "00000000999"  # eleven digits: not a V-nummer
LONG_NAME = "Fenna Fictief " * 20  # longer than 200 characters


def _person(**changes: object) -> dict:
    return {**f.CHILD.model_dump(mode="json", exclude={"v_number"}), **changes}


ERROR_CASES: list[tuple[str, type[BaseModel], dict, str]] = [
    ("person-name", Person, _person(name=LONG_NAME), "Fenna Fictief"),
    ("person-date", Person, _person(date_of_birth="14-06-2017 Fictief"), "Fictief"),
    ("person-extra", Person, _person(v_number=f.V_NUMBERS[0]), f.V_NUMBERS[0]),
    ("v-number", PersonVNumber, {"person": 0, "v_number": BAD_V_NUMBER}, BAD_V_NUMBER),
    ("relaas", Relaas, {**f.RELAAS.model_dump(), "concerns": ""} | {"extra": f.RELAAS.history},
     f.RELAAS.history),
    ("gi", GiDetails, {"name": f.GI_DETAILS.name, "contact": 17}, f.GI_DETAILS.name),
    ("ruling", CourtRuling, {"measure": "ots-Fictief", "ruled_on": "2026-01-01",
                              "summary": f.RULING_SUMMARY}, "ots-Fictief"),
    ("vv", VvApplication, {"kind": "tweede-Fictief", "filed_on": "2026-01-01",
                           "document": f.VV_DOCUMENT}, "tweede-Fictief"),
    ("weighing", Weighing, {"necessary": "Fictief", "proportionate": True,
                            "subsidiarity": True, "note": "n", "by": "b"}, "Fictief"),
    ("residence", ResidenceInformation,
     {"sender": "IND", "idempotency_key": "ind-res-000001", "known_to_sender": True,
      "v_number": [{"person": 0, "v_number": BAD_V_NUMBER}]}, BAD_V_NUMBER),
    ("case-start", CaseStart,
     {"case_ref": "KB-2026-Fictief01", "persons": [_person()], "reporter": "VT",
      "relaas": f.RELAAS.model_dump(), "weighing": f.weighing(Party.VT).model_dump()},
     "Fictief01"),  # no capitals: not a case ref
]


@pytest.mark.parametrize(("model", "data", "secret"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_validation_errors_never_contain_the_input(model: type[BaseModel], data: dict,
                                                   secret: str) -> None:
    with pytest.raises(ValidationError) as error:
        model.model_validate(data)
    assert secret not in str(error.value)
    assert not f.leaked(str(error.value))


def test_body_model_errors_never_contain_the_input(record: CaseRecord) -> None:
    model = body_model(Step.RESIDENCE_INFORMATION, Party.IND)
    with pytest.raises(ValidationError) as error:
        model.model_validate({"persons": [_person(name=LONG_NAME)],
                              "v_number": [{"person": 0, "v_number": BAD_V_NUMBER}],
                              "residence_status": f.RESIDENCE_STATUS * 10})
    text = str(error.value)
    assert "v_number" in text and "residence_status" in text  # names the fields...
    assert BAD_V_NUMBER not in text and not f.leaked(text)  # ...never the values


def test_case_record_errors_never_contain_the_input(record: CaseRecord) -> None:
    with pytest.raises(ValidationError) as error:
        CaseRecord.model_validate({**record.model_dump(), "removal_date": "Fictief-datum"})
    assert not f.leaked(str(error.value))
