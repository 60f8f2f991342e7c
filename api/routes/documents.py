"""``/v1/cases/{caseRef}/documents`` and ``/v1/documents/{documentId}``: documents by
reference (issue 8, point 4; ``activities.documents``).

- ``POST /v1/cases/{caseRef}/documents``: the raw bytes as the body, their media type as
  its ``Content-Type`` (``415`` unless one of ``kbflow.items.DOCUMENT_MEDIA_TYPES``), at
  most ``kbflow.items.DOCUMENT_MAX_BYTES`` (``413``: said by ``Content-Length`` before
  anything is read, or found while reading, never holding more than the limit and one
  byte); only a party that takes part in the case (``403``). Answers ``201`` with
  ``Location: /v1/documents/{documentId}`` and the ``DocumentRef`` to put in an event.
- ``GET /v1/documents/{documentId}``: the bytes with their media type, ``ETag`` (the
  SHA-256 in hex) and ``Digest`` / ``Repr-Digest`` (the SHA-256 in base64); only to its
  uploader or a recipient of a packet that references it (else ``403`` naming the rule),
  ``404`` for an unknown id, ``410`` once the case is erased.

``check_event_documents`` is the check the event route runs before an event is sent: each
``DocumentRef`` in its body must name a document of the case uploaded by the sender, with
the same media type, size and SHA-256 (``DocumentStore.reference_problems``, which
``kbflow event`` runs too); otherwise ``400`` naming each field.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from activities.documents import (
    DocumentError,
    DocumentForbidden,
    DocumentGone,
    DocumentNotFound,
    DocumentStore,
    MediaTypeRefused,
    check_media_type,
    reference_of,
)
from api.authorisation import require_takes_part
from api.context import ApiContext, ContextDep
from api.identity import Caller, CallerDep
from api.problems import ApiProblem, InvalidParam, ProblemType, responses
from kbflow.case_refs import MODEL_PATTERN
from kbflow.items import DOCUMENT_ID_PATTERN, DOCUMENT_MAX_BYTES, DOCUMENT_MEDIA_TYPES, DocumentRef
from kbflow.settings import workflow_id
from starter.inputs import InputError, check_case_ref

router = APIRouter(tags=["documents"])

CaseRefPath = Annotated[str, Path(alias="caseRef", pattern=MODEL_PATTERN,
                                  description="The case reference kbflow made, e.g. "
                                              "KB-2026-7K4M2XCH-R")]
DocumentIdPath = Annotated[str, Path(alias="documentId", pattern=DOCUMENT_ID_PATTERN,
                                     description="The document's id, from its upload")]

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": f"The document's bytes (at most {DOCUMENT_MAX_BYTES} bytes, 32 MiB); "
                   "its media type is the Content-Type",
    "content": {media_type: _BINARY for media_type in DOCUMENT_MEDIA_TYPES}}}
_DOWNLOAD: dict[int | str, dict[str, Any]] = {200: {
    "description": "The document's bytes, with its media type",
    "content": {media_type: _BINARY for media_type in DOCUMENT_MEDIA_TYPES},
    "headers": {
        "ETag": {"description": "The SHA-256 of the bytes, in hex, quoted",
                 "schema": {"type": "string"}},
        "Digest": {"description": "sha-256=<base64> (RFC 3230)", "schema": {"type": "string"}},
        "Repr-Digest": {"description": "sha-256=:<base64>: (RFC 9530)",
                        "schema": {"type": "string"}}}}}


def documents(api: ApiContext) -> DocumentStore:
    """The documents beside the API's outbox store (one key store, one backend)."""
    return DocumentStore.of(api.outbox)


def _checked_case_ref(case_ref: str) -> str:
    try:
        return check_case_ref(case_ref)
    except InputError as error:
        raise ApiProblem(ProblemType.INVALID_INPUT, f"caseRef: {error}",
                         invalid_params=[InvalidParam(name="caseRef", reason=str(error))]
                         ) from None


async def _body_within_limit(request: Request) -> bytes:
    """The request's body, read as it arrives; a 413 problem as soon as it passes
    ``DOCUMENT_MAX_BYTES`` (nothing more is kept: at most the limit and one byte)."""
    received = bytearray()
    async for chunk in request.stream():
        received += chunk[:DOCUMENT_MAX_BYTES + 1 - len(received)]
        if len(received) > DOCUMENT_MAX_BYTES:
            raise _too_large()
    return bytes(received)


