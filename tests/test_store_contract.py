"""The state store's contract (``store.interface``), on both backends: SQLite files in a
data dir, and a real PostgreSQL that the session starts (``tests/postgres.py``; never
skipped).

Each contract test runs once per backend (``backend``): insert-once writes, order,
erasure, the append-only processing log, data keys created once per scope, operator
tokens, documents (once per id, their readers, deleted by erasure), read-only mode,
migrations (idempotent, concurrent, and a data dir made before them), and one-line
errors that never show the URL's password. Races of two writers run on threads against
PostgreSQL (and SQLite). The stores kbflow builds on it
(``OutboxStore``, ``KeyStore``, ``OperatorStore``, ``DecodeLog``) and one case driven
by a worker run on PostgreSQL too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client
from typer.testing import CliRunner

from activities.documents import DocumentForbidden, DocumentGone, DocumentStore
from activities.outbox_store import DecodeLog, OutboxStore, PacketUnreadable
from activities.pseudonyms import Pseudonymiser
from encryption.keys import KeyStore, KeyUnavailable, MasterKeys
from encryption.operators import OperatorError, OperatorStore
from encryption.sealed import PartyKeys
from encryption.storage import StorageError
from kbflow.packets import Packet, project_packet
from kbflow.process import Party, Step
from kbflow.processing_log import DecodeEntry
from kbflow.settings import Settings, SettingsError, workflow_id
from starter.cli import app
from store import close_stores, open_store
from store.interface import (
    AcknowledgementRecords,
    AcknowledgementRow,
    CasePartyRow,
    DataKeyRecords,
    DataKeyRow,
    DecodeLine,
    DecodeRecords,
    DocumentRecords,
    DocumentRow,
    OperatorTokenRecords,
    OutboxRecords,
    PacketRow,
    ProcessingLogLine,
    ReminderRow,
    StateStore,
    SubscriptionRecords,
    SubscriptionRow,
)
from store.postgres import PostgresStore, reason, redacted
from store.schema import latest_version, migrations
from store.sqlite import SqliteStore, migrate
from tests import factories as f
from tests.postgres import APP_ROLE, PostgresServer, binaries, running_postgres

BACKENDS = ["sqlite", "postgres"]
MASTER = f"mk-contract:{'ab' * 32}"
SHARED_SECRETS = {"KBFLOW_MASTER_KEYS": MASTER, "KBFLOW_PSEUDONYM_KEY": "cd" * 32}


@dataclass
class Backend:
    """One backend under test: how to open its store (read-only or not), its settings."""

    name: str
    settings: Settings
    raw: Callable[[], Any]  # a DB-API connection straight to the backend, bypassing kbflow

    def open(self, *, read_only: bool = False) -> StateStore:
        return open_store(self.settings, read_only=read_only)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path / "data")
        yield Backend("sqlite", settings, lambda: sqlite3.connect(settings.outbox_path))
        return
    url = request.getfixturevalue("postgres_url")
    yield Backend("postgres", _shared(url, tmp_path), lambda: psycopg.connect(url))


def _party_keys(tmp_path: Path) -> Path:
    """A folder with every party's key pair, as ops would hand it to each host."""
    made = PartyKeys.open(Settings(data_dir=tmp_path / "ops"))
    for party in Party:
        made.public_key(party)
    return made.folder


def _shared(url: str, tmp_path: Path) -> Settings:
    """Settings of a host on the PostgreSQL store ``url``, with the shared secrets."""
    return Settings(data_dir=tmp_path / "data", store_url=url, master_keys=MASTER,
                    pseudonym_key=SHARED_SECRETS["KBFLOW_PSEUDONYM_KEY"],
                    party_keys_dir=_party_keys(tmp_path))


def _packet(packet_id: str, case_ref: str = "KB-2026-AAAA1111", *, step: int = 1,
            recipient: str = "IND", at: str = "2026-03-01T10:00:00+00:00") -> PacketRow:
    return PacketRow(packet_id, case_ref, step, "RVDK", recipient, at, "dk-1",
                     b"\x00sealed\xff" + packet_id.encode())


def _lines(packet: PacketRow, subjects: int = 2) -> list[ProcessingLogLine]:
    return [ProcessingLogLine(packet.packet_id, f"subj-{n}", packet.case_ref,
                              f'{{"packet":"{packet.packet_id}","n":{n}}}')
            for n in range(subjects)]


def _add(outbox: OutboxRecords, packet: PacketRow, subjects: int = 2) -> bool:
    return outbox.add_packet(packet, lambda: _lines(packet, subjects))


# ---- outbox and processing log ----------------------------------------------------------

def test_a_packet_is_stored_once_with_its_log_lines(backend: Backend) -> None:
    outbox = backend.open().outbox
    packet = _packet("pkt-1")
    calls: list[int] = []

    def lines() -> list[ProcessingLogLine]:
        calls.append(1)
        return _lines(packet)

    assert outbox.add_packet(packet, lines) is True
    assert outbox.add_packet(packet, lines) is False  # a retried delivery
    assert len(calls) == 1  # the retry computed no log lines
    assert outbox.packet_rows() == [packet]
    assert outbox.processing_log_lines() == [line.entry_json for line in _lines(packet)]


def test_two_workers_racing_on_one_packet_store_it_once(backend: Backend) -> None:
    # Two "workers": separate stores (PostgreSQL: separate pools), eight threads.
    stores = [backend.open().outbox, open_store(backend.settings).outbox]
    packet = _packet("pkt-race")
    barrier = threading.Barrier(8)

    def deliver(n: int) -> bool:
        barrier.wait()
        return stores[n % 2].add_packet(packet, lambda: _lines(packet, 3))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(deliver, range(8)))
    assert results.count(True) == 1 and results.count(False) == 7
    assert len(stores[0].packet_rows()) == 1
    assert len(stores[1].processing_log_lines()) == 3  # one line per data subject, once


def test_a_packet_whose_log_lines_fail_is_not_stored(backend: Backend) -> None:
    outbox = backend.open().outbox
    packet = _packet("pkt-fail")

    def broken() -> list[ProcessingLogLine]:
        raise RuntimeError("pseudonym key unavailable")

    with pytest.raises(RuntimeError):
        outbox.add_packet(packet, broken)
    assert outbox.packet_rows() == []  # one transaction: no packet without its log
    assert outbox.add_packet(packet, lambda: _lines(packet)) is True  # the retry delivers


