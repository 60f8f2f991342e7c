"""The SQLite backend: kbflow's state in three files of the data dir (one host).

``outbox.sqlite3`` holds the outboxes, the processing log, reminders, erasures,
decodes and documents; ``keys.sqlite3`` the data keys; ``operators.sqlite3`` the
operators' tokens. Each file has its own ``schema_version`` and migrations
(``store/migrations/sqlite/<file>``); files made before versioned migrations open
unchanged (their migration 0001 is that schema, IF NOT EXISTS).

A part opened read-only never creates a file or a table and never changes the journal
mode (``encryption.storage.connect``: ``mode=ro``, or ``immutable=1``), so commands that
only read work on a read-only data dir. Read-write connections overwrite deleted content
(``secure_delete``); destroying a data key also checkpoints the WAL, so the wrapped key's
bytes leave the WAL file too. Every SQLite and OS error becomes ``StorageError`` naming
the file and the reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from encryption.storage import LOCK_TIMEOUT, StorageError, connect
from store import inbox_sql
from store.interface import (
    AcknowledgementRow,
    CasePartyRow,
    DataKeyRow,
    DecodeLine,
    DocumentRow,
    InboxRow,
    OperatorTokenRow,
    PacketRow,
    ProcessingLogLine,
    ReminderRow,
    SubscriptionRow,
)
from store.schema import migrations
from store.sql import filtered

_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                  "name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT "
                  "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")


def schema_versions(db: sqlite3.Connection) -> set[int]:
    """The migrations applied to the open file (none before versioned migrations)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                  "AND name = 'schema_version'").fetchone() is None:
        return set()
    return {row[0] for row in db.execute("SELECT version FROM schema_version")}


