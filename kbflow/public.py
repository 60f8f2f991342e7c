"""The one kind of value kbflow leaves unencrypted: progress, never personal data.

Everything a Temporal payload carries is encrypted by ``encryption.codec.CaseCodec``
except values of the two types defined here, which can hold no personal data by
construction:

- ``Public``: a pydantic model whose fields may only have non-personal types (enums,
  ``bool``, ``int``, dates and datetimes, ``CaseRef``, ``Literal`` constants, other
  ``Public`` models, and tuples and optionals of these). The check runs when a subclass is
  defined, so a ``str`` field (a name, an address, a free text) cannot be added by
  mistake: the class definition raises ``PersonalFieldError``.
- ``PublicText``: a ``str`` for summaries and details, only ever made by ``PublicText.of``
  from a fixed wording (a member of a ``Wording`` enum, written in code) whose blanks are
  filled with typed values (enums, ints, dates, case refs); ``PublicText.lines`` joins
  such texts. There is no constructor from a free ``str``; ``PublicText.parse`` re-reads
  a text and accepts it only if every line is one of the wordings with its blanks filled
  by values of their types.

Pure: no Temporal, no I/O. ``encryption.codec`` marks payloads of these types and
re-checks them before it leaves one in plaintext.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import string
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from kbflow.case_refs import MODEL_PATTERN


class PersonalFieldError(TypeError):
    """A ``Public`` model declared a field whose type could hold personal data."""


class _PublicId:
    """Marks an ``Annotated`` str as an id made by kbflow (no personal data)."""

    def __repr__(self) -> str:
        return "PUBLIC_ID"


PUBLIC_ID = _PublicId()

#: A case reference (``kbflow.case_refs``): made by kbflow, never chosen by a person.
CaseRef = Annotated[str, StringConstraints(pattern=MODEL_PATTERN), PUBLIC_ID]

_SCALARS: tuple[type, ...] = (bool, int, dt.date, dt.datetime, type(None))


def _type_problem(annotation: Any, metadata: tuple[Any, ...] = ()) -> str | None:
    """Why ``annotation`` could hold personal data (``None``: it cannot)."""
    if PUBLIC_ID in metadata and annotation is str:
        return None
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extra = typing.get_args(annotation)
        return _type_problem(base, (*metadata, *extra))
    if origin in (typing.Union, types.UnionType):
        return next(filter(None, (_type_problem(arg) for arg in typing.get_args(annotation))),
                    None)
    if origin is tuple:
        args = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        return next(filter(None, (_type_problem(arg) for arg in args)), None)
    if origin is Literal:
        return None  # constants written in code
    if isinstance(annotation, type):
        if annotation in _SCALARS or issubclass(annotation, enum.Enum | Public):
            return None
        if issubclass(annotation, str):
            return ("str may hold personal data; use an enum, CaseRef or another Public "
                    "model")
    return (f"{getattr(annotation, '__name__', annotation)} is no non-personal type "
            "(enums, bool, int, date, datetime, CaseRef, Public models, tuples and "
            "optionals of these)")


class Public(BaseModel):
    """Base of the models kbflow leaves unencrypted; see the module docstring.

    Raises (when a subclass is defined):
        PersonalFieldError: a field's type is not one of the non-personal types, or the
            model admits extra fields (``extra="allow"``).
    """

    model_config = ConfigDict(extra="forbid")

    #: Every Public model by ``module.qualname``, for the codec's re-check.
    registry: ClassVar[dict[str, type[Public]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.model_config.get("extra") == "allow":  # extra fields have no declared type
            raise PersonalFieldError(f"{cls.__qualname__}: extra='allow' admits fields "
                                     "of any type")
        for name, info in cls.model_fields.items():
            problem = _type_problem(info.annotation, tuple(info.metadata))
            if problem:
                raise PersonalFieldError(f"{cls.__qualname__}.{name}: {problem}")
        Public.registry[public_name(cls)] = cls


def public_name(model: type[Public]) -> str:
    """The name a payload marker uses for ``model``."""
    return f"{model.__module__}.{model.__qualname__}"


# ---- texts -------------------------------------------------------------------------------


class Wording(enum.StrEnum):
    """Base of the fixed wordings a ``PublicText`` is made of. A subclass's members are
    templates (``str.format`` style, named blanks only); its ``__blanks__`` gives each
    blank's type: an enum, ``int``, ``dt.date`` or ``CaseRef``."""

    __blanks__: ClassVar[dict[str, Any]] = {}


