"""``kbflow event … --attach FIELD=PATH``: a document sent with an event, by reference.

Each ``--attach`` reads a file (its media type from its suffix: one of
``kbflow.items.DOCUMENT_MEDIA_TYPES``; at most ``DOCUMENT_MAX_BYTES``), makes its
``DocumentRef`` and puts it in the body at ``FIELD`` (``kbflow.documents.attach``:
``dossier_documents`` appends, ``vv_application.document`` sets) before the body is
validated. Its id derives from the case, the event's idempotency key, its place and its
SHA-256 (``event_document_id``): re-sending the same event with the same files makes the
same body. The bytes are stored (``Attachment.store``, once per id) only once the body
and its references are valid, so a body the CLI refuses leaves nothing behind. Errors
are ``InputError`` naming the option, the file and the rule, never its content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from activities.documents import DocumentError, DocumentStore, reference_of
from kbflow.documents import AttachError, attach
from kbflow.items import DOCUMENT_MAX_BYTES, DocumentRef
from kbflow.process import Party
from starter.inputs import InputError

#: The media type of each file suffix ``--attach`` knows (lower case).
SUFFIX_MEDIA_TYPES: dict[str, str] = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
    ".xml": "application/xml",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
}


@dataclass(frozen=True)
class Attachment:
    """One ``--attach``: the field, the file's bytes and their reference."""

    field: str
    path: Path
    data: bytes
    ref: DocumentRef

    def store(self, documents: DocumentStore, case_ref: str, uploader: Party) -> None:
        """Store the bytes as the document ``ref`` of ``case_ref``, uploaded by
        ``uploader`` (the event's sender).

        Raises:
            InputError: the case was erased.
        """
        try:
            documents.store(case_ref, self.ref, self.data, uploader=uploader)
        except DocumentError as error:
            raise InputError(f"--attach {self.field}={self.path}: {error}") from None


def read_attachment(spec: str) -> Attachment:
    """Read ``FIELD=PATH``: the file, its media type by suffix, its reference.

    Raises:
        InputError: no ``=``; a suffix of no allowed media type; a missing or unreadable
            file; an empty file or one over ``DOCUMENT_MAX_BYTES``.
    """
    field, sep, name = spec.partition("=")
    if not sep or not field or not name:
        raise InputError(f"--attach {spec}: must be FIELD=PATH, e.g. "
                         "dossier_documents=scan.pdf")
    path = Path(name)
    where = f"--attach {field}={path}"
    media_type = SUFFIX_MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise InputError(f"{where}: the suffix {path.suffix or '(none)'} names no allowed "
                         f"media type; one of {', '.join(SUFFIX_MEDIA_TYPES)}")
    try:
        if path.stat().st_size > DOCUMENT_MAX_BYTES:  # before reading it
            raise InputError(f"{where}: over the limit of {DOCUMENT_MAX_BYTES} bytes "
                             "(32 MiB) for one document")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except OSError as error:
        raise InputError(f"{where}: cannot read: {error.strerror or type(error).__name__}"
                         ) from None
    try:
        ref = reference_of(data, media_type)
    except DocumentError as error:
        raise InputError(f"{where}: {error}") from None
    return Attachment(field, path, data, ref)


def event_document_id(case_ref: str, idempotency_key: str, index: int, field: str,
                      sha256: str) -> str:
    """The id of an event's ``index``-th attachment: derived from the case, the event's
    idempotency key, the attachment's place and its bytes' SHA-256 (nothing personal), so
    that re-sending the same event with the same files (to learn its outcome) makes the
    same body, and so the same update, and stores nothing twice."""
    seed = "\x00".join(("kbflow-attachment", case_ref, idempotency_key, str(index), field,
                        sha256))
    return f"doc-{hashlib.sha256(seed.encode()).hexdigest()[:32]}"


def with_attachments(document: dict[str, Any], attachments: list[Attachment],
                     case_ref: str) -> tuple[dict[str, Any], list[Attachment]]:
    """``document`` with each attachment's reference at its field, in order, and the
    attachments with their ids for this event (``event_document_id``).

    Raises:
        InputError: a field that holds no document (``kbflow.documents.ATTACHABLE``).
    """
    key = document.get("idempotency_key")
    identified = []
    for index, attachment in enumerate(attachments):
        if isinstance(key, str):
            attachment = replace(attachment, ref=attachment.ref.model_copy(update={
                "document_id": event_document_id(case_ref, key, index, attachment.field,
                                                 attachment.ref.sha256)}))
        try:
            document = attach(document, attachment.field, attachment.ref)
        except AttachError as error:
            raise InputError(str(error)) from None
        identified.append(attachment)
    return document, identified
