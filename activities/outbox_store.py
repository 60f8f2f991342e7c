"""The outbox store: each party's delivered packets, reminders, erasures and the
processing log, in one SQLite file (``Settings.outbox_path``).

A packet rests encrypted twice (PROCESS.md §2 "secure sharing"): sealed to its recipient's
public key (``encryption.sealed``), so no other party can read it, and that under the
case's data key (``encryption.keys``), so destroying the key erases it everywhere,
backups included. Only ids, step, parties and time stay readable, to route and list.

A packet and its processing-log entries are written in one transaction, keyed by the
packet id: delivering the same packet twice changes nothing. The processing log holds no
personal values and outlives erasure. Its ``decodes`` table records every decode through
the codec server (``DecodeLog``): which operator read how many payloads of which case.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import CryptoError
from pydantic import BaseModel, ConfigDict

from activities.pseudonyms import Pseudonymiser
from encryption.keys import KeyStore, KeyUnavailable
from encryption.sealed import PartyKeyMissing, PartyKeys
from encryption.storage import StorageError, connect, create_schema
from kbflow.case import Reminder
from kbflow.packets import Packet
from kbflow.process import Party
from kbflow.processing_log import DecodeEntry, ProcessingLogEntry, Pseudonymise, entries_for
from kbflow.settings import Settings, workflow_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    packet_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    step INTEGER NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    ciphertext BLOB NOT NULL
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
CREATE TABLE IF NOT EXISTS erasures (
    case_ref TEXT PRIMARY KEY,
    erasure_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decodes (
    request_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    case_ref TEXT,
    entry_json TEXT NOT NULL,
    PRIMARY KEY (request_id, scope)
);
CREATE INDEX IF NOT EXISTS decodes_by_case ON decodes (case_ref);
CREATE TABLE IF NOT EXISTS reminders (
    notice_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    party TEXT NOT NULL,
    reminder_json TEXT NOT NULL
);
"""


class PacketUnreadable(LookupError):
    """A stored packet cannot be read here: its case was erased, or this machine lacks the
    recipient's private key. The message names the packet id, the party and the reason."""


