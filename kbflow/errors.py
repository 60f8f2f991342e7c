"""Validation errors in the words of the JSON a user wrote (PROCESS.md §3 events, the case start).

pydantic reports errors in Python's words ("Input should be a valid tuple", "instance of
PersonVNumber") and with dotted locations (``v_number.0.person``). A user writes JSON, so
``describe`` says "must be an array", "must be an object with fields person, v_number",
"must be true or false", with JSON paths (``v_number[0].person``), and lists every error
of a body in one message.

Pure: no I/O. Never echoes an input value: only field paths, the kind of mistake and the
model's own limits (lengths, bounds, patterns, allowed values) appear in a message.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from functools import cache
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: What a kbflow field name looks like. A key in a body that is no field name is named in
#: an error only if it looks like one (a mistyped field): any other key could be a value
#: put in the wrong place, a name for instance, and is never echoed.
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: A Python class name such as ``PersonVNumber`` or ``GiDetails`` (two capitals, no space).
_CLASS_NAME = re.compile(r"\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b")


def describe(errors: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every error of ``errors`` as ``path: reason``, joined by ``; ``, in JSON words.

    ``model`` is the model that was validated; it lets a "wrong type" error name the
    fields of the object expected there. Without it the model is looked up by the error's
    title among the event and case-start models of ``kbflow.events``.

    Several errors are prefixed with their count ("3 errors: …"). Input values never
    appear (the message is built from error types, locations and limits only).
    """
    root = model or _model_named(errors.title)
    details = _without_echoes([_sized(error) for error in errors.errors(include_url=False)])
    parts = [describe_error(error, root) for error in details]
    unique = list(dict.fromkeys(parts))
    if len(unique) == 1:
        return unique[0]
    return f"{len(unique)} errors: " + "; ".join(unique)


def _without_echoes(details: list[ErrorDetails]) -> list[ErrorDetails]:
    """Leave out an array's "too few items" when its items have errors of their own:
    pydantic counts only the valid items ("at least 1 item … not 0") and the real
    mistakes are in the items."""
    located = [tuple(error["loc"]) for error in details]
    return [
        error for error in details
        if not (error["type"] == "too_short"
                and any(loc[: len(error["loc"])] == tuple(error["loc"])
                        and len(loc) > len(error["loc"]) for loc in located))
    ]