def test_lists_come_in_order_and_filter(backend: Backend) -> None:
    outbox = backend.open().outbox
    later = _packet("pkt-b", at="2026-03-02T10:00:00+00:00")
    step_2 = _packet("pkt-c", step=2, recipient="DTV")
    step_1 = _packet("pkt-d", step=1, recipient="DTV")
    other = _packet("pkt-e", "KB-2026-BBBB2222", recipient="DTV")
    for packet in (later, step_2, step_1, other):
        assert _add(outbox, packet, 1)
    # by created_at, then step, then insertion
    assert [p.packet_id for p in outbox.packet_rows()] == ["pkt-d", "pkt-e", "pkt-c", "pkt-b"]
    assert [p.packet_id for p in outbox.packet_rows("KB-2026-AAAA1111")] == [
        "pkt-d", "pkt-c", "pkt-b"]
    assert [p.packet_id for p in outbox.packet_rows(recipient="DTV")] == [
        "pkt-d", "pkt-e", "pkt-c"]
    assert [p.packet_id for p in outbox.packet_rows("KB-2026-BBBB2222", "IND")] == []
    # the log in insertion order, by case and by data subject
    assert [line.split('"')[3] for line in outbox.processing_log_lines()] == [
        "pkt-b", "pkt-c", "pkt-d", "pkt-e"]
    assert len(outbox.processing_log_lines(case_ref="KB-2026-BBBB2222")) == 1
    assert len(outbox.processing_log_lines(data_subject_id="subj-0")) == 4
    assert outbox.processing_log_lines("KB-2026-BBBB2222", "subj-9") == []


# ---- the agencies' API: case parties, acknowledgements, inbox pages -------------------

def test_case_parties_are_recorded_once_in_order(backend: Backend) -> None:
    records = backend.open().acknowledgements
    ind = CasePartyRow("KB-2026-AAAA1111", "IND", "0" * 20, "2026-03-01T10:00:00+00:00")
    gi = CasePartyRow("KB-2026-AAAA1111", "GI", "1" * 20, "2026-03-02T10:00:00+00:00")
    other_gi = CasePartyRow("KB-2026-AAAA1111", "GI", "2" * 20, "2026-03-03T10:00:00+00:00")
    assert records.record_case_party(ind) and records.record_case_party(gi)
    assert not records.record_case_party(ind)  # once per case, party and OIN
    assert records.record_case_party(other_gi)  # another GI is another row
    assert records.case_parties("KB-2026-AAAA1111") == [ind, gi, other_gi]
    assert records.case_parties("KB-2026-BBBB2222") == []


def test_inbox_pages_by_insertion_and_filters(backend: Backend) -> None:
    opened = backend.open()
    outbox, records = opened.outbox, opened.acknowledgements
    # inserted out of created_at order: pages follow insertion, not time
    packets = [_packet(f"pkt-{n}", "KB-2026-AAAA1111" if n % 2 else "KB-2026-BBBB2222",
                       at=f"2026-03-0{9 - n}T10:00:00+00:00") for n in range(5)]
    for packet in packets:
        assert _add(outbox, packet, 1)
    assert _add(outbox, _packet("pkt-dtv", recipient="DTV"), 1)
    first = records.inbox_page("IND", limit=2)
    assert [row.packet.packet_id for row in first] == ["pkt-0", "pkt-1"]
    assert first[0].packet == packets[0] and first[0].acknowledgement is None
    second = records.inbox_page("IND", after=first[-1].seq, limit=2)
    assert [row.packet.packet_id for row in second] == ["pkt-2", "pkt-3"]
    last = records.inbox_page("IND", after=second[-1].seq, limit=2)
    assert [row.packet.packet_id for row in last] == ["pkt-4"]
    assert records.inbox_page("IND", after=last[-1].seq) == []
    assert [row.packet.packet_id for row in records.inbox_page(
        "IND", case_ref="KB-2026-AAAA1111")] == ["pkt-1", "pkt-3"]
    ack = AcknowledgementRow("pkt-1", "IND", "0" * 20, "2026-03-10T10:00:00+00:00")
    assert records.acknowledge(ack) == ack
    later = AcknowledgementRow("pkt-1", "IND", "0" * 20, "2026-03-11T10:00:00+00:00")
    assert records.acknowledge(later) == ack  # the first receipt stays on record
    assert [row.packet.packet_id for row in records.inbox_page(
        "IND", acknowledged=True)] == ["pkt-1"]
    assert [row.packet.packet_id for row in records.inbox_page(
        "IND", acknowledged=False)] == ["pkt-0", "pkt-2", "pkt-3", "pkt-4"]
    found = records.inbox_packet("pkt-1")
    assert found is not None and found.packet == packets[1] and found.acknowledgement == ack
    assert records.inbox_packet("pkt-none") is None
    # only cases where the OIN is recorded for the recipient
    assert records.inbox_page("IND", recorded_oin="0" * 20) == []
    records.record_case_party(CasePartyRow("KB-2026-BBBB2222", "IND", "0" * 20, "t"))
    records.record_case_party(CasePartyRow("KB-2026-AAAA1111", "DTV", "0" * 20, "t"))
    assert [row.packet.packet_id for row in records.inbox_page(
        "IND", recorded_oin="0" * 20)] == ["pkt-0", "pkt-2", "pkt-4"]


def test_two_acknowledgements_at_once_record_the_first(backend: Backend) -> None:
    opened = backend.open()
    assert _add(opened.outbox, _packet("pkt-ack"), 1)
    stores = [opened.acknowledgements, open_store(backend.settings).acknowledgements]
    barrier = threading.Barrier(6)

    def acknowledge(n: int) -> AcknowledgementRow:
        barrier.wait()
        return stores[n % 2].acknowledge(AcknowledgementRow(
            "pkt-ack", "IND", "0" * 20, f"2026-03-10T10:00:0{n}+00:00"))

    with ThreadPoolExecutor(6) as pool:
        results = set(pool.map(acknowledge, range(6)))
    assert len(results) == 1  # every caller sees the one receipt on record


def test_reminders_are_stored_once_in_order(backend: Backend) -> None:
    outbox = backend.open().outbox
    first = ReminderRow("notice-1", "KB-2026-AAAA1111", "IND", '{"n":1}')
    second = ReminderRow("notice-2", "KB-2026-AAAA1111", "DTV", '{"n":2}')
    assert outbox.add_reminder(first) and outbox.add_reminder(second)
    assert not outbox.add_reminder(first)
    assert outbox.reminder_rows("KB-2026-AAAA1111") == ['{"n":1}', '{"n":2}']
    assert outbox.reminder_rows("KB-2026-BBBB2222") == []


