"""W3C Trace Context (``traceparent``) for the processing log (LDV: "accept and propagate
W3C Trace Context, never sample").

A ``traceparent`` is ``VERSION-TRACE_ID-PARENT_ID-FLAGS`` in lower-case hex:
``00-<32 hex>-<16 hex>-<2 hex>``. ``parse`` follows the W3C Recommendation: version
``ff`` is invalid, a trace id or parent id of all zeros is invalid, upper-case hex is
invalid; a version 00 header is exactly 55 characters; a higher version is read by its
first four fields (and may carry more after a ``-``). Whoever receives a malformed one
ignores it and starts a new trace (``TraceContext.start``), as the specification says.

``TraceContext`` is what kbflow carries: the trace id, the span id of the span that is
current (the API's span for a request, the CLI's for a command), the flags, and the
``Fsc-Transaction-Id`` of an FSC call (a UUIDv7), if any. ``CURRENT`` holds it for the
code running now (a ``contextvars.ContextVar``: the API's middleware, the CLI's
``start`` and ``event``, and the activity interceptor set it; ``workflows.trace_context``
carries it through Temporal in a ``TraceHeader``, a ``Public`` model that the codec
leaves in plaintext).

Pure but for the random ids (``secrets``): no Temporal, no I/O, no environment.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated

from pydantic import StringConstraints

from kbflow.public import PUBLIC_ID, Public

#: The four fields of a version-00 ``traceparent`` (and the first four of a later version).
_FIELDS = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
#: A trace id (16 bytes) and a span id (8 bytes), lower-case hex.
TRACE_ID_PATTERN = r"^[0-9a-f]{32}$"
SPAN_ID_PATTERN = r"^[0-9a-f]{16}$"
#: A canonical UUID text (the ``Fsc-Transaction-Id``).
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
#: The flags kbflow sends: ``sampled``. LDV: a processing log never samples.
SAMPLED = "01"


def new_trace_id() -> str:
    """A random trace id (32 hex characters, never all zeros)."""
    while True:
        value = secrets.token_hex(16)
        if value != _ZERO_TRACE:
            return value


def new_span_id() -> str:
    """A random span id (16 hex characters, never all zeros)."""
    while True:
        value = secrets.token_hex(8)
        if value != _ZERO_SPAN:
            return value


@dataclass(frozen=True)
class TraceParent:
    """A parsed ``traceparent``: the caller's trace and span (its ``parent-id``)."""

    trace_id: str
    parent_id: str
    flags: str


def parse(value: str | None) -> TraceParent | None:
    """The ``traceparent`` header ``value``, or None if it is absent or malformed (W3C:
    the receiver then starts a new trace). See the module docstring for the rules."""
    if value is None:
        return None
    value = value.strip(" \t")
    match = _FIELDS.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":  # a later version's further fields
        return None
    return TraceParent(trace_id, parent_id, flags)


def transaction_id(value: str | None) -> str | None:
    """An ``Fsc-Transaction-Id`` in canonical lower-case form if ``value`` is a UUIDv7,
    else None (a malformed one is not recorded: it could carry anything)."""
    if value is None:
        return None
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        return None
    text = str(parsed)
    return text if parsed.version == 7 and re.fullmatch(UUID_PATTERN, text) else None


@dataclass(frozen=True)
class TraceContext:
    """The trace kbflow is working in: its id, the current span, the flags and the FSC
    transaction id (None outside FSC)."""

    trace_id: str
    span_id: str
    flags: str = SAMPLED
    fsc_transaction_id: str | None = None

    @classmethod
    def start(cls, incoming: TraceParent | None = None,
              fsc_transaction_id: str | None = None) -> TraceContext:
        """A new span of kbflow's own: in ``incoming``'s trace if given, else in the
        trace of the FSC transaction id (its 32 hex digits: one id for FSC's log and
        LDV's), else in a new trace. kbflow's span is always sampled."""
        if incoming is not None:
            trace_id = incoming.trace_id
        elif fsc_transaction_id is not None:
            trace_id = uuid.UUID(fsc_transaction_id).hex
        else:
            trace_id = new_trace_id()
        return cls(trace_id, new_span_id(), SAMPLED, fsc_transaction_id)

    @property
    def traceparent(self) -> str:
        """This span as a version-00 ``traceparent`` (what kbflow answers and sends on)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


#: The trace of the code running now (module docstring); None: none yet.
CURRENT: ContextVar[TraceContext | None] = ContextVar("kbflow_trace", default=None)


def current() -> TraceContext | None:
    """The trace of the code running now, or None."""
    return CURRENT.get()


@contextlib.contextmanager
def use(context: TraceContext | None) -> Iterator[TraceContext | None]:
    """Make ``context`` current for the block (and every task it starts)."""
    token = CURRENT.set(context)
    try:
        yield context
    finally:
        CURRENT.reset(token)


TraceParentText = Annotated[
    str, StringConstraints(pattern=r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"), PUBLIC_ID]
TransactionIdText = Annotated[str, StringConstraints(pattern=UUID_PATTERN), PUBLIC_ID]


class TraceHeader(Public):
    """A trace context as a Temporal header (``workflows.trace_context``): random ids
    only, so the codec leaves it in plaintext (``kbflow.public``)."""

    traceparent: TraceParentText
    fsc_transaction_id: TransactionIdText | None = None

    @classmethod
    def of(cls, context: TraceContext) -> TraceHeader:
        """The header of ``context``."""
        return cls(traceparent=context.traceparent,
                   fsc_transaction_id=context.fsc_transaction_id)

    def context(self) -> TraceContext | None:
        """The trace context this header carries, or None if its ``traceparent`` is not a
        valid one (an all-zero id)."""
        parent = parse(self.traceparent)
        if parent is None:
            return None
        return TraceContext(parent.trace_id, parent.parent_id, parent.flags,
                            self.fsc_transaction_id)