def describe_error(error: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """One pydantic error as ``path: reason`` (just ``reason`` at the body's root)."""
    loc = error.get("loc", ())
    if (error["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str)
            and not FIELD_NAME.match(loc[-1])):
        where = json_path(loc[:-1])
        reason = "a key that is no field name (not shown)"
        return f"{where}: {reason}" if where else reason
    path = json_path(loc)
    reason = _reason(error, _type_at(model, loc) if model is not None else None)
    return f"{path}: {reason}" if path else reason


def json_path(loc: Sequence[int | str]) -> str:
    """A pydantic location as a JSON path: ``('v_number', 0, 'person')`` is
    ``v_number[0].person``. Parts that are not field names (union tags such as
    ``function-after[…]``) are left out."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}" if path else part
    return path


def _reason(error: ErrorDetails, expected: Any) -> str:
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("int_type", "int_parsing", "int_from_float", "int_parsing_size"):
        return "must be an integer"
    if kind in ("float_type", "float_parsing", "decimal_type", "decimal_parsing",
                "finite_number"):
        return "must be a number"
    if kind in ("string_type", "string_unicode", "string_sub_type"):
        return "must be a string"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        if least == 1:
            return "must be a non-empty string"
        return f"must be a string of at least {least} characters"
    if kind == "string_too_long":
        return (f"must be a string of at most {ctx.get('max_length')} characters"
                + _has(ctx, "characters"))
    if kind == "string_pattern_mismatch":
        return f"must be a string matching {ctx.get('pattern')}"
    if kind in ("too_short", "too_long"):
        word, bound = ("least", "min_length") if kind == "too_short" else ("most", "max_length")
        count = ctx.get(bound)
        if str(ctx.get("field_type", "")).lower() in ("dictionary", "object"):
            return f"must be an object of at {word} {count} fields"
        return (f"must be an array of at {word} {count} item{'s' if count != 1 else ''}"
                + _has(ctx, "items"))
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"):
        return "must be an array"
    if kind in ("model_type", "model_attributes_type", "dataclass_type", "dict_type",
                "mapping_type", "is_instance_of", "is_subclass_of", "dataclass_exact_type",
                "model_class"):
        return _must_be(expected) or "must be an object"
    if kind in ("enum", "literal_error"):
        return f"must be one of {_choices(ctx.get('expected', ''))}"
    if kind.startswith("date_") or kind == "date_type":
        if kind == "date_future":
            return "must be a date in the future"
        if kind == "date_past":
            return "must be a date in the past"
        return "must be a date YYYY-MM-DD"
    if kind.startswith("datetime_") or kind.startswith("timezone_"):
        return "must be a date and time with a time zone (ISO 8601)"
    if kind.startswith("time_"):
        return "must be a time HH:MM[:SS]"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
                 "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}
        word, key = words[kind]
        return f"must be {word} {ctx.get(key)}"
    if kind == "multiple_of":
        return f"must be a multiple of {ctx.get('multiple_of')}"
    if kind == "none_required":
        return "must be null"
    if kind == "json_invalid":
        return "must be valid JSON"
    if kind == "json_type":
        return "must be a JSON string, array or object"
    if kind == "frozen_instance" or kind == "frozen_field":
        return "cannot be changed"
    if kind in ("value_error", "assertion_error"):
        return _clean(re.sub(r"^(Value error|Assertion failed), ", "", error["msg"]))
    return _clean(error["msg"])


def _clean(message: str) -> str:
    """A pydantic message in JSON words, without a Python class name."""
    text = re.sub(r"^Input should be\b", "must be", message)
    text = re.sub(r"\b(a valid )?(dictionary|mapping)( or instance of \w+)?", "an object", text)
    text = re.sub(r"\ba valid (tuple|list|set|frozenset)\b", "an array", text)
    text = re.sub(r"\b(an? )?instance of \w+", "a value of the right type", text)
    text = re.sub(r"\bTuple|List\b", "Array", text)
    text = re.sub(r"\bvalid boolean\b", "true or false", text)
    text = re.sub(r"\bField required\b", "required", text)
    return _CLASS_NAME.sub("object", text)


def _choices(expected: str) -> str:
    """pydantic's ``'a', 'b' or 'c'`` as JSON strings: ``"a", "b", "c"``."""
    values = re.findall(r"'((?:[^'\\]|\\.)*)'", expected)
    if not values:
        return _clean(expected)
    return ", ".join(f'"{value}"' for value in values)


def _must_be(expected: Any) -> str | None:
    """"must be …" for the type expected at a location, or None if unknown."""
    if isinstance(expected, type) and issubclass(expected, BaseModel):
        return f"must be an object with fields {', '.join(expected.model_fields)}"
    if isinstance(expected, type) and issubclass(expected, Enum):
        return "must be one of " + ", ".join(f'"{member.value}"' for member in expected)
    if isinstance(expected, type) and issubclass(expected, bool):
        return "must be true or false"
    if isinstance(expected, type) and issubclass(expected, int):
        return "must be an integer"
    if isinstance(expected, type) and issubclass(expected, str):
        return "must be a string"
    if isinstance(expected, type) and issubclass(expected, dt.date):
        return "must be a date YYYY-MM-DD"
    if typing.get_origin(expected) in (tuple, list):
        return "must be an array"
    return None


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, …]``, ``X | None`` and ``Optional[X]``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _type_at(model: type[BaseModel], loc: Iterable[int | str]) -> Any:
    """The (unwrapped) type a model expects at ``loc``, or None if it cannot be told."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            if typing.get_origin(current) not in (tuple, list):
                return None
            current = typing.get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        else:
            continue  # a union tag or validator name in the location: not a field
    return _unwrap(current)


def _sized(error: ErrorDetails) -> ErrorDetails:
    """``error`` without its input, and for a text or list that is too long, with its
    actual length in ``ctx`` (a size, never the value)."""
    value = error.get("input")
    sized = {key: item for key, item in error.items() if key != "input"}
    if error["type"] in ("string_too_long", "too_long") and isinstance(value, str | list |
                                                                        tuple | dict):
        sized["ctx"] = {**error.get("ctx", {}), "actual_length": len(value)}
    return sized  # type: ignore[return-value]


def _has(ctx: Mapping[str, Any], unit: str) -> str:
    length = ctx.get("actual_length")
    return "" if length is None else f" (it has {length} {unit})"


@cache
def _models_by_name() -> dict[str, type[BaseModel]]:
    """The case-start and event models by class name (pydantic's error title)."""
    from kbflow.case import RULES
    from kbflow.events import CaseStart, ErasureRequest

    models: dict[str, type[BaseModel]] = {m.__name__: m for m in (CaseStart, ErasureRequest)}
    models.update({rule.model.__name__: rule.model for rule in RULES.values()})
    return models


def _model_named(title: str) -> type[BaseModel] | None:
    return _models_by_name().get(title)
