"""Reading a JSON request body as the CLI reads a file (``starter.inputs``), with every
error a problem (``api.problems``) that names the field and the rule, never a value.

Order of the checks, each before the next reads more: the media type (415 unless
``application/json``), the raw size (413 over ``RAW_BODY_MAX_BYTES``, from
``Content-Length`` and again while reading, before any parsing), JSON (400: not UTF-8,
not JSON, a key twice, nested too deeply, not an object), then the model (400 listing
every invalid field in ``invalidParams``) and the body's size as sent (413 over
``kbflow.items.BODY_MAX_BYTES``, 128 KiB of compact JSON, as the workflow counts it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from api.problems import ApiProblem, InvalidParam, ProblemType
from kbflow.errors import FIELD_NAME, describe_error, json_path
from kbflow.events import REQUIRED_WHEN_SENT, body_size_problem
from kbflow.items import BODY_MAX_BYTES
from starter.inputs import DuplicateKeyError, without_duplicate_keys

#: The most bytes a request body may have as sent (pretty-printed JSON of a body at the
#: 128 KiB limit of ``BODY_MAX_BYTES`` fits): larger is 413 before it is parsed.
RAW_BODY_MAX_BYTES = 2 * BODY_MAX_BYTES
#: The one media type a body may have.
JSON_MEDIA_TYPE = "application/json"
#: A reason that starts with what looks like a JSON path: "persons[1].name: …".
_PATH_FIRST = re.compile(r"^([a-z][a-z0-9_]*(?:\[\d+\]|\.[a-z][a-z0-9_]*)*)"
                         r"(?: (?:and|or) [a-z][a-z0-9_]*)?: (.+)$")

_M = TypeVar("_M", bound=BaseModel)


def invalid(params: Sequence[InvalidParam], what: str = "body") -> ApiProblem:
    """A 400 problem listing ``params`` (ADR: all errors at once)."""
    names = ", ".join(dict.fromkeys(param.name for param in params))
    return ApiProblem(ProblemType.INVALID_INPUT,
                      f"invalid {what}: {len(params)} invalid parameter(s): {names}",
                      invalid_params=params)


def param_of(reason: str, default: str = "body") -> InvalidParam:
    """A reason such as ``persons[0].date_of_birth: in the future`` as an invalid
    parameter named by its path (``default`` when it names none)."""
    match = _PATH_FIRST.match(reason)
    if match is None:
        return InvalidParam(name=default, reason=reason)
    return InvalidParam(name=match.group(1), reason=match.group(2))


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (module docstring: 415, 413, 400).

    Raises:
        ApiProblem: a wrong media type, a body too large, or no JSON object.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != JSON_MEDIA_TYPE:
        raise ApiProblem(ProblemType.UNSUPPORTED_MEDIA_TYPE,
                         f"Content-Type: must be {JSON_MEDIA_TYPE}")
    too_large = ApiProblem(ProblemType.TOO_LARGE,
                           f"body: over {RAW_BODY_MAX_BYTES} bytes as sent (the raw limit; "
                           f"an event body may have {BODY_MAX_BYTES} bytes as compact JSON)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > RAW_BODY_MAX_BYTES:
        raise too_large
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > RAW_BODY_MAX_BYTES:
            raise too_large
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid([InvalidParam(name="body", reason="not UTF-8 text")]) from None
    try:
        document = json.loads(text, object_pairs_hook=without_duplicate_keys)
    except json.JSONDecodeError as error:
        # line and column only, never the text around them
        raise invalid([InvalidParam(name="body", reason=f"not JSON: {error.msg} at line "
                                    f"{error.lineno} column {error.colno}")]) from None
    except DuplicateKeyError as error:
        raise invalid([InvalidParam(name="body", reason=f"not JSON kbflow accepts: {error}")]
                      ) from None
    except ValueError:  # e.g. an integer of more than 4300 digits (Python's limit)
        raise invalid([InvalidParam(name="body", reason="not JSON kbflow accepts: a number "
                                    "too long to read")]) from None
    except RecursionError:
        raise invalid([InvalidParam(name="body", reason="not JSON kbflow accepts: nested "
                                    "too deeply")]) from None
    if not isinstance(document, dict):
        raise invalid([InvalidParam(name="body", reason="must be a JSON object")])
    return document


#: Why a field of ``REQUIRED_WHEN_SENT`` is required (as ``starter.inputs`` says it).
_WHY_REQUIRED = {
    "idempotency_key": "required, unique per case start (8-80 of A-Z a-z 0-9 . _ : -); a "
                       "repeat returns the same case",
    "ruled_on": "required, the date of the ruling (YYYY-MM-DD)",
}


def validation_params(errors: ValidationError, model: type[BaseModel]) -> list[InvalidParam]:
    """Every error of ``errors`` as an invalid parameter, in JSON words
    (``kbflow.errors.describe_error``), never with its input."""
    params = []
    for error in errors.errors(include_url=False):
        error.pop("input", None)  # type: ignore[misc]
        text = describe_error(error, model)
        path = json_path(error.get("loc", ()))
        if path and text.startswith(f"{path}: "):
            params.append(InvalidParam(name=path, reason=text[len(path) + 2:]))
        else:
            params.append(param_of(text))
    return list(dict.fromkeys(params))


def validated(model: type[_M], document: dict[str, Any], name: str) -> _M:
    """``document`` as ``model`` (the body of event ``name``, or ``case``), with the
    fields ``REQUIRED_WHEN_SENT`` required and its size as sent checked.

    Raises:
        ApiProblem: 400 listing every invalid field; 413 over ``BODY_MAX_BYTES``.
    """
    params = [InvalidParam(name=field, reason=_WHY_REQUIRED[field])
              for field in REQUIRED_WHEN_SENT.get(name, ()) if document.get(field) is None]
    try:
        body = model.model_validate(document)
    except ValidationError as errors:
        params += validation_params(errors, model)
        raise invalid(params) from None
    if params:
        raise invalid(params)
    problem = body_size_problem(body, "body")
    if problem:
        raise ApiProblem(ProblemType.TOO_LARGE, problem)
    return body


#: A V-nummer (ten digits) or anything that looks like a date of birth: never in a URI.
_SENSITIVE_IN_URI = re.compile(r"(?<![0-9])[0-9]{10}(?![0-9])|[0-9]{4}-[0-9]{2}-[0-9]{2}")


#: Query keys whose values kbflow made itself (checked by their own route).
_OPAQUE = ("cursor",)


def plain_query(*allowed: str) -> Any:
    """A FastAPI dependency that refuses (400, naming the key, never the value) a query
    key the route does not take, and a query value that looks like a V-nummer or a date
    (ADR: no sensitive data in URIs)."""

    def check(request: Request) -> None:
        params = []
        for key, value in request.query_params.multi_items():
            name = key if FIELD_NAME.match(key.lower()) else "query"
            if key not in allowed:
                known = ", ".join(allowed) if allowed else "none"
                params.append(InvalidParam(name=name, reason="unknown query parameter "
                                           f"(this resource takes: {known})"))
            elif key not in _OPAQUE and _SENSITIVE_IN_URI.search(value):
                params.append(InvalidParam(name=name, reason="looks like a V-nummer or a "
                                           "date: personal data never goes in a URI"))
        if params:
            raise invalid(params, "query")

    return check
