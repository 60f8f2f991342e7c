"""The outbox store: each party's delivered packets, reminders, erasures and the
processing log, in the state store (``store``: the SQLite file ``Settings.outbox_path``,
or PostgreSQL with ``KBFLOW_STORE_URL``).

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
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import CryptoError
from pydantic import BaseModel, ConfigDict

from activities.pseudonyms import Pseudonymiser
from encryption.keys import KeyStore, KeyUnavailable
from encryption.sealed import PartyKeyMissing, PartyKeys
from encryption.storage import StorageError
from kbflow import trace
from kbflow.case import Reminder
from kbflow.documents import document_ids
from kbflow.packets import Packet
from kbflow.process import Party
from kbflow.processing_log import DecodeEntry, LogEntry, Pseudonymise, entries_for, parse_entry
from kbflow.settings import Settings, workflow_id
from store import open_store
from store.interface import (
    DecodeLine,
    DecodeRecords,
    OutboxRecords,
    PacketRow,
    ProcessingLogLine,
    ReminderRow,
    SubscriptionRecords,
)
from store.sqlite import SqliteOutbox


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
    """Outboxes, reminders, erasures and the processing log, in the state store.

    Args:
        settings: the store is what ``settings`` configures (``store.open_store``:
            ``settings.outbox_path``, or ``KBFLOW_STORE_URL``); the keys not given default
            to what ``settings`` configures (``Pseudonymiser.load``, ``KeyStore.open``,
            ``PartyKeys.open``).
        pseudonymise: data-subject ids for the processing log.
        keys: the case data keys (shared with the payload codec).
        party_keys: the parties' key pairs (public keys suffice to deliver).
        read_only: only read (``packets``, ``inbox``, ``disclosures``, ``status``): no
            file, table or key is created, so a read-only data dir serves them; writing
            raises ``StorageError``.
        records: the rows' backend; default ``open_store(settings).outbox``.
        subscriptions: the webhooks' backend; default ``open_store(settings).subscriptions``.

    Safe to share between threads: every call opens its own connection (or takes one
    from the pool).

    Raises:
        StorageError: the store cannot be created, opened, read or written (here and in
            every method; e.g. a read-only data dir, a full disk, an unreachable
            database). Deliveries then fail and Temporal retries them.
        SettingsError: a PostgreSQL store, and a secret every host must share is unset
            (``Settings.require_shared_secrets``).
    """

    def __init__(self, settings: Settings, pseudonymise: Pseudonymise | None = None, *,
                 keys: KeyStore | None = None, party_keys: PartyKeys | None = None,
                 read_only: bool = False, records: OutboxRecords | None = None,
                 subscriptions: SubscriptionRecords | None = None) -> None:
        self.path = settings.outbox_path
        self.read_only = read_only
        if not read_only:  # a worker: on a shared store, name every secret it lacks at once
            settings.require_shared_secrets()
        try:
            self.pseudonymise = pseudonymise or (
                _no_pseudonyms if read_only else Pseudonymiser.load(settings))
            self.party_keys = party_keys or PartyKeys.open(settings)
        except OSError as error:  # the pseudonym key or the party keys' folder
            raise StorageError.of(error, Path(error.filename or settings.data_dir),
                                  writing=not read_only) from None
        self.keys = keys or KeyStore.open(settings, read_only=read_only)
        self.records = records or open_store(settings, read_only=read_only).outbox
        self._subscriptions = subscriptions
        self._settings = settings

    @property
    def subscriptions(self) -> SubscriptionRecords:
        """The parties' webhooks (``kbflow.notifications``), in the same store; opened on
        first use."""
        if self._subscriptions is None:
            self._subscriptions = open_store(self._settings,
                                             read_only=self.read_only).subscriptions
        return self._subscriptions

    def deliver(self, packet: Packet) -> bool:
        """Put ``packet`` in its recipient's outbox and log it, once; its log entries are
        spans under the current trace's span (``kbflow.trace.current()``: the delivery
        activity's, ``kbflow.processing_log.entries_for``), else in a new trace.

        The documents its body references are recorded with it (``PacketRow.document_ids``):
        its recipient may then download them (``activities.documents``).

        Returns:
            True if delivered now, False if this packet id was delivered before.
        """
        key_id, ciphertext = self._encrypt(packet)
        context = trace.current()
        row = PacketRow(packet.packet_id, packet.case_ref, int(packet.step), packet.sender.value,
                        packet.recipient.value, packet.created_at.isoformat(), key_id,
                        ciphertext, document_ids(packet.body))
        return self.records.add_packet(row, lambda: [
            ProcessingLogLine(entry.packet_id, entry.data_subject_id, entry.case_ref,
                              entry.model_dump_json())
            for entry in entries_for(packet, self.pseudonymise, context)])

    def remind(self, reminder: Reminder) -> bool:
        """Put a reminder in the late party's outbox, once per notice id."""
        return self.records.add_reminder(ReminderRow(
            reminder.notice_id, reminder.case_ref, reminder.party.value,
            reminder.model_dump_json()))

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
        rows = self.records.packet_rows(case_ref, None if party is None else party.value)
        return [self._decrypt(row.packet_id, Party(row.recipient), row.key_id, row.ciphertext)
                for row in rows]

    def inbox(self, party: Party) -> list[Packet]:
        """Every packet ``party`` received, opened with ``party``'s private key only."""
        return self.packets(party=party)

    def erase(self, case_ref: str, *, reason: str, requested_by: str,
              at: dt.datetime) -> Erasure:
        """Crypto-shred a case: destroy its data key and remove its packets, reminders and
        documents; record the erasure. The processing log stays (it holds no personal values).
        Idempotent: a second call returns the first record.
        """
        key_destroyed = self.keys.destroy(workflow_id(case_ref))

        def record(removed: int) -> str:
            return Erasure(case_ref=case_ref, at=at, reason=reason, requested_by=requested_by,
                           packets_removed=removed,
                           key_destroyed=key_destroyed).model_dump_json()

        return Erasure.model_validate_json(self.records.erase_case(case_ref, record))

    def erasures(self) -> list[Erasure]:
        """Every erasure on record, oldest first."""
        return [Erasure.model_validate_json(row) for row in self.records.erasure_rows()]

    def reminders(self, case_ref: str) -> list[Reminder]:
        """Reminders sent for a case, oldest first."""
        return [Reminder.model_validate_json(row) for row in self.records.reminder_rows(case_ref)]

    def processing_log(self, case_ref: str | None = None,
                       data_subject_id: str | None = None) -> list[LogEntry]:
        """Processing-log entries, oldest first, optionally of one case and/or one data
        subject (pseudonym); lines of the earlier shape as they are (``parse_entry``)."""
        return [parse_entry(line)
                for line in self.records.processing_log_lines(case_ref, data_subject_id)]