def test_erasure_removes_the_cases_packets_and_reminders_once_and_keeps_the_log(
        backend: Backend) -> None:
    outbox = backend.open().outbox
    erased, kept = _packet("pkt-1"), _packet("pkt-2", "KB-2026-BBBB2222")
    for packet in (erased, _packet("pkt-3"), kept):
        _add(outbox, packet)
    outbox.add_reminder(ReminderRow("notice-1", erased.case_ref, "IND", "{}"))
    outbox.add_reminder(ReminderRow("notice-2", kept.case_ref, "IND", "{}"))
    record = outbox.erase_case(erased.case_ref, lambda removed: f'{{"removed":{removed}}}')
    assert record == '{"removed":2}'
    assert [p.packet_id for p in outbox.packet_rows()] == ["pkt-2"]
    assert outbox.reminder_rows(erased.case_ref) == [] and outbox.reminder_rows(kept.case_ref)
    assert len(outbox.processing_log_lines(case_ref=erased.case_ref)) == 4  # the log stays

    def never(_: int) -> str:
        raise AssertionError("a second erasure records nothing new")

    assert outbox.erase_case(erased.case_ref, never) == '{"removed":2}'
    assert outbox.erasure_rows() == ['{"removed":2}']


def _document(document_id: str, case_ref: str = "KB-2026-AAAA1111", *,
              uploader: str = "IND", oin: str | None = None) -> DocumentRow:
    return DocumentRow(document_id, case_ref, uploader, oin, "application/pdf", 9, "ab" * 32,
                       "2026-03-01T10:00:00+00:00", "dk-1",
                       b"\x00cipher\xff" + document_id.encode())


def test_a_document_is_stored_once_and_its_readers_are_its_packets_recipients(
        backend: Backend) -> None:
    opened = backend.open()
    documents, outbox = opened.documents, opened.outbox
    document = _document("doc-1", oin="0" * 20)
    assert documents.add_document(document) is True
    assert documents.add_document(_document("doc-1", uploader="DTV")) is False  # once per id
    assert documents.document_row("doc-1") == document
    assert documents.document_row("doc-1", content=False) == dataclasses.replace(
        document, ciphertext=b"")
    assert documents.document_row("doc-unknown") is None
    assert documents.document_readers("doc-1") == []
    # delivered with two packets of its case (DTV twice, COA once) and one of another case
    for packet_id, recipient, case_ref in (("pkt-1", "DTV", "KB-2026-AAAA1111"),
                                           ("pkt-2", "COA", "KB-2026-AAAA1111"),
                                           ("pkt-3", "DTV", "KB-2026-AAAA1111"),
                                           ("pkt-4", "VT", "KB-2026-BBBB2222")):
        _add(outbox, dataclasses.replace(_packet(packet_id, case_ref, recipient=recipient),
                                         document_ids=("doc-1",)))
    assert documents.document_readers("doc-1") == ["DTV", "COA"]  # not VT: another case
    assert [p.packet_id for p in outbox.packet_rows("KB-2026-AAAA1111")] == [
        "pkt-1", "pkt-2", "pkt-3"]


def test_erasure_deletes_the_cases_documents_in_its_transaction(backend: Backend) -> None:
    opened = backend.open()
    documents, outbox = opened.documents, opened.outbox
    erased, kept = _document("doc-1"), _document("doc-2", "KB-2026-BBBB2222")
    documents.add_document(erased)
    documents.add_document(kept)
    row = _packet("pkt-1")
    _add(outbox, PacketRow(row.packet_id, row.case_ref, row.step, row.sender, row.recipient,
                           row.created_at, row.key_id, row.ciphertext, ("doc-1",)))
    outbox.erase_case(erased.case_ref, lambda removed: str(removed))
    assert documents.document_row("doc-1") is None and documents.document_readers("doc-1") == []
    assert documents.document_erased("doc-1") == erased.case_ref  # the tombstone
    assert documents.document_row("doc-2") == kept and documents.document_erased("doc-2") is None
    assert documents.add_document(erased) is False  # an erased id is not stored again
    assert documents.document_row("doc-1") is None
    with backend.raw() as db:  # no byte of the deleted ciphertext is left in its table
        rows = db.execute("SELECT document_id FROM documents").fetchall()
    assert [tuple(r) for r in rows] == [("doc-2",)]


def test_two_erasures_of_one_case_at_once_record_it_once(backend: Backend) -> None:
    stores = [backend.open().outbox, open_store(backend.settings).outbox]
    for n in range(3):
        _add(stores[0], _packet(f"pkt-{n}"), 1)
    barrier = threading.Barrier(4)

    def erase(n: int) -> str:
        barrier.wait()
        return stores[n % 2].erase_case("KB-2026-AAAA1111", lambda removed: str(removed))

    with ThreadPoolExecutor(4) as pool:
        records = list(pool.map(erase, range(4)))
    assert records == ["3"] * 4 and stores[1].erasure_rows() == ["3"]


def test_the_processing_log_is_append_only(backend: Backend) -> None:
    # No method of the interface updates or deletes a line ...
    methods = {name for name in dir(OutboxRecords) + dir(DecodeRecords)
               if not name.startswith("_")}
    assert methods and not {m for m in methods if "log" in m or "decode" in m} - {
        "add_decodes", "decode_lines", "processing_log_lines"}
    outbox = backend.open().outbox
    packet = _packet("pkt-1")
    outbox.add_packet(packet, lambda: _lines(packet))
    backend.open().decodes.add_decodes([DecodeLine("req-1", "kb-case-X", "X", "{}")])
    # ... and the database refuses it from anyone else too (PostgreSQL: a trigger).
    for statement in ("UPDATE processing_log SET entry_json = '{}'",
                      "DELETE FROM processing_log", "UPDATE decodes SET entry_json = ''",
                      "DELETE FROM decodes"):
        db = backend.raw()
        try:
            with pytest.raises((sqlite3.DatabaseError, psycopg.Error),
                               match="append-only"):
                db.execute(statement)
        finally:
            db.rollback()
            db.close()
    if backend.name == "postgres":
        with psycopg.connect(backend.settings.store_url or "") as db, \
                pytest.raises(psycopg.Error, match="append-only"):
            db.execute("TRUNCATE processing_log")
    assert outbox.processing_log_lines() == [line.entry_json for line in _lines(packet)]


def test_decodes_are_recorded_and_filtered_by_case(backend: Backend) -> None:
    decodes = backend.open().decodes
    decodes.add_decodes([DecodeLine("req-1", "kb-case-A", "A", '{"n":1}'),
                         DecodeLine("req-1", "kb-system", None, '{"n":2}')])
    decodes.add_decodes([DecodeLine("req-2", "kb-case-B", "B", '{"n":3}')])
    assert decodes.decode_lines() == ['{"n":1}', '{"n":2}', '{"n":3}']
    assert decodes.decode_lines(["B", "C"]) == ['{"n":3}']
    assert decodes.decode_lines([]) == []


# ---- data keys ---------------------------------------------------------------------------

# ---- webhooks (notifications) ------------------------------------------------------------

