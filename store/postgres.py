"""The PostgreSQL backend: kbflow's state in one database shared by workers on several
hosts (``KBFLOW_STORE_URL=postgresql://…``). Nothing of kbflow's state is written to a
local file.

psycopg 3 with a ``psycopg_pool.ConnectionPool`` (each connection checked before use, so
a restarted server costs no failed call). The schema is versioned
(``store/migrations/postgres``, table ``schema_version``) and migrated when a store is
opened for writing, under an advisory lock so that workers starting at once apply each
migration once. Idempotent writes are ``INSERT … ON CONFLICT DO NOTHING`` in the same
transaction as what goes with them (a packet and its processing-log lines), so two
workers racing on one packet deliver it once. The processing log is append-only in the
database too: triggers refuse an UPDATE, DELETE or TRUNCATE of its lines.

A store opened read-only runs every transaction read-only
(``default_transaction_read_only``) and migrates nothing. Every fault becomes one
``StorageError`` line naming the URL without its password and a reason from the error's
SQLSTATE (never the server's message, which may quote values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from encryption.storage import StorageError
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

#: The advisory lock (a constant 64-bit key) that serialises migrations.
MIGRATION_LOCK = 0x6B62_666C_6F77_0001  # "kbflow" 1
#: How long opening, or a call waiting for a pooled connection, waits (seconds).
CONNECT_TIMEOUT = 10
#: Connections per process: the worker's activity threads, the codec server's requests.
POOL_SIZE = 8

_SQLSTATE_REASONS = {
    "25006": "read-only (the store was opened for reading only)",
    "53100": "disk full",
    "53200": "out of memory",
    "53300": "too many connections",
    "28P01": "login refused (wrong user or password)",
    "28000": "login refused (not allowed)",
    "3D000": "no such database",
    "42501": "permission denied",
    "42P01": "kbflow's tables are missing (the schema is not migrated)",
    "40001": "a concurrent transaction conflicted",
    "40P01": "deadlock",
    "57014": "statement timed out or cancelled",
    "57P01": "the server shut down",
    "57P02": "the server crashed",
    "57P03": "the server is starting up or shutting down",
}
_CLASS_REASONS = {"08": "connection lost", "53": "the server is out of resources",
                  "58": "the server's disk or system failed", "XX": "the server failed"}
_MESSAGE_REASONS = (  # connection failures have no SQLSTATE: libpq's words
    ("connection refused", "connection refused (is the server running?)"),
    ("timeout expired", "connection timed out"),
    ("could not translate host name", "unknown host"),
    ("name or service not known", "unknown host"),
    ("password authentication failed", "login refused (wrong user or password)"),
    ("no password supplied", "login refused (no password given)"),
    ("does not exist", "no such database or role"),
    ("no pg_hba.conf entry", "login refused (not allowed from this host)"),
    ("too many clients", "too many connections"),
    ("server closed the connection", "connection lost"),
    ("ssl", "TLS failed"),
)


def redacted(url: str) -> str:
    """``url`` without its password (nor any other parameter): what messages name, e.g.
    ``postgresql://kbflow@db:5432/kbflow``. A URL that does not parse is named as
    ``KBFLOW_STORE_URL``."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "KBFLOW_STORE_URL"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def reason(error: BaseException) -> str:
    """Why a PostgreSQL call failed, in a few words (never data or the password)."""
    if isinstance(error, PoolTimeout):
        return f"no connection within {CONNECT_TIMEOUT} s (server unreachable or busy)"
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str):
        if state == "42501" and "append-only" in str(error):
            return "the processing log is append-only"
        if state in _SQLSTATE_REASONS:
            return _SQLSTATE_REASONS[state]
        if state[:2] in _CLASS_REASONS:
            return _CLASS_REASONS[state[:2]]
        return f"SQLSTATE {state}"
    text = str(error).lower()
    for fragment, said in _MESSAGE_REASONS:
        if fragment in text:
            return said
    return type(error).__name__