_INT = r"-?\d{1,9}"
_DATE = r"\d{4}-\d{2}-\d{2}"
_CASE_REF = MODEL_PATTERN.removeprefix("^").removesuffix("$")


def _blank_regex(kind: Any) -> str:
    if kind is CaseRef:
        return _CASE_REF
    if kind is dt.date:
        return _DATE
    if kind is int:
        return _INT
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        values = sorted((str(member.value) for member in kind), key=len, reverse=True)
        return "|".join(re.escape(value) for value in values)
    raise PersonalFieldError(f"{kind!r} is no blank type (enum, int, date, CaseRef)")


def _blanks(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def _format_value(name: str, kind: Any, value: object) -> str:
    """The text of one blank's value, after checking its type.

    Raises:
        TypeError: ``value`` is not of the blank's type.
    """
    if kind is CaseRef:
        if isinstance(value, str) and re.fullmatch(MODEL_PATTERN, value):
            return value
    elif kind is dt.date:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool | enum.Enum):
            return str(value)
    elif isinstance(value, kind):
        return str(value.value)
    raise TypeError(f"blank '{name}': expects {getattr(kind, '__name__', kind)}, "
                    f"got {type(value).__name__}")


def _wordings() -> Iterator[type[Wording]]:
    pending: list[type[Wording]] = list(Wording.__subclasses__())
    while pending:
        wording = pending.pop()
        pending += wording.__subclasses__()
        yield wording


_PATTERNS: dict[Wording, re.Pattern[str]] = {}


def _pattern(member: Wording) -> re.Pattern[str]:
    if member not in _PATTERNS:
        kinds = type(member).__blanks__
        parts = []
        for literal, name, _, _ in string.Formatter().parse(str(member)):
            parts.append(re.escape(literal))
            if name is not None:
                parts.append(f"(?:{_blank_regex(kinds[name])})")
        _PATTERNS[member] = re.compile("".join(parts))
    return _PATTERNS[member]


class PublicText(str):
    """A summary or details text made only of fixed wordings and typed values.

    Made by ``of`` (one line) and ``lines`` (several), or re-read by ``parse``; calling
    ``PublicText(...)`` directly raises ``TypeError``.
    """

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> PublicText:
        raise TypeError("PublicText is made by PublicText.of, .lines or .parse, "
                        "never from a free str")

    @classmethod
    def _make(cls, text: str) -> PublicText:
        return str.__new__(cls, text)

    @classmethod
    def of(cls, wording: Wording, **values: object) -> PublicText:
        """One line: ``wording`` with its blanks filled by ``values``.

        Raises:
            TypeError: ``wording`` is no ``Wording`` member, a blank is missing or extra,
                or a value is not of its blank's type.
        """
        if not isinstance(wording, Wording):
            raise TypeError("PublicText.of takes a Wording member, not a free str")
        kinds = type(wording).__blanks__
        names = _blanks(str(wording))
        if set(names) != set(values):
            raise TypeError(f"{type(wording).__name__}.{wording.name}: blanks "
                            f"{sorted(names)}, got {sorted(values)}")
        text = str(wording).format(**{
            name: _format_value(name, kinds[name], value) for name, value in values.items()})
        return cls._make(text)

    @classmethod
    def lines(cls, *texts: PublicText) -> PublicText:
        """``texts`` as one text, a line each.

        Raises:
            TypeError: one of ``texts`` is not a ``PublicText``.
        """
        if not all(isinstance(text, PublicText) for text in texts):
            raise TypeError("PublicText.lines joins PublicText values only")
        return cls._make("\n".join(texts))

    @classmethod
    def parse(cls, text: str) -> PublicText:
        """``text`` as a ``PublicText``, if every line is one of the wordings (of every
        ``Wording`` subclass defined so far) with its blanks filled by values of their
        types; the empty text is one of no lines.

        Raises:
            ValueError: a line is not such a wording (the line is not echoed: it could be
                personal).
        """
        members = [member for wording in _wordings() for member in wording]
        for number, line in enumerate(text.split("\n") if text else [], start=1):
            if not any(_pattern(member).fullmatch(line) for member in members):
                raise ValueError(f"line {number} is no kbflow wording")
        return cls._make(text)