def _subscription(number: int, oin: str = "0" * 19 + "1", party: str = "IND",
                  url: str = "https://indigo.example/hook") -> SubscriptionRow:
    return SubscriptionRow(f"sub-{number:032x}", party, oin, url,
                           f"2026-03-01T10:00:0{number}+00:00")


def test_a_webhook_is_stored_once_per_oin_and_url_and_removed(backend: Backend) -> None:
    records = backend.open().subscriptions
    first = _subscription(1)
    assert records.add_subscription(first) == first
    # the same OIN and URL again: the one stored first
    assert records.add_subscription(_subscription(2)) == first
    other_url = _subscription(3, url="https://indigo.example/other")
    other_gi = _subscription(4, oin="0" * 19 + "7", party="GI")
    second_gi = _subscription(5, oin="0" * 19 + "8", party="GI")
    for row in (other_url, other_gi, second_gi):
        assert records.add_subscription(row) == row
    assert records.subscription_rows() == [first, other_url, other_gi, second_gi]
    assert records.subscription_rows("IND") == [first, other_url]
    assert records.subscription_rows("GI") == [other_gi, second_gi]
    assert records.subscription_rows(oin="0" * 19 + "8") == [second_gi]
    assert records.subscription_rows("GI", "0" * 19 + "1") == []
    assert records.subscription(first.subscription_id) == first
    assert records.remove_subscription(first.subscription_id)
    assert not records.remove_subscription(first.subscription_id)
    assert records.subscription(first.subscription_id) is None
    assert records.subscription_rows("IND") == [other_url]
    reader = backend.open(read_only=True).subscriptions
    assert reader.subscription_rows("IND") == [other_url]
    with pytest.raises(StorageError, match="read"):
        reader.add_subscription(_subscription(6, url="https://indigo.example/third"))


def test_two_registrations_of_one_webhook_at_once_store_one(backend: Backend) -> None:
    records = backend.open().subscriptions
    barrier = threading.Barrier(4)

    def register(number: int) -> SubscriptionRow:
        barrier.wait()
        return records.add_subscription(_subscription(number))

    with ThreadPoolExecutor(4) as pool:
        stored = set(pool.map(register, range(1, 5)))
    assert len(stored) == 1 and records.subscription_rows() == list(stored)


def _key(scope: str, key_id: str = "dk-1") -> DataKeyRow:
    return DataKeyRow(key_id, scope, "mk-1", b"wrapped-" + key_id.encode())


def test_a_scope_gets_one_data_key_even_when_created_at_once(backend: Backend) -> None:
    stores = [backend.open().data_keys, open_store(backend.settings).data_keys]
    barrier = threading.Barrier(8)

    def create(n: int) -> DataKeyRow:
        barrier.wait()
        return stores[n % 2].create_data_key(_key("kb-case-A", f"dk-{n}"),
                                             "2026-03-01T10:00:00+00:00")

    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(create, range(8)))
    assert len({row.key_id for row in rows}) == 1  # every creator got the winner's key
    assert stores[0].data_key_of_scope("kb-case-A") == rows[0]
    assert stores[1].data_key(rows[0].key_id) == rows[0]
    assert stores[0].data_key("dk-unknown") is None
    assert stores[0].data_key_of_scope("kb-case-unknown") is None


def test_a_destroyed_key_stays_destroyed(backend: Backend) -> None:
    keys = backend.open().data_keys
    for scope, key_id in (("kb-case-A", "dk-a"), ("kb-case-B", "dk-b")):
        keys.create_data_key(_key(scope, key_id), "2026-03-01T10:00:00+00:00")
    assert keys.destroy_data_key("kb-case-A", "2026-03-02T10:00:00+00:00") is True
    assert keys.destroy_data_key("kb-case-A", "2026-03-03T10:00:00+00:00") is False
    assert keys.destroy_data_key("kb-case-none", "2026-03-03T10:00:00+00:00") is False
    destroyed = keys.data_key_of_scope("kb-case-A")
    assert destroyed == DataKeyRow("dk-a", "kb-case-A", None, None) and destroyed.destroyed
    assert [row.key_id for row in keys.live_data_keys()] == ["dk-b"]
    assert keys.rewrap_data_key("dk-b", "mk-2", b"new") is True
    assert keys.rewrap_data_key("dk-a", "mk-2", b"resurrected") is False
    assert keys.data_key("dk-a") == destroyed
    assert keys.data_key("dk-b") == DataKeyRow("dk-b", "kb-case-B", "mk-2", b"new")
    # the creation of a destroyed scope's key returns the destroyed row, not a new key
    assert keys.create_data_key(_key("kb-case-A", "dk-new"), "2026-03-04") == destroyed


# ---- operator tokens ---------------------------------------------------------------------

def test_an_operator_has_one_live_token(backend: Backend) -> None:
    tokens = backend.open().operator_tokens
    assert tokens.issue_operator_token("sha-1", "RvdK-op-01", "2026-03-01T10:00:00+00:00") is None
    assert tokens.issue_operator_token("sha-2", "RvdK-op-01", "2026-03-02T10:00:00+00:00") == (
        "2026-03-01T10:00:00+00:00")
    assert tokens.operator_of_token("sha-1") == "RvdK-op-01"
    assert tokens.operator_of_token("sha-2") is None
    revoked = tokens.revoke_operator_token("RvdK-op-01", "2026-03-03T10:00:00+00:00")
    assert revoked is not None and revoked.revoked_at == "2026-03-03T10:00:00+00:00"
    assert tokens.operator_of_token("sha-1") is None
    assert tokens.issue_operator_token("sha-3", "RvdK-op-01", "2026-03-04T10:00:00+00:00") is None
    again = tokens.revoke_operator_token("RvdK-op-01", "2026-03-05T10:00:00+00:00")
    assert again is not None and again.issued_at == "2026-03-04T10:00:00+00:00"
    latest = tokens.revoke_operator_token("RvdK-op-01", "2026-03-06T10:00:00+00:00")
    assert latest == again  # revoked already: the latest revocation, unchanged
    assert tokens.revoke_operator_token("RvdK-op-99", "2026-03-06T10:00:00+00:00") is None
    assert [(t.issued_at[:10], t.revoked_at is not None)
            for t in tokens.operator_token_rows()] == [("2026-03-01", True),
                                                       ("2026-03-04", True)]


# ---- read-only mode ----------------------------------------------------------------------

