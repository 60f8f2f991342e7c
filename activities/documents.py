"""The document store: documents by reference (issue 8, point 4), in the state store
beside the outboxes, outside Temporal's history.

A document is stored once, AES-256-GCM encrypted under its **case's data key** (the key
of the case's payloads and packets, ``KeyStore.key_for_scope(workflow_id(case_ref))``),
its document id and case ref bound in as associated data. Only readable routing fields
stay in the clear: the case, the uploading party (and OIN), the media type, size and
SHA-256. Events and packets carry only its ``DocumentRef``.

Who may read a document: the party (and, through the API, the OIN) that uploaded it,
and every recipient of a packet of its case that references it (``OutboxStore.deliver``
records which packet references which document, in the packet's transaction). Erasing
the case (``OutboxStore.erase``) deletes its documents in the erasure's transaction and
destroys the key, so any copy left (a backup, a WAL) is unreadable; a deleted
document's id stays as a tombstone, so a download says "gone" rather than "unknown".

The API (``api.routes.documents``) and the CLI (``kbflow event --attach``, ``kbflow
document get``) both go through ``DocumentStore``; ``reference_problems`` is the one
check that an event's references name documents of its case uploaded by its sender.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore, KeyUnavailable
from kbflow.documents import document_refs
from kbflow.items import DOCUMENT_MAX_BYTES, DOCUMENT_MEDIA_TYPES, DocumentRef
from kbflow.process import Party
from kbflow.settings import Settings, workflow_id
from store import open_store
from store.interface import DocumentRecords, DocumentRow

#: What a media type looks like (RFC 6838 names, at most 100 characters).



class DocumentError(Exception):
    """A document kbflow cannot take or give; the message names the rule, never content."""


class DocumentTooLarge(DocumentError):
    """Over ``kbflow.items.DOCUMENT_MAX_BYTES``."""


class MediaTypeRefused(DocumentError):
    """A media type not in ``kbflow.items.DOCUMENT_MEDIA_TYPES``."""


class DocumentNotFound(DocumentError):
    """No document has this id (never one, or not of this case)."""


class DocumentGone(DocumentError):
    """The document's case was erased: the document is deleted and its key destroyed."""


class DocumentForbidden(DocumentError):
    """The party may not read this document (neither its uploader nor a recipient of a
    packet that references it)."""


def check_media_type(media_type: str) -> str:
    """``media_type`` without parameters (``; charset=…``), lower case, if allowed.

    Raises:
        MediaTypeRefused: not in ``DOCUMENT_MEDIA_TYPES``; the message lists them.
    """
    bare = media_type.split(";", 1)[0].strip().lower()
    if bare not in DOCUMENT_MEDIA_TYPES:
        # never repeated: a header can hold anything a caller typed
        named = "none given" if not bare else "the one given"
        raise MediaTypeRefused(
            f"media type: {named} is not allowed for a document; allowed: "
            f"{', '.join(DOCUMENT_MEDIA_TYPES)}")
    return bare


def check_size(size: int) -> None:
    """Raise ``DocumentTooLarge`` (or ``DocumentError`` for an empty document) unless
    ``size`` is 1 to ``DOCUMENT_MAX_BYTES`` bytes."""
    if size > DOCUMENT_MAX_BYTES:
        raise DocumentTooLarge(f"document: over the limit of {DOCUMENT_MAX_BYTES} bytes "
                               "(32 MiB) for one document")
    if size < 1:
        raise DocumentError("document: empty (0 bytes)")


def new_document_id() -> str:
    """A fresh random document id (``kbflow.items.DOCUMENT_ID_PATTERN``)."""
    return f"doc-{secrets.token_hex(16)}"


