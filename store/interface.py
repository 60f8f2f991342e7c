"""The state store: everything kbflow keeps outside Temporal, at the row level.

Temporal holds each case's history; kbflow itself keeps the parties' outboxes (sealed,
encrypted packets), the processing log (GDPR art. 30: one line per data subject per
disclosure, and every decode through the codec server), the erasures, the reminders, the
case data keys (wrapped), the operators' hashed codec tokens and what the agencies'
API records (case parties, acknowledgements). ``StateStore`` is the one
interface to all of it; ``store.sqlite`` (files in the data dir, one host) and
``store.postgres`` (one database shared by workers on several hosts) implement it.

The backends see rows only: ids, times (ISO 8601 text), JSON and opaque bytes. They
never encrypt, decrypt, seal or validate: ``activities.outbox_store``,
``encryption.keys`` and ``encryption.operators`` do that and hold the pydantic models
and caches.

The rules every backend keeps (``tests/test_store_contract.py`` checks them on both):

- A packet is stored once per packet id, with its processing-log lines in the same
  transaction; a second ``add_packet`` with the same id (a retried delivery, or another
  worker racing) stores nothing and says so.
- The processing log is append-only: this interface has no method that updates or
  deletes a line (and PostgreSQL refuses it in the database too).
- A reminder is stored once per notice id; an erasure once per case; a document once per
  document id; a webhook once per OIN and URL. Erasing a case deletes its documents in
  the erasure's transaction.
- A scope gets one data key, even when two processes create it at once: the loser gets
  the winner's row. Destroying a key NULLs its wrapped bytes for good; rewrapping never
  brings a destroyed key back.
- Lists come oldest first (the order of insertion).
- Every fault (a read-only or full disk, an unreachable server, a refused login) raises
  ``StorageError`` with one line naming what, where (a file, or the URL without its
  password) and why; never data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class PacketRow:
    """A delivered packet as stored: readable routing fields and the ciphertext (sealed
    to the recipient, then encrypted under the case's data key ``key_id``)."""

    packet_id: str
    case_ref: str
    step: int
    sender: str
    recipient: str
    created_at: str
    key_id: str
    ciphertext: bytes
    #: The documents the packet's body references (``DocumentRef``s): recorded with the
    #: packet, so that a document's readers are known without decrypting anything.
    document_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DocumentRow:
    """A stored document: readable routing fields (who uploaded it to which case, its
    media type, size and SHA-256: no personal data) and the ciphertext (under the case's
    data key ``key_id``). ``ciphertext`` is ``b""`` where a read asked for the fields
    only."""

    document_id: str
    case_ref: str
    uploader: str
    uploader_oin: str | None
    media_type: str
    size: int
    sha256: str
    created_at: str
    key_id: str
    ciphertext: bytes

    @classmethod
    def of(cls, row: Sequence[Any]) -> DocumentRow:
        """A row as both backends select it: the fields in order (the ciphertext as
        bytes, memoryview or bytea)."""
        (document_id, case_ref, uploader, uploader_oin, media_type, size, sha256,
         created_at, key_id, ciphertext) = row
        return cls(str(document_id), str(case_ref), str(uploader),
                   None if uploader_oin is None else str(uploader_oin), str(media_type),
                   int(size), str(sha256), str(created_at), str(key_id), bytes(ciphertext))


@dataclass(frozen=True)
class ProcessingLogLine:
    """One processing-log line: a data subject's pseudonym and the entry's JSON (no
    personal values)."""

    packet_id: str
    data_subject_id: str
    case_ref: str
    entry_json: str


@dataclass(frozen=True)
class DecodeLine:
    """One decode through the codec server: a request's payloads of one key scope."""

    request_id: str
    scope: str
    case_ref: str | None
    entry_json: str


@dataclass(frozen=True)
class ReminderRow:
    """A reminder to a late party, once per notice id."""

    notice_id: str
    case_ref: str
    party: str
    reminder_json: str


@dataclass(frozen=True)
class DataKeyRow:
    """A case's data key, wrapped. ``master_key_id`` and ``wrapped`` are ``None`` once the
    key is destroyed (crypto-shredded)."""

    key_id: str
    scope: str
    master_key_id: str | None
    wrapped: bytes | None

    @property
    def destroyed(self) -> bool:
        """Whether the key was destroyed."""
        return self.wrapped is None


@dataclass(frozen=True)
class OperatorTokenRow:
    """An operator's codec token as stored: its SHA-256 digest never leaves the store."""

    operator_id: str
    issued_at: str
    revoked_at: str | None


@runtime_checkable
class OutboxRecords(Protocol):
    """The parties' outboxes, the processing log, reminders and erasures."""

    def add_packet(self, packet: PacketRow,
                   log_lines: Callable[[], Sequence[ProcessingLogLine]]) -> bool:
        """Store ``packet`` and its processing-log lines in one transaction, once per
        packet id, with which documents it references (``packet.document_ids``).
        ``log_lines`` is called only when the packet is new.

        Returns:
            True if stored now; False if this packet id was stored before (nothing
            written).
        """
        ...

    def packet_rows(self, case_ref: str | None = None,
                    recipient: str | None = None) -> list[PacketRow]:
        """Stored packets, by ``created_at``, step, then insertion; optionally of one
        case and/or one recipient."""
        ...

    def processing_log_lines(self, case_ref: str | None = None,
                             data_subject_id: str | None = None) -> list[str]:
        """The processing log's entry JSONs, oldest first, optionally of one case and/or
        one data subject."""
        ...

    def add_reminder(self, reminder: ReminderRow) -> bool:
        """Store ``reminder`` once per notice id; True if stored now."""
        ...

    def reminder_rows(self, case_ref: str) -> list[str]:
        """A case's reminder JSONs, oldest first."""
        ...

    def erase_case(self, case_ref: str, erasure_json: Callable[[int], str]) -> str:
        """In one transaction: if ``case_ref`` has an erasure on record, return its JSON
        and change nothing; else delete the case's packets, reminders and documents
        (each document's id stays as a tombstone, ``DocumentRecords.document_erased``)
        and record ``erasure_json(packets_removed)``, and return it. The processing log
        stays."""
        ...

    def erasure_rows(self) -> list[str]:
        """Every erasure's JSON, oldest first."""
        ...


@runtime_checkable
class DocumentRecords(Protocol):
    """Documents by reference, each stored once, and which packets reference them (written
    by ``OutboxRecords.add_packet`` from ``PacketRow.document_ids``). A case's documents
    are deleted by ``OutboxRecords.erase_case``, in its transaction."""

    def add_document(self, document: DocumentRow) -> bool:
        """Store ``document`` once per document id.

        Returns:
            True if stored now; False if the id was stored (or erased) before.
        """
        ...

    def document_row(self, document_id: str, *, content: bool = True) -> DocumentRow | None:
        """The document ``document_id`` (without its ciphertext unless ``content``), or
        None if none is stored (unknown, or erased)."""
        ...

    def document_erased(self, document_id: str) -> str | None:
        """The case ref of an erased document's tombstone, or None."""
        ...

    def document_readers(self, document_id: str) -> list[str]:
        """The recipients (party codes) of the packets of the document's own case that
        reference ``document_id``, each once, in the order of delivery (a packet of
        another case naming it makes no reader)."""
        ...


@runtime_checkable
class DecodeRecords(Protocol):
    """The processing log's record of decodes through the codec server (append-only)."""

    def add_decodes(self, lines: Sequence[DecodeLine]) -> None:
        """Store ``lines`` in one transaction (durable when this returns)."""
        ...

    def decode_lines(self, case_refs: Sequence[str] | None = None) -> list[str]:
        """The decodes' entry JSONs, oldest first; with ``case_refs``, of those cases."""
        ...


@runtime_checkable
class DataKeyRecords(Protocol):
    """The case data keys, wrapped by a master key (or a KMS)."""

    def data_key_of_scope(self, scope: str) -> DataKeyRow | None:
        """The data key of ``scope`` (live or destroyed), or None."""
        ...

    def data_key(self, key_id: str) -> DataKeyRow | None:
        """The data key ``key_id`` (live or destroyed), or None."""
        ...

    def create_data_key(self, row: DataKeyRow, created_at: str) -> DataKeyRow:
        """Store ``row`` unless its scope has a key already (race-safe: two processes
        creating one scope's key at once store one).

        Returns:
            The scope's row as stored: ``row``, or the key that was there first.
        """
        ...

    def destroy_data_key(self, scope: str, destroyed_at: str) -> bool:
        """NULL ``scope``'s wrapped key and master key id, for good (and make sure the
        old bytes do not linger in the backend's own files where it can).

        Returns:
            True if a live key was destroyed now.
        """
        ...

    def live_data_keys(self) -> list[DataKeyRow]:
        """Every data key not destroyed."""
        ...

    def rewrap_data_key(self, key_id: str, master_key_id: str, wrapped: bytes) -> bool:
        """Replace a live key's wrapping (rotation); a destroyed key stays destroyed.

        Returns:
            True if the key was live and is rewrapped now.
        """
        ...


@runtime_checkable
class OperatorTokenRecords(Protocol):
    """The operators' codec tokens, by SHA-256 digest."""

    def issue_operator_token(self, token_sha256: str, operator_id: str,
                             issued_at: str) -> str | None:
        """Store a token for ``operator_id`` unless it has a live one (one transaction).

        Returns:
            None if stored; else the live token's ``issued_at`` (nothing written).
        """
        ...

    def operator_token_rows(self) -> list[OperatorTokenRow]:
        """Every token ever issued, by ``issued_at`` then insertion."""
        ...

    def revoke_operator_token(self, operator_id: str,
                              revoked_at: str) -> OperatorTokenRow | None:
        """Revoke ``operator_id``'s live token, if any.

        Returns:
            The operator's latest revoked token, or None if none was ever issued.
        """
        ...

    def operator_of_token(self, token_sha256: str) -> str | None:
        """The operator whose live token has this digest, or None."""
        ...


@dataclass(frozen=True)
class CasePartyRow:
    """A party the API recorded as taking part in a case (``api.authorisation``): the
    reporter at the start, a sender of an accepted event, the GI named in an OTS ruling;
    with the OIN it acted under (several GIs share the party code GI)."""

    case_ref: str
    party: str
    oin: str
    recorded_at: str


@dataclass(frozen=True)
class AcknowledgementRow:
    """A packet's receipt on record: when, and by which OIN of its recipient."""

    packet_id: str
    recipient: str
    oin: str
    acknowledged_at: str


@dataclass(frozen=True)
class InboxRow:
    """One packet of a recipient's inbox: its insertion ``seq`` (what a page cursor
    holds), the stored row, and its acknowledgement if any."""

    seq: int
    packet: PacketRow
    acknowledgement: AcknowledgementRow | None


@runtime_checkable
class AcknowledgementRecords(Protocol):
    """What the agencies' API keeps: who takes part in which case, each packet's
    acknowledgement (once), and a recipient's packets paged by insertion order."""

    def record_case_party(self, row: CasePartyRow) -> bool:
        """Record ``row`` once per (case, party, OIN); True if recorded now."""
        ...

    def case_parties(self, case_ref: str) -> list[CasePartyRow]:
        """The parties recorded for ``case_ref``, oldest first."""
        ...

    def inbox_page(self, recipient: str, *, after: int = 0, limit: int = 20,
                   case_ref: str | None = None, acknowledged: bool | None = None,
                   recorded_oin: str | None = None) -> list[InboxRow]:
        """At most ``limit`` packets to ``recipient`` inserted after ``seq`` ``after``,
        in insertion order; optionally of one case, only (un)acknowledged ones, and with
        ``recorded_oin`` only of cases where that OIN is recorded for ``recipient``
        (``record_case_party``: a GI sees only its own cases)."""
        ...

    def inbox_packet(self, packet_id: str) -> InboxRow | None:
        """One stored packet with its acknowledgement, or None."""
        ...

    def acknowledge(self, row: AcknowledgementRow) -> AcknowledgementRow:
        """Record ``row`` unless the packet has an acknowledgement already (race-safe).

        Returns:
            The packet's acknowledgement as stored: ``row``, or the first one.
        """
        ...

@dataclass(frozen=True)
class SubscriptionRow:
    """A webhook of one organisation: its party and OIN (several GIs), the URL notified,
    and when it was made (ISO 8601)."""

    subscription_id: str
    party: str
    oin: str
    url: str
    created_at: str


@runtime_checkable
class SubscriptionRecords(Protocol):
    """The parties' webhooks (notifications, ``kbflow.notifications``)."""

    def add_subscription(self, row: SubscriptionRow) -> SubscriptionRow:
        """Store ``row`` unless its OIN has a subscription with this URL already (race-safe).

        Returns:
            The subscription as stored: ``row``, or the one that was there first.
        """
        ...

    def subscription(self, subscription_id: str) -> SubscriptionRow | None:
        """The subscription ``subscription_id``, or None (never made, or removed)."""
        ...

    def subscription_rows(self, party: str | None = None,
                          oin: str | None = None) -> list[SubscriptionRow]:
        """Subscriptions, oldest first, optionally of one party and/or one OIN."""
        ...

    def remove_subscription(self, subscription_id: str) -> bool:
        """Remove ``subscription_id``; True if it was there."""
        ...


@runtime_checkable
class StateStore(Protocol):
    """Everything kbflow keeps outside Temporal, in five parts. ``where`` names the
    store in messages (a folder or a URL without its password)."""

    @property
    def where(self) -> str:
        """The store's place, for messages: never a password."""
        ...

    @property
    def outbox(self) -> OutboxRecords:
        """Outboxes, processing log, reminders and erasures."""
        ...

    @property
    def decodes(self) -> DecodeRecords:
        """The record of decodes."""
        ...

    @property
    def documents(self) -> DocumentRecords:
        """Documents by reference (beside the outboxes: erasure deletes them with the
        case's packets)."""
        ...

    @property
    def data_keys(self) -> DataKeyRecords:
        """The case data keys."""
        ...

    @property
    def operator_tokens(self) -> OperatorTokenRecords:
        """The operators' codec tokens."""
        ...

    @property
    def acknowledgements(self) -> AcknowledgementRecords:
        """The API's case parties, acknowledgements and inbox pages."""
        ...

    @property
    def subscriptions(self) -> SubscriptionRecords:
        """The parties' webhooks."""
        ...

    def close(self) -> None:
        """Release connections (a no-op where none are held)."""
        ...
