"""Reading what a user hands the command line: JSON files, case refs, event names.

Every check runs locally, before Temporal is contacted, with the same pydantic models
the workflow uses. Errors are ``InputError`` with a one-line message that names the
file, the field and the reason, never a value (the models hide input in errors).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kbflow import case_refs
from kbflow.case import RULES
from kbflow.errors import FIELD_NAME
from kbflow.errors import describe as errors_in_json_words
from kbflow.events import (
    REQUIRED_WHEN_SENT,
    AgencyEvent,
    CaseStart,
    Event,
    body_size_problem,
)
from kbflow.scenario import Scenario

_M = TypeVar("_M", bound=BaseModel)


class InputError(Exception):
    """A file, case ref or event name the command line cannot use; the message says why."""


def describe(errors: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every error of ``errors`` in JSON words with JSON paths, in one line; never the
    input values (``kbflow.errors.describe``)."""
    return errors_in_json_words(errors, model)


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice (JSON parsers disagree on which one counts)."""


def without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook`` for kbflow's inputs (the CLI's files, the
    API's bodies): an object, or ``DuplicateKeyError`` naming the key twice (only a key
    that looks like a field name: a key could be a personal value)."""
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            named = f"the key '{key}'" if FIELD_NAME.match(key) else "a key"
            raise DuplicateKeyError(f"{named} appears twice in one object")
    return dict(pairs)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        InputError: the file is missing or unreadable, not JSON, or not a JSON object; an
            object names a key twice, or the JSON is nested too deeply.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is no JSON
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: cannot read: not UTF-8 text") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or type(error).__name__}"
                         ) from None
    try:
        data = json.loads(text, object_pairs_hook=without_duplicate_keys)
    except json.JSONDecodeError as error:
        # The message gives line and column only, not the text around them.
        raise InputError(f"{path}: not JSON: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None
    except DuplicateKeyError as error:
        raise InputError(f"{path}: not JSON kbflow accepts: {error}") from None
    except RecursionError:
        raise InputError(f"{path}: not JSON kbflow accepts: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: must hold a JSON object")
    return data


def check_case_ref(case_ref: str) -> str:
    """``case_ref`` (spaces around it dropped, capitals as kbflow writes them) as a ref that
    can address a case: one kbflow made (its check character
    matches, ``kbflow.case_refs``) or one of a case started before refs had a check
    character (``KB-<year>-<6-12 of A-Z0-9>``). Checked before Temporal is contacted, so
    a mistyped ref is caught here and never looked up.

    Raises:
        InputError: neither; the message names the rule (e.g. "check character does not
            match; mistyped?"), never the ref.
    """
    try:
        return case_refs.check_case_ref(case_ref.strip(), allow_legacy=True)
    except case_refs.CaseRefError as error:
        raise InputError(str(error)) from None


def new_case_ref(today: dt.date | None = None) -> str:
    """A fresh random case ref (``kbflow.case_refs.new_case_ref``)."""
    return case_refs.new_case_ref(today)


def case_start(document: dict[str, Any], source: str = "case", *,
               case_ref: Callable[[str], str] | None = None) -> CaseStart:
    """Validate a ``CaseStart`` from ``document``, with a case ref kbflow makes.

    ``document`` is a CaseStart without ``case_ref``, or a scenario file (it has a ``case``
    key: its ``case`` is used). It must carry an ``idempotency_key``. The ref is
    ``case_ref(idempotency_key)`` (the CLI derives it from the key, so a repeated start
    gives the same ref), or without ``case_ref`` a fresh random one (the demo).

    Raises:
        InputError: the document carries a ``case_ref`` (a person must not choose it),
            has no ``idempotency_key``, or is not a valid CaseStart (field and reason
            named, never a value).
    """
    if isinstance(document.get("case"), dict):
        document = document["case"]
    context = f"{source}: invalid case start"
    if "case_ref" in document:
        raise InputError(f"{context}: case_ref: kbflow generates case refs; leave it out")
    start = _validated(CaseStart, {**document, "case_ref": new_case_ref()}, context,
                       _missing("case", document))
    problem = body_size_problem(start, "case")
    if problem:
        raise InputError(f"{source}: {problem}")
    if case_ref is None:
        return start
    assert start.idempotency_key is not None  # required above, validated by the model
    return start.model_copy(update={"case_ref": case_ref(start.idempotency_key)})


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
    body = _validated(model, document, f"{source}: invalid {name} body",
                      _missing(name, document))
    problem = body_size_problem(body, "body")
    if problem:
        raise InputError(f"{source}: {problem}")
    return body


#: Why a field of ``REQUIRED_WHEN_SENT`` is required.
_WHY_REQUIRED = {
    "idempotency_key": "unique per case start (8-80 of A-Z a-z 0-9 . _ : -); a repeat "
                       "returns the same case",
    "ruled_on": "the date of the ruling (YYYY-MM-DD)",
}


def _missing(name: str, document: dict[str, Any]) -> list[str]:
    """The reasons for every field ``REQUIRED_WHEN_SENT`` for ``name`` that ``document``
    does not give."""
    return [f"{field}: required, {_WHY_REQUIRED[field]}"
            for field in REQUIRED_WHEN_SENT.get(name, ()) if document.get(field) is None]


def _validated(model: type[_M], document: dict[str, Any], context: str,
               also: list[str] | None = None) -> _M:
    """``document`` validated as ``model``; every reason against it (``also``: reasons
    found before, e.g. a field required when sent) in one message."""
    problems = list(also or ())
    try:
        validated = model.model_validate(document)
    except ValidationError as errors:
        problems.append(describe(errors, model))
    else:
        if not problems:
            return validated
    raise InputError(f"{context}: {'; '.join(problems)}")


def scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (``kbflow.scenario``).

    Raises:
        InputError: missing, not JSON, or not a valid scenario (field and reason named).
    """
    document = read_json_object(path)
    return _validated(Scenario, document, f"{path}: invalid scenario")
