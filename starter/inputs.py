"""Reading what a user hands the command line: JSON files, case refs, event names.

Every check runs locally, before Temporal is contacted, with the same pydantic models
the workflow uses. Errors are ``InputError`` with a one-line message that names the
file, the field and the reason, never a value (the models hide input in errors).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import string
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from kbflow.case import RULES
from kbflow.errors import describe as errors_in_json_words
from kbflow.events import AgencyEvent, CaseRef, CaseStart, Event, body_size_problem
from kbflow.scenario import Scenario

#: Characters of a generated case ref's suffix (``CaseRef``: capitals and digits).
_REF_ALPHABET = string.ascii_uppercase + string.digits
_REF_LENGTH = 8
#: How many generated refs to try before giving up (a random suffix can, rarely, contain
#: part of a person's name, which ``CaseStart`` refuses as not opaque).
_REF_ATTEMPTS = 20
_CASE_REF = TypeAdapter(CaseRef)
_M = TypeVar("_M", bound=BaseModel)


class InputError(Exception):
    """A file, case ref or event name the command line cannot use; the message says why."""


def describe(errors: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every error of ``errors`` in JSON words with JSON paths, in one line; never the
    input values (``kbflow.errors.describe``)."""
    return errors_in_json_words(errors, model)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        InputError: the file is missing or unreadable, not JSON, or not a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read: {type(error).__name__}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # The message gives line and column only, not the text around them.
        raise InputError(f"{path}: not JSON: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: must hold a JSON object")
    return data


def check_case_ref(case_ref: str) -> str:
    """``case_ref`` if it has the shape of a ``CaseRef`` (``KB-<year>-<6-12 of A-Z0-9>``).

    Raises:
        InputError: it does not.
    """
    try:
        return _CASE_REF.validate_python(case_ref)
    except ValidationError:
        raise InputError("case_ref: must look like KB-2026-7Q4M2X "
                         "(KB-, a year, -, 6 to 12 capitals or digits)") from None


def new_case_ref(today: dt.date | None = None) -> str:
    """A fresh opaque case ref ``KB-<year>-<8 random capitals or digits>``."""
    year = (today or dt.date.today()).year
    suffix = "".join(secrets.choice(_REF_ALPHABET) for _ in range(_REF_LENGTH))
    return f"KB-{year}-{suffix}"


def case_start(document: dict[str, Any], case_ref: str | None = None,
               source: str = "case") -> CaseStart:
    """Validate a ``CaseStart`` from ``document``.

    ``document`` is a CaseStart with or without ``case_ref``, or a scenario file (it has a
    ``case`` key: its ``case`` is used). ``case_ref`` wins over one in the document; with
    neither, a fresh opaque ref is generated.

    Raises:
        InputError: the document is not a valid CaseStart (field and reason named).
    """
    if isinstance(document.get("case"), dict):
        document = document["case"]
    given = case_ref or document.get("case_ref")
    if given is not None:
        return _validated(CaseStart, {**document, "case_ref": given},
                          f"{source}: invalid case start")
    last: InputError | None = None
    for _ in range(_REF_ATTEMPTS):
        ref = new_case_ref()
        try:
            return _validated(CaseStart, {**document, "case_ref": ref},
                              f"{source}: invalid case start")
        except InputError as error:
            if "case_ref" not in str(error):
                raise  # not about the generated ref: another ref will not help
            last = error
    assert last is not None
    raise last


def event_name(name: str) -> str:
    """``name`` if it names a ``kbflow.events.Event`` (a rule of ``kbflow.case.RULES``).

    Raises:
        InputError: it is not; the message lists the known events.
    """
    if name not in RULES:
        raise InputError(f"event: unknown event '{name}'; known: {', '.join(RULES)}")
    return name


def event_body(name: str, document: dict[str, Any], source: str = "body") -> AgencyEvent:
    """Validate ``document`` as the body of event ``name`` (its rule's model) and check
    its size as it will be sent (``kbflow.items.BODY_MAX_BYTES``).

    Raises:
        InputError: unknown event, or an invalid body (field and reason named).
    """
    model = RULES[Event(event_name(name))].model
    body = _validated(model, document, f"{source}: invalid {name} body")
    problem = body_size_problem(body.model_dump_json(), "body")
    if problem:
        raise InputError(f"{source}: {problem}")
    return body


def _validated(model: type[_M], document: dict[str, Any], context: str) -> _M:
    try:
        return model.model_validate(document)
    except ValidationError as errors:
        raise InputError(f"{context}: {describe(errors, model)}") from None


def scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (``kbflow.scenario``).

    Raises:
        InputError: missing, not JSON, or not a valid scenario (field and reason named).
    """
    document = read_json_object(path)
    return _validated(Scenario, document, f"{path}: invalid scenario")
