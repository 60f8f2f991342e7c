"""The outbox store: each party's delivered packets, reminders, and the processing log,
in one SQLite file (``Settings.outbox_path``).

A packet and its processing-log entries are written in one transaction, keyed by the
packet id: delivering the same packet twice changes nothing (PROCESS.md §2 accountability,
issue "activities are idempotent").
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from activities.pseudonyms import Pseudonymiser
from kbflow.case import Reminder
from kbflow.packets import Packet
from kbflow.process import Party
from kbflow.processing_log import ProcessingLogEntry, Pseudonymise, entries_for

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    packet_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    step INTEGER NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created_at TEXT NOT NULL,
    packet_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS packets_by_recipient ON packets (recipient, case_ref);
CREATE INDEX IF NOT EXISTS packets_by_case ON packets (case_ref, step);
CREATE TABLE IF NOT EXISTS processing_log (
    packet_id TEXT NOT NULL,
    data_subject_id TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    entry_json TEXT NOT NULL,
    PRIMARY KEY (packet_id, data_subject_id)
);
CREATE INDEX IF NOT EXISTS log_by_subject ON processing_log (data_subject_id);
CREATE TABLE IF NOT EXISTS reminders (
    notice_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    party TEXT NOT NULL,
    reminder_json TEXT NOT NULL
);
"""


class OutboxStore:
    """Outboxes, reminders and the processing log in one SQLite file.

    Safe to share between threads: every call opens its own connection.
    """

    def __init__(self, path: Path, pseudonymise: Pseudonymise | None = None) -> None:
        self.path = path
        self.pseudonymise = pseudonymise or Pseudonymiser.from_env_or_file(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:  # one transaction: commit on success, roll back on error
                yield db
        finally:
            db.close()

    def deliver(self, packet: Packet) -> bool:
        """Put ``packet`` in its recipient's outbox and log it, once.

        Returns:
            True if delivered now, False if this packet id was delivered before.
        """
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO packets VALUES (?, ?, ?, ?, ?, ?, ?)",
                (packet.packet_id, packet.case_ref, int(packet.step), packet.sender.value,
                 packet.recipient.value, packet.created_at.isoformat(),
                 packet.model_dump_json()),
            )
            if cursor.rowcount == 0:
                return False
            db.executemany(
                "INSERT INTO processing_log VALUES (?, ?, ?, ?)",
                [(entry.packet_id, entry.data_subject_id, entry.case_ref,
                  entry.model_dump_json()) for entry in entries_for(packet, self.pseudonymise)],
            )
            return True

    def remind(self, reminder: Reminder) -> bool:
        """Put a reminder in the late party's outbox, once per notice id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO reminders VALUES (?, ?, ?, ?)",
                (reminder.notice_id, reminder.case_ref, reminder.party.value,
                 reminder.model_dump_json()),
            )
            return cursor.rowcount == 1

    def packets(self, case_ref: str | None = None, party: Party | None = None) -> list[Packet]:
        """Delivered packets, oldest first, optionally of one case and/or one recipient."""
        query = "SELECT packet_json FROM packets WHERE 1=1"
        params: list[str] = []
        if case_ref is not None:
            query += " AND case_ref = ?"
            params.append(case_ref)
        if party is not None:
            query += " AND recipient = ?"
            params.append(party.value)
        query += " ORDER BY created_at, step, rowid"
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
        return [Packet.model_validate(json.loads(row[0])) for row in rows]

    def reminders(self, case_ref: str) -> list[Reminder]:
        """Reminders sent for a case, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT reminder_json FROM reminders WHERE case_ref = ? "
                              "ORDER BY rowid", (case_ref,)).fetchall()
        return [Reminder.model_validate_json(row[0]) for row in rows]

    def processing_log(self, case_ref: str | None = None) -> list[ProcessingLogEntry]:
        """Processing-log entries, optionally of one case."""
        query = "SELECT entry_json FROM processing_log"
        params: tuple[str, ...] = ()
        if case_ref is not None:
            query += " WHERE case_ref = ?"
            params = (case_ref,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY rowid", params).fetchall()
        return [ProcessingLogEntry.model_validate_json(row[0]) for row in rows]