def test_a_read_only_store_reads_and_refuses_writes_in_one_line(backend: Backend) -> None:
    writer = backend.open()
    packet = _packet("pkt-1")
    writer.outbox.add_packet(packet, lambda: _lines(packet))
    writer.data_keys.create_data_key(_key("kb-case-A"), "2026-03-01T10:00:00+00:00")
    writer.operator_tokens.issue_operator_token("sha-1", "RvdK-op-01", "2026-03-01")
    reader = backend.open(read_only=True)
    assert reader.outbox.packet_rows() == [packet]
    assert reader.data_keys.data_key("dk-1") is not None
    assert reader.operator_tokens.operator_of_token("sha-1") == "RvdK-op-01"
    writes: list[Callable[[], object]] = [
        lambda: reader.outbox.add_packet(_packet("pkt-2"), lambda: []),
        lambda: reader.outbox.add_reminder(ReminderRow("n-1", "KB-2026-AAAA1111", "IND", "")),
        lambda: reader.data_keys.create_data_key(_key("kb-case-B", "dk-2"), "2026-03-01"),
        lambda: reader.operator_tokens.issue_operator_token("sha-2", "RvdK-op-02", "x"),
    ]
    for write in writes:
        with pytest.raises(StorageError, match="read-only") as refused:
            write()
        assert "\n" not in str(refused.value)
        assert str(refused.value).startswith(("cannot write", "cannot read"))
    assert writer.outbox.packet_rows() == [packet]


def test_a_read_only_store_creates_nothing(backend: Backend, tmp_path: Path) -> None:
    if backend.name == "sqlite":
        reader = backend.open(read_only=True)
        with pytest.raises(StorageError, match=r"cannot read .*: cannot open"):
            reader.outbox.packet_rows()
        assert reader.decodes.decode_lines() == []  # no file: no decodes
        assert reader.operator_tokens.operator_token_rows() == []
        assert not backend.settings.data_dir.exists()
        return
    with pytest.raises(StorageError) as refused:
        backend.open(read_only=True)
    assert str(refused.value) == (f"cannot read {redacted(backend.settings.store_url or '')}: "
                                  "kbflow's tables are missing (no worker has opened this "
                                  "store yet)")
    with psycopg.connect(backend.settings.store_url or "") as db:
        assert db.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)


# ---- migrations --------------------------------------------------------------------------

def _versions(backend: Backend, kind: str = "outbox") -> list[int]:
    if backend.name == "sqlite":
        path = {"outbox": backend.settings.outbox_path, "keys": backend.settings.key_store_path,
                "operators": backend.settings.operators_path}[kind]
        with sqlite3.connect(path) as db:
            return [row[0] for row in db.execute("SELECT version FROM schema_version")]
    with psycopg.connect(backend.settings.store_url or "") as db:
        return [row[0] for row in db.execute("SELECT version FROM schema_version ORDER BY 1")]


def test_migrations_are_applied_once(backend: Backend) -> None:
    opened = backend.open()
    _ = opened.outbox, opened.data_keys, opened.operator_tokens
    close_stores()
    again = backend.open()
    _ = again.outbox, again.data_keys, again.operator_tokens
    kinds = ["outbox", "keys", "operators"] if backend.name == "sqlite" else ["postgres"]
    for kind in kinds:
        expected = [m.version for m in migrations(
            f"sqlite/{kind}" if backend.name == "sqlite" else "postgres")]
        assert expected and _versions(backend, kind) == expected
        assert expected[-1] == latest_version(
            f"sqlite/{kind}" if backend.name == "sqlite" else "postgres")


def test_workers_starting_at_once_migrate_once(backend: Backend) -> None:
    barrier = threading.Barrier(6)

    def start(_: int) -> None:
        barrier.wait()
        if backend.name == "sqlite":
            migrate(backend.settings.outbox_path, "outbox")
        else:
            PostgresStore(backend.settings.store_url or "").close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(start, range(6)))  # none fails
    assert _versions(backend) == [m.version for m in migrations(
        "sqlite/outbox" if backend.name == "sqlite" else "postgres")]


#: The outbox file's schema as kbflow wrote it before versioned migrations (issue 9).
BEFORE_MIGRATIONS = """
CREATE TABLE packets (packet_id TEXT PRIMARY KEY, case_ref TEXT NOT NULL,
    step INTEGER NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    created_at TEXT NOT NULL, key_id TEXT NOT NULL, ciphertext BLOB NOT NULL);
CREATE INDEX packets_by_recipient ON packets (recipient, case_ref);
CREATE INDEX packets_by_case ON packets (case_ref, step);
CREATE TABLE processing_log (packet_id TEXT NOT NULL, data_subject_id TEXT NOT NULL,
    case_ref TEXT NOT NULL, entry_json TEXT NOT NULL, PRIMARY KEY (packet_id, data_subject_id));
CREATE INDEX log_by_subject ON processing_log (data_subject_id);
CREATE TABLE erasures (case_ref TEXT PRIMARY KEY, erasure_json TEXT NOT NULL);
CREATE TABLE reminders (notice_id TEXT PRIMARY KEY, case_ref TEXT NOT NULL,
    party TEXT NOT NULL, reminder_json TEXT NOT NULL);
INSERT INTO packets VALUES ('pkt-old', 'KB-2026-AAAA1111', 1, 'RVDK', 'IND',
    '2026-01-01T10:00:00+00:00', 'dk-old', X'00');
INSERT INTO processing_log VALUES ('pkt-old', 'subj-0', 'KB-2026-AAAA1111', '{"old":1}');
"""


def test_a_data_dir_from_before_migrations_opens_and_keeps_its_data(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with sqlite3.connect(settings.outbox_path) as db:  # no decodes table yet, no version
        db.executescript(BEFORE_MIGRATIONS)
    outbox = open_store(settings).outbox
    assert [p.packet_id for p in outbox.packet_rows()] == ["pkt-old"]
    assert outbox.processing_log_lines() == ['{"old":1}']
    open_store(settings).decodes.add_decodes([DecodeLine("r", "s", None, "{}")])
    with sqlite3.connect(settings.outbox_path) as db:
        assert [row[0] for row in db.execute("SELECT version FROM schema_version")] == [
                m.version for m in migrations("sqlite/outbox")]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM processing_log")


# ---- errors: one line, no password ---------------------------------------------------------

def test_postgres_faults_are_one_line_without_the_password(postgres: PostgresServer) -> None:
    database = postgres.new_database()
    wrong = postgres.url(database.rsplit("/", 1)[1], password="not-the-password-4711")
    cases = {
        wrong: "login refused (wrong user or password)",
        f"postgresql://{APP_ROLE}:secret-4711@127.0.0.1:1/kbflow":
            "connection refused (is the server running?)",
        postgres.url("no_such_database"): "no such database",
    }
    for url, said in cases.items():
        with pytest.raises(StorageError) as failed:
            PostgresStore(url)
        message = str(failed.value)
        assert message == f"cannot write {redacted(url)}: {said}" or (
            said == "no such database" and message.endswith("no such database or role"))
        assert "\n" not in message and "4711" not in message
        assert postgres.app_password not in message
    assert redacted(wrong) == f"postgresql://{APP_ROLE}@127.0.0.1:{postgres.port}/" + (
        database.rsplit("/", 1)[1])
    with pytest.raises(StorageError, match=r"^cannot open KBFLOW_STORE_URL: not a valid"):
        PostgresStore("postgresql://[broken")


def test_a_store_url_that_is_not_postgres_names_the_variable_not_the_value() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"KBFLOW_STORE_URL": "mysql://kbflow:hunter2@db/kbflow"})
    assert str(refused.value).startswith("KBFLOW_STORE_URL: must be a postgresql:// URL")
    assert "hunter2" not in str(refused.value)
    assert Settings.from_env({}).store_url is None


