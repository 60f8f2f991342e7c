"""Documents by reference, the pure part (issue 8, point 4): where in an event or packet
body a ``kbflow.items.DocumentRef`` may stand, finding every one a body holds, and
putting one in a body (``kbflow event … --attach FIELD=PATH``).

A document itself (its bytes) never enters an event, a packet or Temporal's history:
it is stored once, encrypted under its case's data key (``activities.documents``), and
only its reference travels. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from kbflow.items import DocumentRef

#: The fields of an event body that may hold a document, and how ``--attach`` puts one
#: there: ``append`` to a list, or ``set`` the field (a dotted path into an object).
ATTACHABLE: dict[str, str] = {
    "dossier_documents": "append",  # step 4: the overdrachtsdossier's documents
    "vv_application.document": "set",  # steps 8, 10: the copy of the VV application
    "rvdk_report": "set",  # steps 8, 10
    "gi_report": "set",  # step 10
    "document": "set",  # step 6: the ruling (court_ruling, extension_ruling)
}
_FIELDS = set(DocumentRef.model_fields)


class AttachError(ValueError):
    """``--attach`` names a field that holds no document, or one its body cannot take
    there; the message names the field and the rule."""


def _is_ref(value: object) -> bool:
    return isinstance(value, dict) and set(value) == _FIELDS


def document_refs(body: BaseModel | dict[str, Any] | list[Any]) -> Iterator[
        tuple[str, DocumentRef]]:
    """Every ``DocumentRef`` in ``body`` (an event or packet body, as a model or as JSON
    values) with its JSON path (``dossier_documents[1]``, ``vv_application.document``),
    in the body's order."""
    value = body.model_dump(mode="json", exclude_none=True) if isinstance(
        body, BaseModel) else body
    yield from _walk(value, "")


def _walk(value: object, path: str) -> Iterator[tuple[str, DocumentRef]]:
    if _is_ref(value):
        yield path, DocumentRef.model_validate(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _walk(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            yield from _walk(inner, f"{path}[{index}]")


def document_ids(body: BaseModel | dict[str, Any]) -> tuple[str, ...]:
    """The ids of the documents ``body`` references, each once, in order."""
    return tuple(dict.fromkeys(ref.document_id for _, ref in document_refs(body)))


def attach(document: dict[str, Any], field: str, ref: DocumentRef) -> dict[str, Any]:
    """``document`` (an event body as JSON values) with ``ref`` put at ``field``: appended
    to a list field (``dossier_documents``), or set (``vv_application.document``).
    A new dict; ``document`` is not changed.

    Raises:
        AttachError: ``field`` is not in ``ATTACHABLE``, or a part of its path is
            there but not an object (a list field that is not a list).
    """
    how = ATTACHABLE.get(field)
    if how is None:
        raise AttachError(f"--attach {field}: no field that holds a document; one of "
                          f"{', '.join(ATTACHABLE)}")
    copy: dict[str, Any] = {**document}
    target = copy
    *parents, last = field.split(".")
    for part in parents:
        inner = target.get(part, {})
        if not isinstance(inner, dict):
            raise AttachError(f"--attach {field}: the body's {part} is not an object")
        target[part] = {**inner}
        target = target[part]
    as_json = ref.model_dump(mode="json")
    if how == "append":
        existing = target.get(last, [])
        if not isinstance(existing, list):
            raise AttachError(f"--attach {field}: the body's {last} is not an array")
        target[last] = [*existing, as_json]
    else:
        target[last] = as_json
    return copy