def _too_large() -> ApiProblem:
    return ApiProblem(ProblemType.TOO_LARGE,
                      f"body: a document is at most {DOCUMENT_MAX_BYTES} bytes (32 MiB)",
                      invalid_params=[InvalidParam(name="body", reason="over the limit of "
                                                   f"{DOCUMENT_MAX_BYTES} bytes")])


@router.post("/cases/{caseRef}/documents", status_code=201, response_model=DocumentRef,
             responses=responses(ProblemType.NOT_FOUND, ProblemType.GONE,
                                 ProblemType.TOO_LARGE, ProblemType.UNSUPPORTED_MEDIA_TYPE),
             openapi_extra=_UPLOAD_BODY)
async def upload_document(case_ref: CaseRefPath, request: Request, response: Response,
                          caller: CallerDep, api: ContextDep) -> DocumentRef:
    """Upload a document of a case, once: it is stored encrypted under the case's key,
    outside Temporal's history. Put the answer (its reference) in the event that sends
    it; the event's recipients may then download it."""
    case_ref = _checked_case_ref(case_ref)
    try:
        media_type = check_media_type(request.headers.get("content-type", ""))
    except MediaTypeRefused as error:
        raise ApiProblem(ProblemType.UNSUPPORTED_MEDIA_TYPE, str(error), invalid_params=[
            InvalidParam(name="Content-Type", reason=str(error))]) from None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DOCUMENT_MAX_BYTES:
        raise _too_large()
    if await asyncio.to_thread(api.keys.is_destroyed, workflow_id(case_ref)):
        raise ApiProblem(ProblemType.GONE, f"case {case_ref}: erased; it takes no documents")
    await require_takes_part(api, caller, case_ref)
    data = await _body_within_limit(request)
    store = documents(api)
    try:
        ref = reference_of(data, media_type)
        await asyncio.to_thread(store.store, case_ref, ref, data, uploader=caller.party,
                                uploader_oin=caller.oin)
    except DocumentGone as error:
        raise ApiProblem(ProblemType.GONE, str(error)) from None
    except DocumentError as error:  # empty
        raise ApiProblem(ProblemType.INVALID_INPUT, str(error), invalid_params=[
            InvalidParam(name="body", reason=str(error).split(": ", 1)[-1])]) from None
    response.headers["Location"] = f"/v1/documents/{ref.document_id}"
    return ref


@router.get("/documents/{documentId}", response_class=Response,
            responses={**responses(ProblemType.NOT_FOUND, ProblemType.GONE), **_DOWNLOAD})
async def download_document(document_id: DocumentIdPath, caller: CallerDep,
                            api: ContextDep) -> Response:
    """Download a document: only its uploader and the recipients of a packet that
    references it may."""
    store = documents(api)
    try:
        ref, data = await asyncio.to_thread(store.read, document_id, caller.party, caller.oin)
    except DocumentNotFound as error:
        raise ApiProblem(ProblemType.NOT_FOUND, str(error)) from None
    except DocumentForbidden as error:
        raise ApiProblem(ProblemType.FORBIDDEN, str(error)) from None
    except DocumentGone as error:
        raise ApiProblem(ProblemType.GONE, str(error)) from None
    digest = base64.b64encode(bytes.fromhex(ref.sha256)).decode()
    # a download, never rendered as the type it claims (nothing checks its bytes)
    return Response(data, media_type=ref.media_type, headers={
        "ETag": f'"{ref.sha256}"', "Digest": f"sha-256={digest}",
        "Repr-Digest": f"sha-256=:{digest}:", "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{ref.document_id}"'})


async def check_event_documents(api: ApiContext, caller: Caller, case_ref: str,
                                body: BaseModel | dict[str, Any]) -> None:
    """Before an event is sent: raise a 400 problem naming every ``DocumentRef`` of
    ``body`` that is no document of ``case_ref`` uploaded by ``caller`` with the same
    media type, size and SHA-256 (``DocumentStore.reference_problems``). Nothing is
    changed."""
    problems = await asyncio.to_thread(documents(api).reference_problems, case_ref,
                                       caller.party, body, sender_oin=caller.oin)
    if problems:
        raise ApiProblem(
            ProblemType.INVALID_INPUT,
            f"{len(problems)} invalid document reference(s): "
            + ", ".join(problem.name for problem in problems),
            invalid_params=[InvalidParam(name=p.name, reason=p.reason) for p in problems])