class Erasure(BaseModel):
    """The record that a case's personal data was erased (no personal data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_ref: str
    at: dt.datetime
    reason: str
    requested_by: str
    packets_removed: int
    key_destroyed: bool


def _no_pseudonyms(_: object) -> str:
    """A read-only store logs nothing: it needs no pseudonym key."""
    raise StorageError("cannot write the processing log: the outbox store is read-only")


class OutboxStore:
    """Outboxes, reminders, erasures and the processing log in one SQLite file.

    Args:
        settings: the store is ``settings.outbox_path``; the keys not given default to
            what ``settings`` configures (``Pseudonymiser.load``, ``KeyStore.open``,
            ``PartyKeys.open``).
        pseudonymise: data-subject ids for the processing log.
        keys: the case data keys (shared with the payload codec).
        party_keys: the parties' key pairs (public keys suffice to deliver).
        read_only: only read (``packets``, ``inbox``, ``disclosures``, ``status``): no
            file, table or key is created, so a read-only data dir serves them; writing
            raises ``StorageError``.

    Safe to share between threads: every call opens its own connection.

    Raises:
        StorageError: the file cannot be created, opened, read or written (here and in
            every method; e.g. a read-only data dir or a full disk). Deliveries then fail
            and Temporal retries them.
    """

    def __init__(self, settings: Settings, pseudonymise: Pseudonymise | None = None, *,
                 keys: KeyStore | None = None, party_keys: PartyKeys | None = None,
                 read_only: bool = False) -> None:
        self.path = path = settings.outbox_path
        self.read_only = read_only
        try:
            self.pseudonymise = pseudonymise or (
                _no_pseudonyms if read_only else Pseudonymiser.load(settings))
            self.party_keys = party_keys or PartyKeys.open(settings)
        except OSError as error:  # the pseudonym key or the party keys' folder
            raise StorageError.of(error, Path(error.filename or settings.data_dir),
                                  writing=not read_only) from None
        self.keys = keys or KeyStore.open(settings, read_only=read_only)
        if not read_only:
            create_schema(path, _SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with connect(self.path, read_only=self.read_only) as db:
            yield db

    def deliver(self, packet: Packet) -> bool:
        """Put ``packet`` in its recipient's outbox and log it, once.

        Returns:
            True if delivered now, False if this packet id was delivered before.
        """
        key_id, ciphertext = self._encrypt(packet)
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO packets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (packet.packet_id, packet.case_ref, int(packet.step), packet.sender.value,
                 packet.recipient.value, packet.created_at.isoformat(), key_id, ciphertext),
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

    def _encrypt(self, packet: Packet) -> tuple[str, bytes]:
        sealed = self.party_keys.seal(packet.recipient, packet.model_dump_json().encode())
        key_id, key = self.keys.key_for_scope(workflow_id(packet.case_ref))
        nonce = secrets.token_bytes(12)
        return key_id, nonce + AESGCM(key).encrypt(nonce, sealed, packet.packet_id.encode())

    def _decrypt(self, packet_id: str, recipient: Party, key_id: str, ciphertext: bytes
                 ) -> Packet:
        try:
            key = self.keys.key(key_id)
            sealed = AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], packet_id.encode())
            plain = self.party_keys.unseal(recipient, sealed)
        except (KeyUnavailable, PartyKeyMissing) as error:
            raise PacketUnreadable(f"packet {packet_id} to {recipient.value}: {error}") from None
        except (InvalidTag, CryptoError):
            raise PacketUnreadable(f"packet {packet_id} to {recipient.value}: "
                                   "authentication failed") from None
        return Packet.model_validate_json(plain)

    def packets(self, case_ref: str | None = None, party: Party | None = None) -> list[Packet]:
        """Delivered packets, decrypted, oldest first, optionally of one case and/or one
        recipient.

        Raises:
            PacketUnreadable: a packet's case key is destroyed, or this machine lacks the
                private key of its recipient (ask for one ``party`` then).
        """
        query = "SELECT packet_id, recipient, key_id, ciphertext FROM packets WHERE 1=1"
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
        return [self._decrypt(packet_id, Party(recipient), key_id, ciphertext)
                for packet_id, recipient, key_id, ciphertext in rows]

    def inbox(self, party: Party) -> list[Packet]:
        """Every packet ``party`` received, opened with ``party``'s private key only."""
        return self.packets(party=party)

    def erase(self, case_ref: str, *, reason: str, requested_by: str,
              at: dt.datetime) -> Erasure:
        """Crypto-shred a case: destroy its data key and remove its packets and reminders;
        record the erasure. The processing log stays (it holds no personal values).
        Idempotent: a second call returns the first record.
        """
        key_destroyed = self.keys.destroy(workflow_id(case_ref))
        with self._connect() as db:
            row = db.execute("SELECT erasure_json FROM erasures WHERE case_ref = ?",
                             (case_ref,)).fetchone()
            if row is not None:
                return Erasure.model_validate_json(row[0])
            removed = db.execute("DELETE FROM packets WHERE case_ref = ?", (case_ref,)).rowcount
            db.execute("DELETE FROM reminders WHERE case_ref = ?", (case_ref,))
            erasure = Erasure(case_ref=case_ref, at=at, reason=reason,
                              requested_by=requested_by, packets_removed=removed,
                              key_destroyed=key_destroyed)
            db.execute("INSERT INTO erasures VALUES (?, ?)", (case_ref, erasure.model_dump_json()))
        return erasure

    def erasures(self) -> list[Erasure]:
        """Every erasure on record, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT erasure_json FROM erasures ORDER BY rowid").fetchall()
        return [Erasure.model_validate_json(row[0]) for row in rows]

    def reminders(self, case_ref: str) -> list[Reminder]:
        """Reminders sent for a case, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT reminder_json FROM reminders WHERE case_ref = ? "
                              "ORDER BY rowid", (case_ref,)).fetchall()
        return [Reminder.model_validate_json(row[0]) for row in rows]

    def processing_log(self, case_ref: str | None = None,
                       data_subject_id: str | None = None) -> list[ProcessingLogEntry]:
        """Processing-log entries, oldest first, optionally of one case and/or one data
        subject (pseudonym)."""
        query = "SELECT entry_json FROM processing_log WHERE 1=1"
        params: list[str] = []
        if case_ref is not None:
            query += " AND case_ref = ?"
            params.append(case_ref)
        if data_subject_id is not None:
            query += " AND data_subject_id = ?"
            params.append(data_subject_id)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY rowid", params).fetchall()
        return [ProcessingLogEntry.model_validate_json(row[0]) for row in rows]


class DecodeLog:
    """The processing log's record of decodes through the codec server, in the outbox
    store's file (``Settings.outbox_path``). It needs no key: the codec server writes it
    without the pseudonym or the parties' keys.

    Args:
        path: the outbox store's SQLite file.
        read_only: only read (``kbflow disclosures``): create nothing; a file without
            the table (written before decodes were logged) holds no decodes.

    Raises:
        StorageError: the file cannot be created, opened, read or written (here and in
            every method). The codec server then answers 503 and decodes nothing: no
            decode goes unrecorded.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if not read_only:
            create_schema(path, _SCHEMA)

    def record(self, entries: list[DecodeEntry]) -> None:
        """Write ``entries`` in one transaction (acknowledged when this returns)."""
        with connect(self.path, read_only=self.read_only) as db:
            db.executemany("INSERT INTO decodes VALUES (?, ?, ?, ?)",
                           [(e.request_id, e.scope, e.case_ref, e.model_dump_json())
                            for e in entries])

    def entries(self, case_refs: list[str] | None = None) -> list[DecodeEntry]:
        """Decodes on record, oldest first; with ``case_refs``, only of those cases."""
        if self.read_only and not self.path.is_file():
            return []
        with connect(self.path, read_only=self.read_only) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                          "AND name = 'decodes'").fetchone() is None:
                return []
            query, params = "SELECT entry_json FROM decodes", list(case_refs or [])
            if case_refs is not None:
                query += f" WHERE case_ref IN ({', '.join('?' * len(params))})"
            rows = db.execute(query + " ORDER BY rowid", params).fetchall()
        return [DecodeEntry.model_validate_json(row[0]) for row in rows]