class DecodeLog:
    """The processing log's record of decodes through the codec server, in the state
    store (beside the outbox). It needs no key: the codec server writes it without the
    pseudonym or the parties' keys.

    Args:
        path: the outbox store's SQLite file (used unless ``records`` is given).
        read_only: only read (``kbflow disclosures``): create nothing; a file without
            the table (written before decodes were logged) holds no decodes.
        records: the rows' backend (``DecodeLog.open``: the configured store).

    Raises:
        StorageError: the store cannot be created, opened, read or written (here and in
            every method). The codec server then answers 503 and decodes nothing: no
            decode goes unrecorded.
    """

    def __init__(self, path: Path, *, read_only: bool = False,
                 records: DecodeRecords | None = None) -> None:
        self.path = path
        self.read_only = read_only
        self.records = records or SqliteOutbox(path, read_only=read_only)

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> DecodeLog:
        """The decode log of the store ``settings`` configures (``store.open_store``)."""
        return cls(settings.outbox_path, read_only=read_only,
                   records=open_store(settings, read_only=read_only).decodes)

    def record(self, entries: list[DecodeEntry]) -> None:
        """Write ``entries`` in one transaction (acknowledged when this returns)."""
        self.records.add_decodes([DecodeLine(e.request_id, e.scope, e.case_ref,
                                             e.model_dump_json()) for e in entries])

    def entries(self, case_refs: list[str] | None = None) -> list[DecodeEntry]:
        """Decodes on record, oldest first; with ``case_refs``, only of those cases."""
        return [DecodeEntry.model_validate_json(line)
                for line in self.records.decode_lines(case_refs)]