def _apply_migrations(db: psycopg.Connection[Any]) -> None:
    """Apply the migrations ``db`` lacks, each once, under ``MIGRATION_LOCK`` (held
    until this transaction ends: a second worker waits, then finds them applied)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                   "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        applied = {row[0] for row in db.execute("SELECT version FROM schema_version")}
        for migration in migrations("postgres"):
            if migration.version in applied:
                continue
            db.execute(migration.sql.encode())  # several statements, no parameters
            db.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                       (migration.version, migration.name))


class PostgresStore:
    """``StateStore`` (all five parts) on one PostgreSQL database.

    Args:
        url: ``postgresql://user:password@host:port/database`` (``KBFLOW_STORE_URL``).
        read_only: only read: migrate nothing, every transaction read-only.
        pool_size: the most connections this process holds.

    Raises:
        StorageError: the server cannot be reached, the login is refused, the schema
            cannot be migrated, or (read-only) it was never migrated; here and in every
            method for any fault, one line with the URL's password left out.
    """

    def __init__(self, url: str, *, read_only: bool = False,
                 pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.read_only = read_only
        self._where = redacted(url)
        if self._where == "KBFLOW_STORE_URL":
            raise StorageError("cannot open KBFLOW_STORE_URL: not a valid PostgreSQL URL")
        options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT,
                                   "application_name": "kbflow"}
        if read_only:
            options["options"] = "-c default_transaction_read_only=on"
        try:
            with psycopg.connect(url, autocommit=True, **options) as db:
                if not read_only:
                    _apply_migrations(db)
                elif db.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
                    raise StorageError(f"cannot read {self._where}: kbflow's tables are "
                                       "missing (no worker has opened this store yet)")
        except psycopg.Error as error:
            raise self._fault(error, writing=not read_only) from None
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            url, kwargs=options, min_size=1, max_size=pool_size, timeout=CONNECT_TIMEOUT,
            check=ConnectionPool.check_connection, name="kbflow-store", open=True)

    @property
    def where(self) -> str:
        """The URL without its password."""
        return self._where

    @property
    def outbox(self) -> PostgresStore:
        """This store (it implements every part)."""
        return self

    @property
    def decodes(self) -> PostgresStore:
        """This store."""
        return self

    @property
    def data_keys(self) -> PostgresStore:
        """This store."""
        return self

    @property
    def operator_tokens(self) -> PostgresStore:
        """This store."""
        return self

    @property
    def acknowledgements(self) -> PostgresStore:
        """This store."""
        return self

    @property
    def subscriptions(self) -> PostgresStore:
        """This store."""
        return self

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    def _fault(self, error: BaseException, *, writing: bool) -> StorageError:
        verb = "write" if writing else "read"
        return StorageError(f"cannot {verb} {self._where}: {reason(error)}")

    @contextmanager
    def _transaction(self, *, writing: bool = False
                     ) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection in one transaction: committed when the block ends,
        rolled back on an error; a psycopg error becomes ``StorageError``."""
        try:
            with self._pool.connection() as db:
                yield db
        except psycopg.Error as error:
            raise self._fault(error, writing=writing) from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as db:
            return db.execute(sql, params).fetchall()

    # ---- outbox ---------------------------------------------------------------------------

    def add_packet(self, packet: PacketRow,
                   log_lines: Callable[[], Sequence[ProcessingLogLine]]) -> bool:
        """See ``OutboxRecords.add_packet``. Of two transactions inserting one packet id
        at once, the second waits for the first and then inserts nothing."""
        with self._transaction(writing=True) as db:
            cursor = db.execute(
                "INSERT INTO packets (packet_id, case_ref, step, sender, recipient, "
                "created_at, key_id, ciphertext) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (packet_id) DO NOTHING",
                (packet.packet_id, packet.case_ref, packet.step, packet.sender,
                 packet.recipient, packet.created_at, packet.key_id, packet.ciphertext))
            if cursor.rowcount == 0:
                return False
            cursor.executemany(
                "INSERT INTO processing_log (packet_id, data_subject_id, case_ref, "
                "entry_json) VALUES (%s, %s, %s, %s)",
                [(line.packet_id, line.data_subject_id, line.case_ref, line.entry_json)
                 for line in log_lines()])
            cursor.executemany(
                "INSERT INTO packet_documents (packet_id, document_id, case_ref, recipient) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(packet.packet_id, document_id, packet.case_ref, packet.recipient)
                 for document_id in packet.document_ids])
            return True

    def packet_rows(self, case_ref: str | None = None,
                    recipient: str | None = None) -> list[PacketRow]:
        """See ``OutboxRecords.packet_rows``."""
        query, params = filtered(
            "SELECT packet_id, case_ref, step, sender, recipient, created_at, key_id, "
            "ciphertext FROM packets", "%s", case_ref=case_ref, recipient=recipient)
        rows = self._rows(query + " ORDER BY created_at, step, seq", params)
        return [PacketRow(packet_id, case, step, sender, to, created_at, key_id, bytes(text))
                for packet_id, case, step, sender, to, created_at, key_id, text in rows]

    def processing_log_lines(self, case_ref: str | None = None,
                             data_subject_id: str | None = None) -> list[str]:
        """See ``OutboxRecords.processing_log_lines``."""
        query, params = filtered("SELECT entry_json FROM processing_log", "%s",
                                 case_ref=case_ref, data_subject_id=data_subject_id)
        return [row[0] for row in self._rows(query + " ORDER BY seq", params)]

    def add_reminder(self, reminder: ReminderRow) -> bool:
        """See ``OutboxRecords.add_reminder``."""
        with self._transaction(writing=True) as db:
            cursor = db.execute(
                "INSERT INTO reminders (notice_id, case_ref, party, reminder_json) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (notice_id) DO NOTHING",
                (reminder.notice_id, reminder.case_ref, reminder.party,
                 reminder.reminder_json))
            return cursor.rowcount == 1

    def reminder_rows(self, case_ref: str) -> list[str]:
        """See ``OutboxRecords.reminder_rows``."""
        return [row[0] for row in self._rows(
            "SELECT reminder_json FROM reminders WHERE case_ref = %s ORDER BY seq",
            (case_ref,))]

    def erase_case(self, case_ref: str, erasure_json: Callable[[int], str]) -> str:
        """See ``OutboxRecords.erase_case``; erasures of one case are serialised by an
        advisory lock on the case ref, so a second one finds the first's record."""
        with self._transaction(writing=True) as db:
            db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                       (f"kbflow-erasure:{case_ref}",))
            row = db.execute("SELECT erasure_json FROM erasures WHERE case_ref = %s",
                             (case_ref,)).fetchone()
            if row is not None:
                return str(row[0])
            removed = db.execute("DELETE FROM packets WHERE case_ref = %s",
                                 (case_ref,)).rowcount
            db.execute("DELETE FROM reminders WHERE case_ref = %s", (case_ref,))
            db.execute("INSERT INTO document_tombstones (document_id, case_ref) "
                       "SELECT document_id, case_ref FROM documents WHERE case_ref = %s "
                       "ON CONFLICT DO NOTHING", (case_ref,))
            db.execute("DELETE FROM documents WHERE case_ref = %s", (case_ref,))
            db.execute("DELETE FROM packet_documents WHERE case_ref = %s", (case_ref,))
            record = erasure_json(removed)
            db.execute("INSERT INTO erasures (case_ref, erasure_json) VALUES (%s, %s)",
                       (case_ref, record))
            return record

    def erasure_rows(self) -> list[str]:
        """See ``OutboxRecords.erasure_rows``."""
        return [row[0] for row in self._rows("SELECT erasure_json FROM erasures ORDER BY seq")]

    # ---- documents ------------------------------------------------------------------------

    @property
    def documents(self) -> PostgresStore:
        """This store."""
        return self

    def add_document(self, document: DocumentRow) -> bool:
        """See ``DocumentRecords.add_document``; an id with a tombstone is not stored
        again (the check and the insert in one transaction, under a lock on the id)."""
        with self._transaction(writing=True) as db:
            db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                       (f"kbflow-document:{document.document_id}",))
            if db.execute("SELECT 1 FROM document_tombstones WHERE document_id = %s",
                          (document.document_id,)).fetchone() is not None:
                return False
            return db.execute(
                "INSERT INTO documents (document_id, case_ref, uploader, uploader_oin, "
                "media_type, size, sha256, created_at, key_id, ciphertext) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (document_id) DO NOTHING",
                (document.document_id, document.case_ref, document.uploader,
                 document.uploader_oin, document.media_type, document.size, document.sha256,
                 document.created_at, document.key_id, document.ciphertext)).rowcount == 1

    def document_row(self, document_id: str, *, content: bool = True) -> DocumentRow | None:
        """See ``DocumentRecords.document_row``."""
        blob = "ciphertext" if content else "''::bytea"
        rows = self._rows("SELECT document_id, case_ref, uploader, uploader_oin, media_type, "
                          f"size, sha256, created_at, key_id, {blob} FROM documents "
                          "WHERE document_id = %s", (document_id,))
        return None if not rows else DocumentRow.of(rows[0])

    def document_erased(self, document_id: str) -> str | None:
        """See ``DocumentRecords.document_erased``."""
        rows = self._rows("SELECT case_ref FROM document_tombstones WHERE document_id = %s",
                          (document_id,))
        return str(rows[0][0]) if rows else None

    def document_readers(self, document_id: str) -> list[str]:
        """See ``DocumentRecords.document_readers``."""
        rows = self._rows("SELECT r.recipient FROM packet_documents r JOIN documents d "
                          "ON d.document_id = r.document_id AND d.case_ref = r.case_ref "
                          "JOIN packets p ON p.packet_id = r.packet_id "
                          "WHERE r.document_id = %s GROUP BY r.recipient ORDER BY min(p.seq)",
                          (document_id,))
        return [row[0] for row in rows]

    # ---- decodes --------------------------------------------------------------------------

    def add_decodes(self, lines: Sequence[DecodeLine]) -> None:
        """See ``DecodeRecords.add_decodes``."""
        with self._transaction(writing=True) as db, db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO decodes (request_id, scope, case_ref, entry_json) "
                "VALUES (%s, %s, %s, %s)",
                [(line.request_id, line.scope, line.case_ref, line.entry_json)
                 for line in lines])

    def decode_lines(self, case_refs: Sequence[str] | None = None) -> list[str]:
        """See ``DecodeRecords.decode_lines``."""
        if case_refs is None:
            rows = self._rows("SELECT entry_json FROM decodes ORDER BY seq")
        else:
            rows = self._rows("SELECT entry_json FROM decodes WHERE case_ref = ANY(%s) "
                              "ORDER BY seq", (list(case_refs),))
        return [row[0] for row in rows]

    # ---- data keys ------------------------------------------------------------------------

    def _key_row(self, where: str, value: str) -> DataKeyRow | None:
        rows = self._rows("SELECT key_id, scope, master_key_id, wrapped FROM data_keys "
                          f"WHERE {where} = %s", (value,))
        return _data_key(rows[0]) if rows else None

    def data_key_of_scope(self, scope: str) -> DataKeyRow | None:
        """See ``DataKeyRecords.data_key_of_scope``."""
        return self._key_row("scope", scope)

    def data_key(self, key_id: str) -> DataKeyRow | None:
        """See ``DataKeyRecords.data_key``."""
        return self._key_row("key_id", key_id)

    def create_data_key(self, row: DataKeyRow, created_at: str) -> DataKeyRow:
        """See ``DataKeyRecords.create_data_key``: ``ON CONFLICT DO NOTHING`` on the
        unique scope; the loser of a race reads the winner's committed row."""
        with self._transaction(writing=True) as db:
            db.execute("INSERT INTO data_keys (key_id, scope, master_key_id, wrapped, "
                       "created_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                       (row.key_id, row.scope, row.master_key_id, row.wrapped, created_at))
            stored = db.execute("SELECT key_id, scope, master_key_id, wrapped FROM data_keys "
                                "WHERE scope = %s", (row.scope,)).fetchone()
        assert stored is not None  # inserted, or there first
        return _data_key(stored)

    def destroy_data_key(self, scope: str, destroyed_at: str) -> bool:
        """See ``DataKeyRecords.destroy_data_key``. Then VACUUMs the table (best effort:
        it needs the table's owner), so the old row version is freed at once rather
        than at the next autovacuum. The database's WAL and backups keep the wrapped
        key until they expire: without its master key (or the KMS key) it opens
        nothing."""
        with self._transaction(writing=True) as db:
            destroyed = db.execute(
                "UPDATE data_keys SET wrapped = NULL, master_key_id = NULL, destroyed_at = %s "
                "WHERE scope = %s AND wrapped IS NOT NULL", (destroyed_at, scope)).rowcount == 1
        if destroyed:
            try:
                with self._pool.connection() as db:
                    db.autocommit = True  # VACUUM runs outside a transaction
                    try:
                        db.execute("VACUUM data_keys")
                    finally:
                        db.autocommit = False
            except psycopg.Error:
                pass  # not the owner, or busy: autovacuum frees the row version later
        return destroyed

    def live_data_keys(self) -> list[DataKeyRow]:
        """See ``DataKeyRecords.live_data_keys``."""
        return [_data_key(row) for row in self._rows(
            "SELECT key_id, scope, master_key_id, wrapped FROM data_keys "
            "WHERE wrapped IS NOT NULL ORDER BY created_at, key_id")]

    def rewrap_data_key(self, key_id: str, master_key_id: str, wrapped: bytes) -> bool:
        """See ``DataKeyRecords.rewrap_data_key``."""
        with self._transaction(writing=True) as db:
            return db.execute("UPDATE data_keys SET master_key_id = %s, wrapped = %s "
                              "WHERE key_id = %s AND wrapped IS NOT NULL",
                              (master_key_id, wrapped, key_id)).rowcount == 1

    # ---- operator tokens ------------------------------------------------------------------

    def issue_operator_token(self, token_sha256: str, operator_id: str,
                             issued_at: str) -> str | None:
        """See ``OperatorTokenRecords.issue_operator_token``: the partial unique index
        (one live token per operator) decides a race."""
        with self._transaction(writing=True) as db:
            inserted = db.execute(
                "INSERT INTO operator_tokens (token_sha256, operator_id, issued_at) "
                "VALUES (%s, %s, %s) ON CONFLICT (operator_id) WHERE revoked_at IS NULL "
                "DO NOTHING", (token_sha256, operator_id, issued_at)).rowcount
            if inserted == 1:
                return None
            live = db.execute("SELECT issued_at FROM operator_tokens WHERE operator_id = %s "
                              "AND revoked_at IS NULL", (operator_id,)).fetchone()
        return "" if live is None else str(live[0])

    def operator_token_rows(self) -> list[OperatorTokenRow]:
        """See ``OperatorTokenRecords.operator_token_rows``."""
        return [OperatorTokenRow(*row) for row in self._rows(
            "SELECT operator_id, issued_at, revoked_at FROM operator_tokens "
            "ORDER BY issued_at, seq")]

    def revoke_operator_token(self, operator_id: str,
                              revoked_at: str) -> OperatorTokenRow | None:
        """See ``OperatorTokenRecords.revoke_operator_token``."""
        with self._transaction(writing=True) as db:
            db.execute("UPDATE operator_tokens SET revoked_at = %s WHERE operator_id = %s "
                       "AND revoked_at IS NULL", (revoked_at, operator_id))
            row = db.execute("SELECT issued_at, revoked_at FROM operator_tokens "
                             "WHERE operator_id = %s "
                             "ORDER BY revoked_at DESC NULLS LAST, seq DESC",
                             (operator_id,)).fetchone()
        return None if row is None else OperatorTokenRow(operator_id, row[0], row[1])

    def operator_of_token(self, token_sha256: str) -> str | None:
        """See ``OperatorTokenRecords.operator_of_token``."""
        rows = self._rows("SELECT operator_id FROM operator_tokens WHERE token_sha256 = %s "
                          "AND revoked_at IS NULL", (token_sha256,))
        return str(rows[0][0]) if rows else None


    # ---- the agencies' API ------------------------------------------------------------

    def record_case_party(self, row: CasePartyRow) -> bool:
        """See ``AcknowledgementRecords.record_case_party``."""
        with self._transaction(writing=True) as db:
            return db.execute(
                "INSERT INTO case_parties (case_ref, party, oin, recorded_at) VALUES "
                "(%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (row.case_ref, row.party, row.oin, row.recorded_at)).rowcount == 1

    def case_parties(self, case_ref: str) -> list[CasePartyRow]:
        """See ``AcknowledgementRecords.case_parties``."""
        return [CasePartyRow(*row) for row in self._rows(
            "SELECT case_ref, party, oin, recorded_at FROM case_parties WHERE case_ref = %s "
            "ORDER BY seq", (case_ref,))]

    def inbox_page(self, recipient: str, *, after: int = 0, limit: int = 20,
                   case_ref: str | None = None, acknowledged: bool | None = None,
                   recorded_oin: str | None = None) -> list[InboxRow]:
        """See ``AcknowledgementRecords.inbox_page`` (by the packets' ``seq``)."""
        query, params = inbox_sql.inbox_page(
            "seq", "%s", recipient, after=after, limit=limit, case_ref=case_ref,
            acknowledged=acknowledged, recorded_oin=recorded_oin)
        return [inbox_sql.inbox_row(row) for row in self._rows(query, params)]

    def inbox_packet(self, packet_id: str) -> InboxRow | None:
        """See ``AcknowledgementRecords.inbox_packet``."""
        rows = self._rows(inbox_sql.inbox_packet("seq", "%s"), (packet_id,))
        return inbox_sql.inbox_row(rows[0]) if rows else None

    def acknowledge(self, row: AcknowledgementRow) -> AcknowledgementRow:
        """See ``AcknowledgementRecords.acknowledge``: ``ON CONFLICT DO NOTHING`` on the
        packet id; the loser of a race reads the winner's committed row."""
        with self._transaction(writing=True) as db:
            db.execute("INSERT INTO acknowledgements (packet_id, recipient, oin, "
                       "acknowledged_at) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                       (row.packet_id, row.recipient, row.oin, row.acknowledged_at))
            stored = db.execute("SELECT packet_id, recipient, oin, acknowledged_at FROM "
                                "acknowledgements WHERE packet_id = %s",
                                (row.packet_id,)).fetchone()
        assert stored is not None  # inserted, or there first
        return AcknowledgementRow(*stored)

    # ---- subscriptions --------------------------------------------------------------------

    _SUBSCRIPTION = "SELECT subscription_id, party, oin, url, created_at FROM subscriptions"

    def add_subscription(self, row: SubscriptionRow) -> SubscriptionRow:
        """See ``SubscriptionRecords.add_subscription``: ``ON CONFLICT DO NOTHING`` on the
        unique (OIN, URL); the loser of a race reads the winner's committed row."""
        with self._transaction(writing=True) as db:
            db.execute("INSERT INTO subscriptions (subscription_id, party, oin, url, "
                       "created_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                       (row.subscription_id, row.party, row.oin, row.url, row.created_at))
            stored = db.execute(self._SUBSCRIPTION + " WHERE oin = %s AND url = %s",
                                (row.oin, row.url)).fetchone()
        assert stored is not None  # inserted, or there first
        return SubscriptionRow(*stored)

    def subscription(self, subscription_id: str) -> SubscriptionRow | None:
        """See ``SubscriptionRecords.subscription``."""
        rows = self._rows(self._SUBSCRIPTION + " WHERE subscription_id = %s",
                          (subscription_id,))
        return SubscriptionRow(*rows[0]) if rows else None

    def subscription_rows(self, party: str | None = None,
                          oin: str | None = None) -> list[SubscriptionRow]:
        """See ``SubscriptionRecords.subscription_rows``."""
        query, params = filtered(self._SUBSCRIPTION, "%s", party=party, oin=oin)
        return [SubscriptionRow(*row) for row in self._rows(query + " ORDER BY seq", params)]

    def remove_subscription(self, subscription_id: str) -> bool:
        """See ``SubscriptionRecords.remove_subscription``."""
        with self._transaction(writing=True) as db:
            return db.execute("DELETE FROM subscriptions WHERE subscription_id = %s",
                              (subscription_id,)).rowcount == 1


def _data_key(row: tuple[Any, ...]) -> DataKeyRow:
    key_id, scope, master_key_id, wrapped = row
    return DataKeyRow(key_id, scope, master_key_id, None if wrapped is None else bytes(wrapped))