def migrate(path: Path, kind: str) -> None:
    """Create ``path``'s folder and file if missing, apply the migrations of ``kind``
    (``outbox``, ``keys``, ``operators``) it lacks, each once, and put it in WAL mode.
    Safe when several processes open the file at once: the migrations run under
    SQLite's write lock (``BEGIN IMMEDIATE``), and a file already current takes none.

    Raises:
        StorageError: the folder or file cannot be created, read or written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError.of(error, path.parent, writing=True) from None
    known = migrations(f"sqlite/{kind}")
    try:
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT, isolation_level=None)
    except (sqlite3.Error, OSError) as error:
        raise StorageError.of(error, path, writing=True) from None
    try:
        db.execute("PRAGMA secure_delete=ON")
        if {m.version for m in known} - schema_versions(db):
            db.execute("BEGIN IMMEDIATE")
            try:
                applied = schema_versions(db)  # again, under the lock
                db.execute(_VERSION_TABLE)
                for migration in known:
                    if migration.version in applied:
                        continue
                    for statement in migration.statements():
                        db.execute(statement)
                    db.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)",
                               (migration.version, migration.name))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
    except (sqlite3.Error, OSError) as error:
        raise StorageError.of(error, path, writing=True) from None
    finally:
        db.close()


class _SqliteFile:
    """One file of the data dir, migrated on opening unless read-only."""

    kind = ""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if not read_only:
            migrate(path, self.kind)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with connect(self.path, read_only=self.read_only) as db:
            yield db


class SqliteOutbox(_SqliteFile):
    """``OutboxRecords``, ``DecodeRecords``, ``AcknowledgementRecords``,
    ``DocumentRecords`` and ``SubscriptionRecords`` in ``outbox.sqlite3``.

    Args:
        path: the file.
        read_only: only read; the outbox's methods raise ``StorageError`` if the file is
            missing, while a missing file (or one from before decodes were logged) holds
            no decodes.
    """

    kind = "outbox"

    def add_packet(self, packet: PacketRow,
                   log_lines: Callable[[], Sequence[ProcessingLogLine]]) -> bool:
        """See ``OutboxRecords.add_packet``: ``INSERT OR IGNORE`` keyed by packet id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO packets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (packet.packet_id, packet.case_ref, packet.step, packet.sender,
                 packet.recipient, packet.created_at, packet.key_id, packet.ciphertext),
            )
            if cursor.rowcount == 0:
                return False
            db.executemany("INSERT INTO processing_log VALUES (?, ?, ?, ?)",
                           [(line.packet_id, line.data_subject_id, line.case_ref,
                             line.entry_json) for line in log_lines()])
            db.executemany("INSERT OR IGNORE INTO packet_documents VALUES (?, ?, ?, ?)",
                           [(packet.packet_id, document_id, packet.case_ref, packet.recipient)
                            for document_id in packet.document_ids])
            return True

    def packet_rows(self, case_ref: str | None = None,
                    recipient: str | None = None) -> list[PacketRow]:
        """See ``OutboxRecords.packet_rows``."""
        query, params = filtered(
            "SELECT packet_id, case_ref, step, sender, recipient, created_at, key_id, "
            "ciphertext FROM packets", "?", case_ref=case_ref, recipient=recipient)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY created_at, step, rowid", params).fetchall()
        return [PacketRow(*row) for row in rows]

    def processing_log_lines(self, case_ref: str | None = None,
                             data_subject_id: str | None = None) -> list[str]:
        """See ``OutboxRecords.processing_log_lines``."""
        query, params = filtered("SELECT entry_json FROM processing_log", "?",
                                 case_ref=case_ref, data_subject_id=data_subject_id)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY rowid", params).fetchall()
        return [row[0] for row in rows]

    def add_reminder(self, reminder: ReminderRow) -> bool:
        """See ``OutboxRecords.add_reminder``."""
        with self._connect() as db:
            cursor = db.execute("INSERT OR IGNORE INTO reminders VALUES (?, ?, ?, ?)",
                                (reminder.notice_id, reminder.case_ref, reminder.party,
                                 reminder.reminder_json))
            return cursor.rowcount == 1

    def reminder_rows(self, case_ref: str) -> list[str]:
        """See ``OutboxRecords.reminder_rows``."""
        with self._connect() as db:
            rows = db.execute("SELECT reminder_json FROM reminders WHERE case_ref = ? "
                              "ORDER BY rowid", (case_ref,)).fetchall()
        return [row[0] for row in rows]

    def erase_case(self, case_ref: str, erasure_json: Callable[[int], str]) -> str:
        """See ``OutboxRecords.erase_case`` (one transaction under the write lock, taken
        before the read, so that a second erasure at once waits and finds the record)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT erasure_json FROM erasures WHERE case_ref = ?",
                             (case_ref,)).fetchone()
            if row is not None:
                return str(row[0])
            removed = db.execute("DELETE FROM packets WHERE case_ref = ?", (case_ref,)).rowcount
            db.execute("DELETE FROM reminders WHERE case_ref = ?", (case_ref,))
            db.execute("INSERT OR IGNORE INTO document_tombstones SELECT document_id, case_ref "
                       "FROM documents WHERE case_ref = ?", (case_ref,))
            db.execute("DELETE FROM documents WHERE case_ref = ?", (case_ref,))
            db.execute("DELETE FROM packet_documents WHERE case_ref = ?", (case_ref,))
            record = erasure_json(removed)
            db.execute("INSERT INTO erasures VALUES (?, ?)", (case_ref, record))
            return record

    def erasure_rows(self) -> list[str]:
        """See ``OutboxRecords.erasure_rows``."""
        with self._connect() as db:
            rows = db.execute("SELECT erasure_json FROM erasures ORDER BY rowid").fetchall()
        return [row[0] for row in rows]

    def add_document(self, document: DocumentRow) -> bool:
        """See ``DocumentRecords.add_document``."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM document_tombstones WHERE document_id = ?",
                          (document.document_id,)).fetchone() is not None:
                return False
            cursor = db.execute(
                "INSERT OR IGNORE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (document.document_id, document.case_ref, document.uploader,
                 document.uploader_oin, document.media_type, document.size, document.sha256,
                 document.created_at, document.key_id, document.ciphertext))
            return cursor.rowcount == 1

    def document_row(self, document_id: str, *, content: bool = True) -> DocumentRow | None:
        """See ``DocumentRecords.document_row``."""
        blob = "ciphertext" if content else "X''"  # X'': an empty blob
        with self._connect() as db:
            row = db.execute(
                "SELECT document_id, case_ref, uploader, uploader_oin, media_type, size, "
                f"sha256, created_at, key_id, {blob} FROM documents WHERE document_id = ?",
                (document_id,)).fetchone()
        return None if row is None else DocumentRow.of(row)

    def document_erased(self, document_id: str) -> str | None:
        """See ``DocumentRecords.document_erased``."""
        with self._connect() as db:
            row = db.execute("SELECT case_ref FROM document_tombstones WHERE document_id = ?",
                             (document_id,)).fetchone()
        return None if row is None else str(row[0])

    def document_readers(self, document_id: str) -> list[str]:
        """See ``DocumentRecords.document_readers``."""
        with self._connect() as db:
            rows = db.execute("SELECT r.recipient FROM packet_documents r JOIN documents d "
                              "ON d.document_id = r.document_id AND d.case_ref = r.case_ref "
                              "WHERE r.document_id = ? GROUP BY r.recipient "
                              "ORDER BY min(r.rowid)", (document_id,)).fetchall()
        return [row[0] for row in rows]

    def add_decodes(self, lines: Sequence[DecodeLine]) -> None:
        """See ``DecodeRecords.add_decodes``."""
        with self._connect() as db:
            db.executemany("INSERT INTO decodes VALUES (?, ?, ?, ?)",
                           [(line.request_id, line.scope, line.case_ref, line.entry_json)
                            for line in lines])

    def decode_lines(self, case_refs: Sequence[str] | None = None) -> list[str]:
        """See ``DecodeRecords.decode_lines``."""
        if self.read_only and not self.path.is_file():
            return []
        with self._connect() as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                          "AND name = 'decodes'").fetchone() is None:
                return []
            query, params = "SELECT entry_json FROM decodes", list(case_refs or [])
            if case_refs is not None:
                query += f" WHERE case_ref IN ({', '.join('?' * len(params))})"
            rows = db.execute(query + " ORDER BY rowid", params).fetchall()
        return [row[0] for row in rows]

    # ---- subscriptions (``SubscriptionRecords``) -------------------------------------------

    _SUBSCRIPTION = "SELECT subscription_id, party, oin, url, created_at FROM subscriptions"

    def add_subscription(self, row: SubscriptionRow) -> SubscriptionRow:
        """See ``SubscriptionRecords.add_subscription``: ``INSERT OR IGNORE`` on the unique
        (OIN, URL), then the stored row, in one transaction."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO subscriptions VALUES (?, ?, ?, ?, ?)",
                       (row.subscription_id, row.party, row.oin, row.url, row.created_at))
            stored = db.execute(self._SUBSCRIPTION + " WHERE oin = ? AND url = ?",
                                (row.oin, row.url)).fetchone()
        return SubscriptionRow(*stored)

    def subscription(self, subscription_id: str) -> SubscriptionRow | None:
        """See ``SubscriptionRecords.subscription``."""
        with self._connect() as db:
            row = db.execute(self._SUBSCRIPTION + " WHERE subscription_id = ?",
                             (subscription_id,)).fetchone()
        return None if row is None else SubscriptionRow(*row)

    def subscription_rows(self, party: str | None = None,
                          oin: str | None = None) -> list[SubscriptionRow]:
        """See ``SubscriptionRecords.subscription_rows``."""
        query, params = filtered(self._SUBSCRIPTION, "?", party=party, oin=oin)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY rowid", params).fetchall()
        return [SubscriptionRow(*row) for row in rows]

    def remove_subscription(self, subscription_id: str) -> bool:
        """See ``SubscriptionRecords.remove_subscription``."""
        with self._connect() as db:
            return db.execute("DELETE FROM subscriptions WHERE subscription_id = ?",
                              (subscription_id,)).rowcount == 1


    # ---- the agencies' API ------------------------------------------------------------

    def record_case_party(self, row: CasePartyRow) -> bool:
        """See ``AcknowledgementRecords.record_case_party``."""
        with self._connect() as db:
            return db.execute("INSERT OR IGNORE INTO case_parties VALUES (?, ?, ?, ?)",
                              (row.case_ref, row.party, row.oin, row.recorded_at)
                              ).rowcount == 1

    def case_parties(self, case_ref: str) -> list[CasePartyRow]:
        """See ``AcknowledgementRecords.case_parties``."""
        with self._connect() as db:
            rows = db.execute("SELECT case_ref, party, oin, recorded_at FROM case_parties "
                              "WHERE case_ref = ? ORDER BY rowid", (case_ref,)).fetchall()
        return [CasePartyRow(*row) for row in rows]

    def inbox_page(self, recipient: str, *, after: int = 0, limit: int = 20,
                   case_ref: str | None = None, acknowledged: bool | None = None,
                   recorded_oin: str | None = None) -> list[InboxRow]:
        """See ``AcknowledgementRecords.inbox_page`` (by the packets' ``rowid``)."""
        query, params = inbox_sql.inbox_page(
            "rowid", "?", recipient, after=after, limit=limit, case_ref=case_ref,
            acknowledged=acknowledged, recorded_oin=recorded_oin)
        with self._connect() as db:
            return [inbox_sql.inbox_row(row) for row in db.execute(query, params).fetchall()]

    def inbox_packet(self, packet_id: str) -> InboxRow | None:
        """See ``AcknowledgementRecords.inbox_packet``."""
        with self._connect() as db:
            row = db.execute(inbox_sql.inbox_packet("rowid", "?"), (packet_id,)).fetchone()
        return None if row is None else inbox_sql.inbox_row(row)

    def acknowledge(self, row: AcknowledgementRow) -> AcknowledgementRow:
        """See ``AcknowledgementRecords.acknowledge``: ``INSERT OR IGNORE`` on the packet
        id, then the stored row, in one transaction."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO acknowledgements VALUES (?, ?, ?, ?)",
                       (row.packet_id, row.recipient, row.oin, row.acknowledged_at))
            stored = db.execute("SELECT packet_id, recipient, oin, acknowledged_at FROM "
                                "acknowledgements WHERE packet_id = ?",
                                (row.packet_id,)).fetchone()
        return AcknowledgementRow(*stored)


class SqliteDataKeys(_SqliteFile):
    """``DataKeyRecords`` in ``keys.sqlite3``.

    A part opened for writing whose file cannot be opened for writing (a data dir gone
    read-only) still reads it: a worker keeps decoding and answering queries while only
    its writes fail (and Temporal retries them).
    """

    kind = "keys"

    def _one(self, sql: str, params: tuple[str, ...]) -> tuple[Any, ...] | None:
        try:
            with self._connect() as db:
                row: tuple[Any, ...] | None = db.execute(sql, params).fetchone()
                return row
        except StorageError:
            if self.read_only:
                raise
        with connect(self.path, read_only=True) as db:
            row = db.execute(sql, params).fetchone()
            return row

    def data_key_of_scope(self, scope: str) -> DataKeyRow | None:
        """See ``DataKeyRecords.data_key_of_scope``."""
        row = self._one("SELECT key_id, scope, master_key_id, wrapped FROM data_keys "
                        "WHERE scope = ?", (scope,))
        return None if row is None else DataKeyRow(*row)

    def data_key(self, key_id: str) -> DataKeyRow | None:
        """See ``DataKeyRecords.data_key``."""
        row = self._one("SELECT key_id, scope, master_key_id, wrapped FROM data_keys "
                        "WHERE key_id = ?", (key_id,))
        return None if row is None else DataKeyRow(*row)

    def create_data_key(self, row: DataKeyRow, created_at: str) -> DataKeyRow:
        """See ``DataKeyRecords.create_data_key``: ``INSERT OR IGNORE`` on the unique
        scope, then the scope's row, in one transaction."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?, ?, NULL)",
                       (row.key_id, row.scope, row.master_key_id, row.wrapped, created_at))
            stored = db.execute("SELECT key_id, scope, master_key_id, wrapped FROM data_keys "
                                "WHERE scope = ?", (row.scope,)).fetchone()
        return DataKeyRow(*stored)

    def destroy_data_key(self, scope: str, destroyed_at: str) -> bool:
        """See ``DataKeyRecords.destroy_data_key``; then moves the overwrite from the WAL
        into the file and empties the WAL (``secure_delete`` overwrote the old bytes)."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE data_keys SET wrapped = NULL, master_key_id = NULL, destroyed_at = ? "
                "WHERE scope = ? AND wrapped IS NOT NULL", (destroyed_at, scope))
        try:
            checkpoint = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT)
            try:
                checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                checkpoint.close()
        except sqlite3.Error as error:
            raise StorageError.of(error, self.path, writing=True) from None
        return cursor.rowcount == 1

    def live_data_keys(self) -> list[DataKeyRow]:
        """See ``DataKeyRecords.live_data_keys``."""
        with self._connect() as db:
            rows = db.execute("SELECT key_id, scope, master_key_id, wrapped FROM data_keys "
                              "WHERE wrapped IS NOT NULL ORDER BY rowid").fetchall()
        return [DataKeyRow(*row) for row in rows]

    def rewrap_data_key(self, key_id: str, master_key_id: str, wrapped: bytes) -> bool:
        """See ``DataKeyRecords.rewrap_data_key``."""
        with self._connect() as db:
            cursor = db.execute("UPDATE data_keys SET master_key_id = ?, wrapped = ? "
                                "WHERE key_id = ? AND wrapped IS NOT NULL",
                                (master_key_id, wrapped, key_id))
            return cursor.rowcount == 1


class SqliteOperatorTokens(_SqliteFile):
    """``OperatorTokenRecords`` in ``operators.sqlite3``; read-only, a missing file
    holds no operators."""

    kind = "operators"

    def _exists(self) -> bool:
        return not self.read_only or self.path.is_file()

    def issue_operator_token(self, token_sha256: str, operator_id: str,
                             issued_at: str) -> str | None:
        """See ``OperatorTokenRecords.issue_operator_token`` (under the write lock)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            live = db.execute("SELECT issued_at FROM operator_tokens WHERE operator_id = ? "
                              "AND revoked_at IS NULL", (operator_id,)).fetchone()
            if live is not None:
                return str(live[0])
            db.execute("INSERT INTO operator_tokens VALUES (?, ?, ?, NULL)",
                       (token_sha256, operator_id, issued_at))
        return None

    def operator_token_rows(self) -> list[OperatorTokenRow]:
        """See ``OperatorTokenRecords.operator_token_rows``."""
        if not self._exists():
            return []
        with self._connect() as db:
            rows = db.execute("SELECT operator_id, issued_at, revoked_at FROM operator_tokens "
                              "ORDER BY issued_at, rowid").fetchall()
        return [OperatorTokenRow(*row) for row in rows]

    def revoke_operator_token(self, operator_id: str,
                              revoked_at: str) -> OperatorTokenRow | None:
        """See ``OperatorTokenRecords.revoke_operator_token``."""
        with self._connect() as db:
            db.execute("UPDATE operator_tokens SET revoked_at = ? WHERE operator_id = ? "
                       "AND revoked_at IS NULL", (revoked_at, operator_id))
            row = db.execute("SELECT issued_at, revoked_at FROM operator_tokens "
                             "WHERE operator_id = ? ORDER BY revoked_at DESC, rowid DESC",
                             (operator_id,)).fetchone()
        return None if row is None else OperatorTokenRow(operator_id, row[0], row[1])

    def operator_of_token(self, token_sha256: str) -> str | None:
        """See ``OperatorTokenRecords.operator_of_token``."""
        if not self._exists():
            return None
        with self._connect() as db:
            row = db.execute("SELECT operator_id FROM operator_tokens WHERE token_sha256 = ? "
                             "AND revoked_at IS NULL", (token_sha256,)).fetchone()
        return None if row is None else str(row[0])