def reference_of(data: bytes, media_type: str, document_id: str | None = None) -> DocumentRef:
    """The reference of ``data`` (a new id unless given): media type, size, SHA-256.

    Raises:
        DocumentTooLarge, MediaTypeRefused, DocumentError: see ``check_size`` and
            ``check_media_type``.
    """
    check_size(len(data))
    return DocumentRef(document_id=document_id or new_document_id(),
                       media_type=check_media_type(media_type),
                       size=len(data), sha256=hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class ReferenceProblem:
    """A document reference an event may not carry: its JSON path and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class DocumentStore:
    """Documents of cases, encrypted under each case's data key (module docstring).

    Args:
        keys: the case data keys (the codec's and the outbox's key store).
        records: the rows' backend, beside the outboxes (``StateStore.documents``).

    Raises:
        StorageError: the store cannot be read or written (every method).
    """

    def __init__(self, keys: KeyStore, records: DocumentRecords) -> None:
        self.keys = keys
        self.records = records

    @classmethod
    def of(cls, outbox: OutboxStore) -> DocumentStore:
        """The documents beside ``outbox`` (its key store and backend: an erasure of the
        outbox deletes them in its transaction)."""
        records = outbox.records
        assert isinstance(records, DocumentRecords), "the outbox's backend keeps documents"
        return cls(outbox.keys, records)

    @classmethod
    def open(cls, settings: Settings, keys: KeyStore) -> DocumentStore:
        """The documents of the state store ``settings`` configures (for writing: a
        SQLite file is created and migrated)."""
        return cls(keys, open_store(settings).documents)

    # ---- writing --------------------------------------------------------------------------

    def store(self, case_ref: str, ref: DocumentRef, data: bytes, *, uploader: Party,
              uploader_oin: str | None = None, at: dt.datetime | None = None) -> DocumentRef:
        """Store ``data`` as the document ``ref`` of ``case_ref`` (``reference_of``),
        once per id.

        Raises:
            DocumentError: ``ref`` does not describe ``data`` (size or SHA-256).
            DocumentGone: the case was erased (its key is destroyed).
        """
        if ref.size != len(data) or ref.sha256 != hashlib.sha256(data).hexdigest():
            raise DocumentError(f"document {ref.document_id}: its size or SHA-256 does not "
                                "match the bytes")
        try:
            key_id, key = self.keys.key_for_scope(workflow_id(case_ref))
        except KeyUnavailable:
            raise DocumentGone(f"case {case_ref}: erased; it takes no documents") from None
        nonce = secrets.token_bytes(12)
        ciphertext = nonce + AESGCM(key).encrypt(nonce, data, _aad(ref.document_id, case_ref))
        self.records.add_document(DocumentRow(
            ref.document_id, case_ref, uploader.value, uploader_oin, ref.media_type, ref.size,
            ref.sha256, (at or dt.datetime.now(dt.UTC)).isoformat(), key_id, ciphertext))
        return ref

    def upload(self, case_ref: str, data: bytes, media_type: str, *, uploader: Party,
               uploader_oin: str | None = None) -> DocumentRef:
        """Store ``data`` as a new document of ``case_ref``; its reference.

        Raises:
            DocumentTooLarge, MediaTypeRefused, DocumentError, DocumentGone: see
                ``reference_of`` and ``store``.
        """
        return self.store(case_ref, reference_of(data, media_type), data, uploader=uploader,
                          uploader_oin=uploader_oin)

    # ---- reading --------------------------------------------------------------------------

    def row(self, document_id: str) -> DocumentRow:
        """The document's readable fields (no content).

        Raises:
            DocumentGone: its case was erased.
            DocumentNotFound: no document has this id.
        """
        row = self.records.document_row(document_id, content=False)
        if row is not None:
            return row
        if self.records.document_erased(document_id) is not None:
            raise DocumentGone(f"document {document_id}: its case was erased")
        raise DocumentNotFound(f"document {document_id}: no such document")

    def may_read(self, row: DocumentRow, party: Party, oin: str | None = None) -> bool:
        """Whether ``party`` (with ``oin``, through the API) may read the document: it
        uploaded it (the same OIN, where both are known), or it received a packet of the
        document's case that references it."""
        if row.uploader == party.value and (
                oin is None or row.uploader_oin is None or row.uploader_oin == oin):
            return True
        return party.value in self.records.document_readers(row.document_id)

    def read(self, document_id: str, party: Party, oin: str | None = None
             ) -> tuple[DocumentRef, bytes]:
        """The document's reference and bytes, for ``party`` (``may_read``).

        Raises:
            DocumentNotFound: no document has this id.
            DocumentForbidden: ``party`` may not read it; the message names the rule.
            DocumentGone: its case was erased (deleted, or its key destroyed).
        """
        row = self.row(document_id)
        if not self.may_read(row, party, oin):
            raise DocumentForbidden(
                f"document {document_id}: {party.value} may not read it (only its uploader "
                "and the recipients of a packet that references it)")
        stored = self.records.document_row(document_id)
        if stored is None:  # erased meanwhile
            raise DocumentGone(f"document {document_id}: its case was erased")
        try:
            key = self.keys.key(stored.key_id)
            data = AESGCM(key).decrypt(stored.ciphertext[:12], stored.ciphertext[12:],
                                       _aad(document_id, stored.case_ref))
        except KeyUnavailable:
            raise DocumentGone(f"document {document_id}: its case's key is destroyed "
                               "(erased)") from None
        except InvalidTag:
            raise DocumentError(f"document {document_id}: authentication failed") from None
        ref = DocumentRef(document_id=document_id,
                          media_type=stored.media_type,
                          size=stored.size, sha256=stored.sha256)
        return ref, data

    # ---- the check of an event's references -----------------------------------------------

    def reference_problems(self, case_ref: str, sender: Party,
                           body: BaseModel | dict[str, Any], *,
                           sender_oin: str | None = None) -> list[ReferenceProblem]:
        """Every ``DocumentRef`` in the event ``body`` that does not name a document of
        ``case_ref`` uploaded by ``sender`` (with ``sender_oin``, where both are known)
        with the same media type, size and SHA-256; each by its JSON path and the rule.
        Empty: every reference is good. The API and the CLI both check an event with it
        before it is sent."""
        problems: list[ReferenceProblem] = []
        for path, ref in document_refs(body):
            row = self.records.document_row(ref.document_id, content=False)
            if row is None or row.case_ref != case_ref:
                erased = row is None and self.records.document_erased(ref.document_id)
                problems.append(ReferenceProblem(
                    f"{path}.document_id", "the case was erased" if erased and erased ==
                    case_ref else "no document of this case has this id (upload it first)"))
                continue
            if row.uploader != sender.value or (
                    sender_oin is not None and row.uploader_oin is not None
                    and row.uploader_oin != sender_oin):
                problems.append(ReferenceProblem(
                    f"{path}.document_id", f"not uploaded by the sender ({sender.value}); "
                    "a sender references only documents it uploaded"))
                continue
            for field, stored in (("media_type", row.media_type), ("size", row.size),
                                  ("sha256", row.sha256)):
                if getattr(ref, field) != stored:
                    problems.append(ReferenceProblem(
                        f"{path}.{field}", "differs from the uploaded document's"))
        return problems


def _aad(document_id: str, case_ref: str) -> bytes:
    """What each ciphertext is bound to: its document id and case (a ciphertext moved to
    another row does not open)."""
    return f"{document_id}\x00{case_ref}".encode()