def test_a_shared_store_needs_the_shared_secrets(tmp_path: Path) -> None:
    url = "postgresql://kbflow:hunter2@db/kbflow"
    settings = Settings.from_env({"KBFLOW_STORE_URL": url, "KBFLOW_DATA_DIR": str(tmp_path)})
    assert settings.store_url == url and "hunter2" not in repr(settings)
    # A worker needs all three: named at once, before anything is opened.
    with pytest.raises(SettingsError) as refused:
        OutboxStore(settings)
    assert str(refused.value) == (
        "KBFLOW_MASTER_KEYS, KBFLOW_PSEUDONYM_KEY, KBFLOW_PARTY_KEYS_DIR: must be set with a "
        "PostgreSQL KBFLOW_STORE_URL (the store is shared by every host; each host's "
        "data-dir key files would differ)")
    # Each development file is refused where it would be used (the codec server needs
    # the master keys only).
    with pytest.raises(SettingsError, match=r"^KBFLOW_MASTER_KEYS: must be set with a Postg"):
        KeyStore.open(settings)
    with pytest.raises(SettingsError, match=r"^KBFLOW_PSEUDONYM_KEY: must be set"):
        Pseudonymiser.load(settings)
    with pytest.raises(SettingsError, match=r"^KBFLOW_PARTY_KEYS_DIR: must be set"):
        PartyKeys.open(settings)
    assert list(tmp_path.iterdir()) == []  # no development file was made
    shared = Settings.from_env({"KBFLOW_STORE_URL": url, **SHARED_SECRETS,
                                "KBFLOW_PARTY_KEYS_DIR": str(tmp_path)})
    assert shared.unshared_secrets() == []
    assert Settings(data_dir=tmp_path).unshared_secrets() == []  # SQLite: the files serve


