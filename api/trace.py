"""The API's W3C Trace Context (issue 8, point 7): every request is a span of kbflow's.

``TraceMiddleware`` (an ASGI middleware, ``install``) reads the request's ``traceparent``
(``kbflow.trace.parse``: a malformed one is ignored and a new trace started, as W3C
says) and its ``Fsc-Transaction-Id`` (a UUIDv7; recorded with the trace, and the trace
id when no ``traceparent`` came: ``kbflow.trace.TraceContext.start``), makes the
request's own span, and keeps it current (``kbflow.trace.CURRENT``) while the request is
handled: what the routes start or send to Temporal carries it
(``workflows.trace_context``), down to each processing-log entry, whose
``parent_span_id`` is this span. Every response (problems included) answers with
``traceparent`` of that span, so a caller can find its request in kbflow's log: the
API's log lines of the request carry its ``trace_id`` (structlog's context variables).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI

from kbflow import trace

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

TRACEPARENT = "traceparent"
FSC_TRANSACTION_ID = "fsc-transaction-id"


def _header(scope: Scope, name: str) -> str | None:
    """The request's header ``name`` (lower case), or None; only its first value."""
    for key, value in scope.get("headers") or ():
        if key.decode("latin-1").lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


def request_trace(scope: Scope) -> trace.TraceContext:
    """The span of the request ``scope``: in the caller's trace if it sent a valid
    ``traceparent``, else in the FSC transaction's, else in a new one."""
    return trace.TraceContext.start(
        trace.parse(_header(scope, TRACEPARENT)),
        trace.transaction_id(_header(scope, FSC_TRANSACTION_ID)))


class TraceMiddleware:
    """Makes each HTTP request a span (module docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = request_trace(scope)
        scope.setdefault("state", {})["trace"] = context

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(key, value) for key, value in message.get("headers", ())
                           if key.lower() != TRACEPARENT.encode()]
                headers.append((TRACEPARENT.encode(), context.traceparent.encode()))
                message["headers"] = headers
            await send(message)

        with trace.use(context), structlog.contextvars.bound_contextvars(
                trace_id=context.trace_id):
            await self.app(scope, receive, send_with_trace)


def install(app: FastAPI) -> None:
    """Make every request of ``app`` a span (``TraceMiddleware``)."""
    app.add_middleware(TraceMiddleware)