class SqliteStore:
    """``StateStore`` on the data dir's three files. Each file is opened (and, unless
    read-only, created and migrated) when its part is first used, so a command touches
    only the files it needs.

    Args:
        outbox_path, key_store_path, operators_path: the files (``Settings``' paths).
        read_only: only read; create nothing.
    """

    def __init__(self, outbox_path: Path, key_store_path: Path, operators_path: Path, *,
                 read_only: bool = False) -> None:
        self.outbox_path = outbox_path
        self.key_store_path = key_store_path
        self.operators_path = operators_path
        self.read_only = read_only

    @property
    def where(self) -> str:
        """The data dir holding the files."""
        return str(self.outbox_path.parent)

    @cached_property
    def outbox(self) -> SqliteOutbox:
        """``outbox.sqlite3``."""
        return SqliteOutbox(self.outbox_path, read_only=self.read_only)

    @property
    def decodes(self) -> SqliteOutbox:
        """Also ``outbox.sqlite3``."""
        return self.outbox

    @property
    def documents(self) -> SqliteOutbox:
        """Also ``outbox.sqlite3`` (erasure deletes a case's documents with its packets)."""
        return self.outbox

    @property
    def subscriptions(self) -> SqliteOutbox:
        """Also ``outbox.sqlite3``."""
        return self.outbox

    @cached_property
    def data_keys(self) -> SqliteDataKeys:
        """``keys.sqlite3``."""
        return SqliteDataKeys(self.key_store_path, read_only=self.read_only)

    @cached_property
    def operator_tokens(self) -> SqliteOperatorTokens:
        """``operators.sqlite3``."""
        return SqliteOperatorTokens(self.operators_path, read_only=self.read_only)

    @property
    def acknowledgements(self) -> SqliteOutbox:
        """Also ``outbox.sqlite3``."""
        return self.outbox

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""