def test_the_cli_says_an_unreachable_store_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://kbflow:secret-4711@127.0.0.1:1/kbflow"
    for name, value in {**SHARED_SECRETS, "KBFLOW_STORE_URL": url,
                        "KBFLOW_PARTY_KEYS_DIR": str(tmp_path / "keys"),
                        "KBFLOW_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    done = CliRunner().invoke(app, ["operator", "list"])
    assert done.exit_code == 1, done.output
    assert done.output.strip() == ("error: cannot read postgresql://kbflow@127.0.0.1:1/kbflow: "
                                   "connection refused (is the server running?)")
    monkeypatch.setenv("KBFLOW_STORE_URL", "sqlite:///tmp/secret-4711")
    kbflow = Path(sys.executable).parent / "kbflow"  # the script: its own error boundary
    ran = subprocess.run([str(kbflow), "operator", "list"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert ran.returncode == 1 and ran.stdout == ""
    assert ran.stderr == ("error: KBFLOW_STORE_URL: must be a postgresql:// URL (unset: "
                          "SQLite in the data dir); the value given is not one\n")
    assert not (tmp_path / "data").exists()


# ---- kbflow's stores on both backends ------------------------------------------------------

def _a_packet() -> Packet:
    return project_packet(f.full_record(), Step.RESIDENCE_INFORMATION, Party.IND, Party.RVDK,
                          packet_id=f"packet-{f.new_key()}",
                          created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))


def _stores(backend: Backend) -> tuple[KeyStore, OutboxStore]:
    keys = KeyStore(backend.settings.key_store_path, MasterKeys.parse(MASTER, current_first=True),
                    records=backend.open().data_keys)
    return keys, OutboxStore(backend.settings, keys=keys)


def test_the_processing_log_reads_both_line_shapes_on_both_backends(backend: Backend) -> None:
    """LDV records (with their trace) and lines of the earlier flat shape side by side:
    the log is append-only, never rewritten (``kbflow.processing_log.parse_entry``)."""
    from kbflow import trace
    from kbflow.processing_log import LegacyProcessingLogEntry, ProcessingLogEntry

    _, store = _stores(backend)
    packet = _a_packet()
    old = json.dumps({"packet_id": "p-old", "case_ref": packet.case_ref, "step": 3,
                      "sender": "IND", "recipient": "RVDK",
                      "processing_activity_id": packet.processing_activity_id,
                      "data_subject_id": "subj-" + "0" * 32, "purpose": packet.purpose,
                      "legal_basis": packet.legal_basis, "items": ["persons"],
                      "at": "2026-03-01T09:00:00+00:00"})
    assert store.records.add_packet(
        PacketRow("p-old", packet.case_ref, 3, "IND", "RVDK", "2026-03-01T09:00:00+00:00",
                  "k", b"x"),
        lambda: [ProcessingLogLine("p-old", "subj-" + "0" * 32, packet.case_ref, old)])
    context = trace.TraceContext.start()
    with trace.use(context):
        assert store.deliver(packet)
    first, *entries = store.processing_log(packet.case_ref)
    assert isinstance(first, LegacyProcessingLogEntry) and first.packet_id == "p-old"
    assert entries and all(isinstance(e, ProcessingLogEntry) for e in entries)
    assert {(e.trace_id, e.parent_span_id) for e in entries  # type: ignore[union-attr]
            } == {(context.trace_id, context.span_id)}


def test_outbox_store_delivers_once_and_erases_on_both_backends(backend: Backend) -> None:
    keys, store = _stores(backend)
    packet = _a_packet()
    assert store.deliver(packet) and not store.deliver(packet)
    assert store.packets(packet.case_ref) == [packet]
    assert store.inbox(packet.recipient) == [packet]
    assert len(store.processing_log(packet.case_ref)) == len(packet.body["persons"])
    erasure = store.erase(packet.case_ref, reason="art-17-request",
                          requested_by="RvdK-privacy-01", at=dt.datetime.now(dt.UTC))
    assert erasure.key_destroyed and erasure.packets_removed == 1
    assert store.packets(packet.case_ref) == [] and store.erasures() == [erasure]
    with pytest.raises(KeyUnavailable, match="destroyed"):
        keys.without_cache().key_for_scope(workflow_id(packet.case_ref))
    assert keys.is_destroyed(workflow_id(packet.case_ref))


def test_document_store_encrypts_under_the_cases_key_and_erasure_shreds_it(
        backend: Backend) -> None:
    keys, store = _stores(backend)
    documents = DocumentStore.of(store)
    case_ref = f.new_case_ref()
    data = b"%PDF-1.7 beschikking Fenna Fictief " + bytes(range(256)) * 64
    ref = documents.upload(case_ref, data, "application/pdf", uploader=Party.IND)
    assert (ref.size, ref.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    with backend.raw() as db:  # at rest: neither the bytes nor a piece of them
        stored = bytes(db.execute("SELECT ciphertext FROM documents").fetchone()[0])
    assert b"Fictief" not in stored and data[-512:] not in stored
    assert keys.has_key(workflow_id(case_ref))  # the case's own key
    record = f.full_record().model_copy(update={
        "case_ref": case_ref, "dossier_documents": (f.DOSSIER_DOCUMENTS[0], ref)})
    packet = project_packet(record, Step.REJECTION_OR_WITHDRAWAL, Party.IND, Party.DTV,
                            packet_id=f"packet-{f.new_key()}",
                            created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    assert packet.body["dossier_documents"][1] == ref.model_dump(mode="json")
    with pytest.raises(DocumentForbidden, match="DTV may not read it"):
        documents.read(ref.document_id, Party.DTV)  # not delivered yet
    assert store.deliver(packet)
    assert documents.read(ref.document_id, Party.DTV) == (ref, data)  # the recipient
    assert documents.read(ref.document_id, Party.IND) == (ref, data)  # the uploader
    with pytest.raises(DocumentForbidden):
        documents.read(ref.document_id, Party.RVDK)
    store.erase(case_ref, reason="art-17-request", requested_by="RvdK-privacy-01",
                at=dt.datetime.now(dt.UTC))
    with pytest.raises(DocumentGone, match="erased"):
        documents.read(ref.document_id, Party.DTV)
    with backend.raw() as db:
        assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
    # a copy of the ciphertext (a backup) opens with no key any more
    with pytest.raises(KeyUnavailable, match="destroyed"):
        keys.without_cache().key(keys.without_cache().records.data_key_of_scope(
            workflow_id(case_ref)).key_id)  # type: ignore[union-attr]


def test_key_store_rewraps_on_both_backends(backend: Backend) -> None:
    keys, _ = _stores(backend)
    key_id, key = keys.key_for_scope("kb-case-A")
    assert keys.key_for_scope("kb-case-A") == (key_id, key)
    rotated = MasterKeys.parse(f"mk-new:{'ef' * 32},{MASTER}", current_first=True)
    fresh = KeyStore(keys.path, rotated, records=keys.records)
    assert fresh.rewrap() == 1 and fresh.rewrap() == 0
    only_new = KeyStore(keys.path, MasterKeys.parse(f"mk-new:{'ef' * 32}", current_first=True),
                        records=keys.records)
    assert only_new.key(key_id) == key and only_new.scope_of(key_id) == "kb-case-A"


def test_operator_store_and_decode_log_on_both_backends(backend: Backend) -> None:
    store = OperatorStore.open(backend.settings)
    token = store.issue("RvdK-op-01")
    with pytest.raises(OperatorError, match="has a live token"):
        store.issue("RvdK-op-01")
    assert OperatorStore.open(backend.settings, read_only=True).authenticate(token) == (
        "RvdK-op-01")
    store.revoke("RvdK-op-01")
    assert store.authenticate(token) is None
    log = DecodeLog.open(backend.settings)
    entry = DecodeEntry(request_id="req-1", operator_id="RvdK-op-01", scope="kb-case-A",
                        case_ref="A", payload_count=2, at=dt.datetime.now(dt.UTC))
    log.record([entry])
    assert DecodeLog.open(backend.settings, read_only=True).entries(["A"]) == [entry]


def test_on_postgres_nothing_of_kbflows_state_is_a_local_file(
        postgres_url: str, tmp_path: Path) -> None:
    keys_dir = _party_keys(tmp_path)
    settings = Settings.from_env({"KBFLOW_STORE_URL": postgres_url, **SHARED_SECRETS,
                                  "KBFLOW_PARTY_KEYS_DIR": str(keys_dir),
                                  "KBFLOW_DATA_DIR": str(tmp_path / "data")})
    store = OutboxStore(settings)  # as the worker opens it
    packet = _a_packet()
    assert store.deliver(packet)
    OperatorStore.open(settings).issue("RvdK-op-01")
    DecodeLog.open(settings).entries()
    assert not (tmp_path / "data").exists()  # no file, no folder
    # a second host: its own (empty) data dir, the same database
    other = OutboxStore(Settings.from_env({"KBFLOW_STORE_URL": postgres_url, **SHARED_SECRETS,
                                           "KBFLOW_PARTY_KEYS_DIR": str(keys_dir),
                                           "KBFLOW_DATA_DIR": str(tmp_path / "other")}),
                        read_only=True)
    try:
        assert other.packets(packet.case_ref) == [packet]
    except PacketUnreadable as error:  # pragma: no cover - a failure's message
        pytest.fail(str(error))


async def test_a_worker_drives_a_case_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    from tests.conftest import time_skipping_server
    from tests.test_case_workflow import send, settled, start_case
    from worker import build_worker

    settings = _shared(postgres_url, tmp_path)
    keys = KeyStore.open(settings)
    store = OutboxStore(settings, keys=keys)
    async with time_skipping_server(keys) as env:
        client: Client = env.client
        queue = "kbflow-pg-case"
        async with build_worker(client, queue, store):
            handle = await start_case(client, queue)
            await send(handle, f.announce(), f.residence_ind())
            await settled(handle)
            case_ref = handle.id.removeprefix("kb-case-")
            delivered = store.packets(case_ref)
            assert len(delivered) == 4  # steps 1, 2 (x2), 3
            assert {p.packet_id for p in delivered} == {
                e.packet_id for e in store.processing_log(case_ref)}
            await handle.terminate()
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM packets").fetchone() == (4,)
        assert db.execute("SELECT count(*) FROM data_keys WHERE wrapped IS NOT NULL"
                          ).fetchone() == (1,)


def test_the_postgresql_from_pypi_starts_too() -> None:
    # A fresh machine without Debian's postgresql gets its server from the pgserver wheel.
    import pgserver

    folder = Path(pgserver.__file__).parent / "pginstall" / "bin"
    with running_postgres(folder) as server:
        url = server.new_database()
        store = PostgresStore(url)
        try:
            packet = _packet("pkt-1")
            assert store.add_packet(packet, lambda: _lines(packet))
            assert store.packet_rows() == [packet]
        finally:
            store.close()
    assert binaries().is_dir()


def test_the_interface_is_implemented_by_both_backends(backend: Backend) -> None:
    opened = backend.open()
    assert isinstance(opened, StateStore)
    assert isinstance(opened.outbox, OutboxRecords) and isinstance(opened.decodes, DecodeRecords)
    assert isinstance(opened.data_keys, DataKeyRecords)
    assert isinstance(opened.operator_tokens, OperatorTokenRecords)
    assert isinstance(opened.acknowledgements, AcknowledgementRecords)
    assert isinstance(opened.documents, DocumentRecords)

    assert isinstance(opened.subscriptions, SubscriptionRecords)
    assert isinstance(opened, SqliteStore if backend.name == "sqlite" else PostgresStore)
    if backend.name == "postgres":
        url = backend.settings.store_url or ""
        assert opened.where == redacted(url) and url.split(":")[2].split("@")[0] not in (
            opened.where)
    else:
        assert opened.where == str(backend.settings.data_dir)


def test_the_cli_works_on_the_postgres_store_and_leaves_no_file(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**SHARED_SECRETS, "KBFLOW_STORE_URL": postgres_url,
           "KBFLOW_PARTY_KEYS_DIR": str(_party_keys(tmp_path)),
           "KBFLOW_DATA_DIR": str(tmp_path / "data")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    packet = _a_packet()
    assert OutboxStore(Settings.from_env()).deliver(packet)  # as a worker on another host
    runner = CliRunner()
    shown = runner.invoke(app, ["packets", packet.case_ref, "--json"])
    assert shown.exit_code == 0, shown.output
    assert [p["packet_id"] for p in json.loads(shown.stdout)] == [packet.packet_id]
    subject = OutboxStore(Settings.from_env(), read_only=True).processing_log()[0]
    disclosed = runner.invoke(app, ["disclosures", "--subject", subject.data_subject_id,
                                    "--json"])
    assert disclosed.exit_code == 0, disclosed.output
    assert json.loads(disclosed.stdout)["disclosures"]
    issued = runner.invoke(app, ["operator", "issue", "RvdK-op-07"])
    assert issued.exit_code == 0, issued.output
    listed = runner.invoke(app, ["operator", "list"])
    assert "RvdK-op-07" in listed.stdout
    revoked = runner.invoke(app, ["operator", "revoke", "RvdK-op-07"])
    assert revoked.exit_code == 0, revoked.output
    assert not (tmp_path / "data").exists()


def test_the_deploy_script_makes_kbflows_own_role_and_database(
        postgres: PostgresServer) -> None:
    # deploy/postgres/create-kbflow-database.sh as docker-compose's kbflow-database job
    # runs it (there in the postgres image), here against the test server; twice.
    with psycopg.connect(postgres.admin_url, autocommit=True) as db:
        db.execute("CREATE DATABASE temporal")  # as temporal-schema made it
    script = Path(__file__).resolve().parent.parent / "deploy" / "postgres" / (
        "create-kbflow-database.sh")
    env = {"PATH": f"{binaries()}:/usr/bin:/bin", "PGHOST": "127.0.0.1",
           "PGPORT": str(postgres.port), "PGUSER": "kbflow_admin",
           "PGPASSWORD": postgres.admin_password, "KBFLOW_DB_USER": "kbflow",
           "KBFLOW_DB_PASSWORD": "kb-Secret_4711", "KBFLOW_DB_NAME": "kbflow"}
    for _ in range(2):  # idempotent: a second `docker compose up` changes nothing
        ran = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
        assert ran.returncode == 0, ran.stderr
        assert "kb-Secret_4711" not in ran.stdout + ran.stderr
    url = postgres.url("kbflow", user="kbflow", password="kb-Secret_4711")
    store = PostgresStore(url)  # the worker migrates as the new role
    try:
        packet = _packet("pkt-1")
        assert store.add_packet(packet, lambda: _lines(packet))
    finally:
        store.close()
    with psycopg.connect(url) as db:
        assert db.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                          "WHERE rolname = current_user").fetchone() == (False, False, False)
        assert db.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                          "WHERE datname = current_database()").fetchone() == ("kbflow",)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(postgres.url("temporal", user="kbflow", password="kb-Secret_4711"))
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(postgres.url("kbflow"))  # another role: not kbflow's database


def test_the_codec_server_needs_only_the_master_keys_on_postgres(
        postgres_url: str, tmp_path: Path) -> None:
    from starter.master_keys import open_existing

    settings = Settings.from_env({"KBFLOW_STORE_URL": postgres_url,
                                  "KBFLOW_MASTER_KEYS": MASTER, "KBFLOW_CODEC_TOKEN": "t" * 40,
                                  "KBFLOW_DATA_DIR": str(tmp_path / "data")})
    keys = open_existing(settings)  # as `kbflow codec-server` opens them
    key_id, _ = keys.key_for_scope("kb-case-A")
    assert keys.without_cache().scope_of(key_id) == "kb-case-A"
    assert DecodeLog.open(settings).entries() == []
    assert OperatorStore.open(settings, read_only=True).tokens() == []
    assert not (tmp_path / "data").exists()


def test_destroying_a_key_on_postgres_vacuums_the_table(postgres_url: str,
                                                          tmp_path: Path) -> None:
    keys = open_store(_shared(postgres_url, tmp_path)).data_keys
    keys.create_data_key(_key("kb-case-A"), "2026-03-01T10:00:00+00:00")

    def vacuums() -> int:
        with psycopg.connect(postgres_url) as db:
            row = db.execute("SELECT vacuum_count FROM pg_stat_user_tables "
                             "WHERE relname = 'data_keys'").fetchone()
        return int(row[0]) if row else 0

    before = vacuums()
    assert keys.destroy_data_key("kb-case-A", "2026-03-02T10:00:00+00:00")
    deadline = time.monotonic() + 10  # the statistics arrive shortly after the VACUUM
    while vacuums() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert vacuums() == before + 1


def test_the_readmes_state_store_section_names_what_exists() -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## State store\n"):text.index("\n## Logs and metrics\n")]
    paths = {name for name in re.findall(r"`([a-z_/]+(?:\.py)?/?)`", section) if "/" in name}
    assert {"store/sqlite.py", "store/postgres.py", "store/migrations/",
            "tests/test_store_contract.py"} <= paths
    assert all((root / name).exists() for name in paths), paths
    # the example error is what a refused connection says (the CLI test above)
    assert ("`error: cannot read postgresql://kbflow@db:5432/kbflow: "
            f"{reason(psycopg.OperationalError('Connection refused'))}`") in section
    assert redacted("postgresql://kbflow:pw@db:5432/kbflow") == "postgresql://kbflow@db:5432/kbflow"
    # the one interface the section names
    assert "`store.interface.StateStore`" in section and StateStore.__module__ == (
        "store.interface")
