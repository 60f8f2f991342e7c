"""The processing log in Logboek Dataverwerkingen 1.0 record form (``kbflow.processing_log``).

Each new entry is one LDV record (trace and span ids, name, start and end time in ms,
status, the ``dpl.core`` attributes and kbflow's routing attributes) with no purpose or
legal basis (the register has them); lines already in a store in the earlier flat shape
are still read, and ``kbflow disclosures`` answers from both, with purpose and legal basis
from the register.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from activities.outbox_store import OutboxStore
from kbflow import trace
from kbflow.disclosures import access_answer, purpose_and_legal_basis, subject_id_of
from kbflow.packets import Packet, project_packet
from kbflow.process import Party, Step
from kbflow.processing_log import (
    LegacyProcessingLogEntry,
    ProcessingLogEntry,
    Status,
    entries_for,
    parse_entry,
)
from kbflow.register import register
from kbflow.settings import Settings
from starter.cli import app
from store.interface import PacketRow, ProcessingLogLine
from tests import factories as f

T0 = dt.datetime(2026, 3, 2, 9, 0, 0, 250000, tzinfo=dt.UTC)
DELIVERED = T0 + dt.timedelta(seconds=2)
RECORD_FIELDS = {"trace_id", "span_id", "parent_span_id", "name", "start_time", "end_time",
                 "status", "resource", "attributes"}
ATTRIBUTES = {"dpl.core.processing_activity_id", "dpl.core.data_subject_id",
              "dpl.core.data_subject_id_type", "kbflow.packet_id", "kbflow.case_ref",
              "kbflow.step", "kbflow.sender", "kbflow.recipient", "kbflow.items",
              "fsc.transaction_id"}


def _pseudonym(person: object) -> str:
    name = getattr(person, "name", "")
    return "subj-" + f"{abs(hash(name)) % 10**32:032d}"


def _packet(packet_id: str = "p-1") -> Packet:
    return project_packet(f.full_record(), Step.COURT_RULING, Party.RVDK, Party.IND,
                          packet_id=packet_id, created_at=T0)


def test_an_entry_is_an_ldv_record() -> None:
    packet = _packet()
    context = trace.TraceContext.start(trace.parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
    entries = entries_for(packet, _pseudonym, context, delivered_at=DELIVERED)
    assert len(entries) == len(f.full_record().persons)  # one per data subject
    for entry in entries:
        line = json.loads(entry.model_dump_json())
        assert set(line) == RECORD_FIELDS
        assert set(line["attributes"]) == ATTRIBUTES
        assert line["resource"] == {"attributes": {"service.name": "kbflow"}}
        assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert line["parent_span_id"] == context.span_id
        assert len(line["span_id"]) == 16 and line["span_id"] != context.span_id
        assert line["name"] == "disclose step-06 RVDK to IND"
        assert line["start_time"] == 1772442000250  # ms since the epoch: T0
        assert line["end_time"] == 1772442002250
        assert line["status"] == Status.OK == "Ok"
        attributes = line["attributes"]
        assert attributes["dpl.core.processing_activity_id"] == packet.processing_activity_id
        assert attributes["dpl.core.data_subject_id_type"] == "kbflow-pseudonym"
        assert (attributes["kbflow.step"], attributes["kbflow.sender"],
                attributes["kbflow.recipient"]) == (6, "RVDK", "IND")
        assert attributes["kbflow.items"] == sorted(packet.body)
        # the register holds these; the line does not repeat them (LDV)
        assert packet.purpose not in entry.model_dump_json()
        assert packet.legal_basis not in entry.model_dump_json()
        assert not f.leaked(entry.model_dump_json())
        assert parse_entry(entry.model_dump_json()) == entry
    assert len({entry.span_id for entry in entries}) == len(entries)
    assert entries[0].at == T0.replace(microsecond=250000)


def test_without_a_trace_each_packet_starts_one_under_its_delivery_span() -> None:
    first = entries_for(_packet("p-1"), _pseudonym)
    second = entries_for(_packet("p-2"), _pseudonym)
    assert len({e.trace_id for e in first}) == 1 and len({e.parent_span_id for e in first}) == 1
    assert first[0].trace_id != second[0].trace_id
    assert first[0].parent_span_id is not None


def _legacy_line(packet: Packet, subject: str, purpose: str | None = None,
                 activity: str | None = None) -> str:
    """A line as written before the LDV form (flat, with purpose and legal basis)."""
    return json.dumps({
        "packet_id": packet.packet_id, "case_ref": packet.case_ref, "step": int(packet.step),
        "sender": packet.sender.value, "recipient": packet.recipient.value,
        "processing_activity_id": activity or packet.processing_activity_id,
        "data_subject_id": subject, "data_subject_id_type": "kbflow-pseudonym",
        "purpose": purpose or packet.purpose, "legal_basis": packet.legal_basis,
        "items": sorted(packet.body), "at": packet.created_at.isoformat()})


def test_a_line_of_the_earlier_shape_is_read_as_it_is() -> None:
    packet = _packet()
    entry = parse_entry(_legacy_line(packet, "subj-" + "1" * 32))
    assert isinstance(entry, LegacyProcessingLogEntry)
    assert (entry.packet_id, entry.step, entry.recipient, entry.at, entry.trace_id) == (
        "p-1", Step.COURT_RULING, Party.IND, T0, None)
    with pytest.raises(ValidationError):
        parse_entry('{"trace_id": "not hex"}')
    with pytest.raises(ValidationError):
        parse_entry("not json")


def test_purpose_and_legal_basis_come_from_the_register() -> None:
    packet = _packet()
    [activity] = [a for a in register()
                  if a.processing_activity_id == packet.processing_activity_id]
    new = entries_for(packet, _pseudonym)[0]
    assert purpose_and_legal_basis(new) == (activity.purpose, activity.legal_basis)
    old = parse_entry(_legacy_line(packet, new.data_subject_id, purpose="written then"))
    assert purpose_and_legal_basis(old) == (activity.purpose, activity.legal_basis)
    # An activity version the register no longer lists: the old line keeps its own; a
    # new one gets its step and sender's current activity.
    retired = packet.processing_activity_id.replace(":v", ":v0")
    kept = parse_entry(_legacy_line(packet, new.data_subject_id, purpose="written then",
                                    activity=retired))
    assert purpose_and_legal_basis(kept) == ("written then", packet.legal_basis)
    moved = new.model_copy(update={"attributes": new.attributes.model_copy(
        update={"processing_activity_id": retired})})
    assert purpose_and_legal_basis(moved) == (activity.purpose, activity.legal_basis)


def test_an_answer_over_both_shapes_lists_both_alike() -> None:
    packet = _packet()
    subject = subject_id_of(f.CHILD.name, f.CHILD.date_of_birth, _pseudonym)
    old = parse_entry(_legacy_line(packet.model_copy(update={"packet_id": "p-old"}), subject))
    new = [e for e in entries_for(packet, _pseudonym) if e.data_subject_id == subject]
    answer = access_answer(subject, [old, *new])
    first, second = answer.disclosures
    assert {first.packet_id, second.packet_id} == {"p-old", "p-1"}
    assert first.model_dump(exclude={"packet_id", "at"}) == second.model_dump(
        exclude={"packet_id", "at"})
    assert first.purpose == packet.purpose and first.legal_basis == packet.legal_basis


def test_a_store_holding_both_shapes_answers_kbflow_disclosures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KBFLOW_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("KBFLOW_MASTER_KEYS", raising=False)
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    store = OutboxStore(Settings.from_env())
    old_packet = project_packet(f.full_record(), Step.RESIDENCE_INFORMATION, Party.IND,
                                Party.RVDK, packet_id="p-old", created_at=T0)
    subject = store.pseudonymise(f.CHILD)
    # an old line, as a store written before this form holds it (append-only: kept)
    assert store.records.add_packet(
        PacketRow("p-old", old_packet.case_ref, 3, "IND", "RVDK", T0.isoformat(), "k", b"x"),
        lambda: [ProcessingLogLine("p-old", subject, old_packet.case_ref,
                                   _legacy_line(old_packet, subject))])
    new_packet = _packet().model_copy(update={"case_ref": old_packet.case_ref})
    with trace.use(trace.TraceContext.start()):
        assert store.deliver(new_packet)
    log = store.processing_log(old_packet.case_ref)
    assert {type(entry) for entry in log} == {LegacyProcessingLogEntry, ProcessingLogEntry}

    done = CliRunner().invoke(app, ["disclosures", "--name", f.CHILD.name, "--date-of-birth",
                                    f.CHILD.date_of_birth.isoformat(), "--json"])
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert [d["packet_id"] for d in answer["disclosures"]] == ["p-old", "p-1"]
    for disclosure, packet in zip(answer["disclosures"], (old_packet, new_packet),
                                  strict=True):
        assert (disclosure["purpose"], disclosure["legal_basis"]) == (
            packet.purpose, packet.legal_basis)
        assert disclosure["processing_activity_id"] == packet.processing_activity_id
    assert not f.leaked(done.stdout)


def test_the_readme_names_the_record_fields_as_written() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("**The processing log** follows")
    paragraph = readme[start:readme.index("\n\n", start)]
    named = set(re.findall(r"`([a-z_.]+)`", paragraph))
    assert named >= RECORD_FIELDS | ATTRIBUTES
    entry = entries_for(_packet(), _pseudonym)[0]
    assert f"`{entry.name}`" in paragraph and f"(`{entry.status}`)" in paragraph
