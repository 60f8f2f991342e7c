"""Access requests (GDPR art. 15): ``kbflow/disclosures.py`` and ``kbflow disclosures``.

Packets of two fictional cases are delivered into an outbox store in the CLI's data dir;
the answer for a person lists exactly the disclosures of their data — recipient
organisation by name, sender, step, purpose, legal basis, items, time, case ref — and
prints no personal value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext
from typer.testing import CliRunner, Result

from activities.outbox_store import DecodeLog, OutboxStore
from activities.pseudonyms import Pseudonymiser
from encryption.codec import CaseCodec
from encryption.codec_server import JsonPayload, create_app
from encryption.keys import KeyStore
from encryption.operators import OperatorStore
from kbflow.disclosures import SUBJECT_ID, access_answer, lookup_person, subject_id_of
from kbflow.items import Role
from kbflow.packets import Packet, project_packet
from kbflow.process import PARTY_NAMES, PROCESS_TABLE, RETENTION_AFTER_CLOSE, Party, Step
from kbflow.processing_log import entries_for
from kbflow.record import CaseRecord
from kbflow.settings import Settings, workflow_id
from starter.cli import app
from tests import factories as f

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KBFLOW_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("KBFLOW_MASTER_KEYS", raising=False)
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def delivered(data_dir: Path) -> list[Packet]:
    """Case 1 (child, parent, sibling): steps 3 and 6; case 2 (the parent only): step 2.
    Delivered out of time order, to see the answer sorted."""
    store = OutboxStore(Settings.from_env())
    first = f.full_record()
    second = CaseRecord.model_validate({**f.full_record().model_dump(),
                                        "case_ref": f.new_case_ref(), "persons": (f.PARENT,)})
    packets = [
        project_packet(second, Step.ANNOUNCE_INVESTIGATION, Party.RVDK, Party.IND,
                       packet_id="p-4", created_at=T0 + dt.timedelta(days=30)),
        project_packet(first, Step.RESIDENCE_INFORMATION, Party.IND, Party.RVDK,
                       packet_id="p-1", created_at=T0),
        project_packet(first, Step.COURT_RULING, Party.RVDK, Party.DTV,
                       packet_id="p-2", created_at=T0 + dt.timedelta(days=10)),
        project_packet(first, Step.COURT_RULING, Party.RVDK, Party.IND,
                       packet_id="p-3", created_at=T0 + dt.timedelta(days=10)),
    ]
    for packet in packets:
        assert store.deliver(packet)
    return sorted(packets, key=lambda packet: packet.packet_id)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["disclosures", *args])


def _json(*args: str) -> dict[str, Any]:
    done = _invoke(*args, "--json")
    assert done.exit_code == 0, done.output
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def _person_args(name: str, born: dt.date) -> tuple[str, ...]:
    return ("--name", name, "--date-of-birth", born.isoformat())


def test_the_answer_lists_every_disclosure_of_the_child(delivered: list[Packet]) -> None:
    answer = _json(*_person_args(f.CHILD.name, f.CHILD.date_of_birth))
    assert SUBJECT_ID.match(answer["data_subject_id"])
    by_packet = {packet.packet_id: packet for packet in delivered}
    got = answer["disclosures"]
    assert [d["packet_id"] for d in got] == ["p-1", "p-2", "p-3"]  # oldest first
    for disclosure in got:
        packet = by_packet[disclosure["packet_id"]]
        assert disclosure["recipient"] == {"code": packet.recipient.value,
                                           "name": PARTY_NAMES[packet.recipient]}
        assert disclosure["sender"] == {"code": packet.sender.value,
                                        "name": PARTY_NAMES[packet.sender]}
        assert disclosure["step"] == int(packet.step)
        assert disclosure["step_title"] == PROCESS_TABLE[packet.step].title
        assert disclosure["purpose"] == packet.purpose
        assert disclosure["legal_basis"] == packet.legal_basis
        assert set(disclosure["items"]) == set(packet.body)
        assert len(disclosure["data_categories"]) == len(disclosure["items"])
        assert dt.datetime.fromisoformat(disclosure["at"]) == packet.created_at
        assert disclosure["case_ref"] == packet.case_ref
        assert disclosure["processing_activity_id"] == packet.processing_activity_id
    assert [d["recipient"]["name"] for d in got] == [
        "Raad voor de Kinderbescherming", "Dienst Terugkeer en Vertrek",
        "Immigratie- en Naturalisatiedienst"]
    assert f"{RETENTION_AFTER_CLOSE.days} days" in answer["storage_period"]


def test_the_parent_is_found_across_cases(delivered: list[Packet]) -> None:
    answer = _json(*_person_args(f.PARENT.name, f.PARENT.date_of_birth))
    got = answer["disclosures"]
    assert [d["packet_id"] for d in got] == ["p-1", "p-2", "p-3", "p-4"]
    assert len({d["case_ref"] for d in got}) == 2
    assert got[-1]["step"] == 2 and got[-1]["items"] == ["persons"]


def test_the_name_is_matched_as_the_log_matched_it(delivered: list[Packet]) -> None:
    exact = _json(*_person_args(f.CHILD.name, f.CHILD.date_of_birth))
    sloppy = _json(*_person_args("  fenna   FICTIEF ", f.CHILD.date_of_birth))
    assert sloppy == exact
    by_subject = _json("--subject", exact["data_subject_id"])
    assert by_subject == exact


def test_someone_else_gets_an_empty_answer(delivered: list[Packet]) -> None:
    other_day = _json(*_person_args(f.CHILD.name, f.CHILD.date_of_birth
                                    + dt.timedelta(days=1)))
    assert other_day["disclosures"] == []
    done = _invoke(*_person_args("Niemand Fictief", dt.date(2000, 1, 1)))
    assert done.exit_code == 0, done.output
    assert "disclosures: none recorded" in done.stdout


def test_the_text_answer_names_organisations_and_no_personal_value(
        delivered: list[Packet]) -> None:
    done = _invoke(*_person_args(f.SIBLING.name, f.SIBLING.date_of_birth))
    assert done.exit_code == 0, done.output
    text = done.stdout
    assert not f.leaked(text)  # not even the name asked about
    assert "disclosures: 3" in text
    assert ("recipients: Raad voor de Kinderbescherming (RVDK), Dienst Terugkeer en Vertrek "
            "(DTV), Immigratie- en Naturalisatiedienst (IND)") in text
    assert "to:          Dienst Terugkeer en Vertrek (DTV)" in text
    assert "from:        Immigratie- en Naturalisatiedienst (IND)" in text
    assert "step 6: Court ruling" in text
    assert "court_ruling (the court's ruling on the measure)" in text
    assert "legal basis: GDPR art. 6(1)(c)" in text
    for packet in delivered[:3]:
        assert f"case {packet.case_ref}" in text
    assert "2026-03-02 09:00:00 UTC" in text
    json_text = _invoke(*_person_args(f.SIBLING.name, f.SIBLING.date_of_birth),
                        "--json").stdout
    assert not f.leaked(json_text)


@pytest.mark.parametrize(("args", "reason"), [
    ((), "give --subject, or --name and --date-of-birth"),
    (("--subject", "subj-" + "0" * 32, "--name", "Fenna Fictief"),
     "give --subject, or --name and --date-of-birth"),
    (("--name", "Fenna Fictief"), "--name and --date-of-birth go together"),
    (("--date-of-birth", "2017-06-14"), "--name and --date-of-birth go together"),
    (("--name", "Fenna Fictief", "--date-of-birth", "14-06-2017"),
     "--date-of-birth: must be a date, YYYY-MM-DD"),
    (("--name", "", "--date-of-birth", "2017-06-14"), "--name: must be 1 to 200 characters"),
    (("--subject", "Fenna Fictief"), "--subject: must be subj- followed by 32 hex characters"),
])
def test_bad_requests_are_refused_in_one_line(delivered: list[Packet], args: tuple[str, ...],
                                              reason: str) -> None:
    done = _invoke(*args)
    assert done.exit_code == 1, done.output
    assert done.stderr.strip().splitlines() == [f"error: {reason}"]
    assert not f.leaked(done.stderr)
    assert done.stdout == ""


def test_without_the_workers_data_dir_it_says_so(data_dir: Path) -> None:
    done = _invoke(*_person_args(f.CHILD.name, f.CHILD.date_of_birth))
    assert done.exit_code == 1
    assert "no processing log at" in done.stderr
    assert not (data_dir / "pseudonym.key").exists()  # no fresh key that matches nobody


def test_access_answer_is_pure() -> None:
    record = f.full_record()
    packet = project_packet(record, Step.WARM_HANDOVER, Party.DTV, Party.GI, packet_id="p-9",
                            created_at=T0)

    def pseudonymise(person: Any) -> str:
        return f"subj-{abs(hash((person.name, person.date_of_birth))) % 10**32:032d}"

    log = entries_for(packet, pseudonymise)
    subject = subject_id_of(f.CHILD.name, f.CHILD.date_of_birth, pseudonymise)
    answer = access_answer(subject, log)
    assert [d.recipient.name for d in answer.disclosures] == ["Gecertificeerde Instelling"]
    meanings = dict(zip(answer.disclosures[0].items, answer.disclosures[0].data_categories,
                        strict=True))
    assert meanings["handover_progress"].startswith("progress in handing")
    assert meanings["persons"].startswith("name, address")
    assert answer.recipients == (answer.disclosures[0].recipient,)
    person = lookup_person(f.CHILD.name, f.CHILD.date_of_birth)
    assert (person.name, person.date_of_birth, person.role) == (
        f.CHILD.name, f.CHILD.date_of_birth, Role.CHILD)


# ---- Unicode: a name typed in NFD or NFC (issue 6 finding 5) ------------------------------

NFC_NAME = "Zo\u00eb \u00c7elik-Fictief"  # Zoë Çelik-Fictief, precomposed
NFD_NAME = unicodedata.normalize("NFD", NFC_NAME)  # the same letters, as macOS types them


@pytest.mark.parametrize(("logged", "asked"), [(NFD_NAME, NFC_NAME), (NFC_NAME, NFD_NAME)],
                         ids=["logged-nfd-asked-nfc", "logged-nfc-asked-nfd"])
def test_a_name_is_found_however_it_was_typed(data_dir: Path, logged: str, asked: str) -> None:
    assert NFC_NAME != NFD_NAME
    store = OutboxStore(Settings(data_dir=data_dir))
    child = f.CHILD.model_copy(update={"name": logged})
    record = CaseRecord.model_validate({**f.full_record().model_dump(),
                                        "persons": (child, f.PARENT)})
    assert store.deliver(project_packet(record, Step.ANNOUNCE_INVESTIGATION, Party.RVDK,
                                        Party.IND, packet_id="p-u", created_at=T0))
    answer = _json(*_person_args(asked, f.CHILD.date_of_birth))
    assert [d["packet_id"] for d in answer["disclosures"]] == ["p-u"]
    assert answer == _json(*_person_args(asked.upper(), f.CHILD.date_of_birth))


def test_nfc_names_keep_their_pseudonym() -> None:
    key = bytes(range(32))
    pseudonymise = Pseudonymiser(key)
    for name in ("Fenna Fictief", "  Zo\u00eb  \u00c7elik-Fictief ", "\u00c5sa \u00d8verzon",
                 "Ay\u015fe Verzonnen"):
        old_form = " ".join(name.casefold().split())  # what pseudonyms were computed on
        message = f"{old_form}|{f.CHILD.date_of_birth.isoformat()}".encode()
        old = "subj-" + hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
        assert subject_id_of(name, f.CHILD.date_of_birth, pseudonymise) == old
    nfd = unicodedata.normalize("NFD", "Zo\u00eb \u00c7elik-Fictief")
    assert subject_id_of(nfd, f.CHILD.date_of_birth, pseudonymise) == subject_id_of(
        "Zo\u00eb \u00c7elik-Fictief", f.CHILD.date_of_birth, pseudonymise)


# ---- operators' looks (issue 7, governed decoding) -----------------------------------------

OPERATOR = "rvdk-ops-017"


def _decode_through_the_codec_server(settings: Settings, *cases: tuple[str, int]) -> None:
    """One request to the codec server, by ``OPERATOR``, decoding ``count`` payloads of
    each ``(case_ref, count)`` (encrypted as the worker encrypts them)."""
    keys = KeyStore.open(settings)
    payloads: list[Payload] = []
    for case_ref, count in cases:
        codec = CaseCodec(keys).with_context(WorkflowSerializationContext(
            namespace="default", workflow_id=workflow_id(case_ref)))
        plain = [Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')] * count
        payloads += asyncio.run(codec.encode(plain))
    operators = OperatorStore.open(settings)
    token = operators.issue(OPERATOR)
    app = create_app(keys, operators, DecodeLog(settings.outbox_path), [])
    with TestClient(app) as http:
        done = http.post(f"/t/{token}/decode", json={"payloads": [
            JsonPayload.from_proto(p).model_dump() for p in payloads]})
    assert done.status_code == 200, done.text
    operators.revoke(OPERATOR)


def test_the_answer_names_the_operators_who_looked_at_the_case(
        delivered: list[Packet]) -> None:
    first = next(p.case_ref for p in delivered if p.packet_id == "p-1")
    second = next(p.case_ref for p in delivered if p.packet_id == "p-4")
    _decode_through_the_codec_server(Settings.from_env(), (first, 3), (second, 1))

    child = _json(*_person_args(f.CHILD.name, f.CHILD.date_of_birth))
    [look] = child["operator_looks"]  # the child is in the first case only
    assert (look["operator_id"], look["case_ref"], look["payload_count"]) == (
        OPERATOR, first, 3)
    assert dt.datetime.fromisoformat(look["at"]) > T0
    parent = _json(*_person_args(f.PARENT.name, f.PARENT.date_of_birth))
    assert sorted((look["case_ref"], look["payload_count"])
                  for look in parent["operator_looks"]) == sorted([(first, 3), (second, 1)])

    done = _invoke(*_person_args(f.CHILD.name, f.CHILD.date_of_birth))
    assert done.exit_code == 0, done.output
    assert "operator looks (decodes through the codec server): 1" in done.stdout
    [line] = [line for line in done.stdout.splitlines() if f"operator {OPERATOR}" in line]
    assert line.endswith(f"case {first}  operator {OPERATOR}  3 payload(s)")
    assert not f.leaked(done.stdout)


def test_without_looks_the_answer_says_none(delivered: list[Packet]) -> None:
    done = _invoke(*_person_args(f.CHILD.name, f.CHILD.date_of_birth))
    assert "operator looks (decodes through the codec server): none recorded" in done.stdout
    assert _json(*_person_args(f.CHILD.name, f.CHILD.date_of_birth))["operator_looks"] == []


def test_a_processing_log_written_before_decodes_were_logged_has_none(tmp_path: Path) -> None:
    import sqlite3

    older = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(older) as db:  # a store from before the decodes table
        db.execute("CREATE TABLE processing_log (packet_id TEXT)")
    assert DecodeLog(older, read_only=True).entries() == []
    assert DecodeLog(tmp_path / "missing.sqlite3", read_only=True).entries() == []
