"""W3C trace context through Temporal: client → workflow → activity, in a header.

- ``TraceContextClient`` (a client interceptor, installed by ``worker.connect``): a
  ``start_workflow``, ``start_workflow_update`` or update-with-start made while a trace
  is current (``kbflow.trace.CURRENT``: the API's request, the CLI's ``start`` /
  ``event``) carries it in the header ``kbflow-trace`` — never in a body.
- ``TraceContextWorker`` (a worker interceptor, installed by ``worker.build_worker``):
  the workflow's inbound start (``execute_workflow``) and update handler
  (``handle_update_handler``) read that header into a context variable of their own task
  (asyncio tasks copy context variables, so each update's activities — scheduled by its
  handler's task and the tasks it gathers — see that update's trace, and the run's see
  the start's), and the outbound ``start_activity`` puts it on every activity so
  scheduled. The activity inbound interceptor makes it current
  (``kbflow.trace.current()``) while the activity runs: ``deliver_packet`` writes the
  processing-log entries under it.

Deterministic: the workflow side makes no id and issues no command; it only copies a
header. Headers are not compared on replay, so recorded histories (with no header) replay
unchanged; activities they schedule get none, and their entries start a new trace.

The header's payload is a ``kbflow.trace.TraceHeader``, a ``Public`` model (random ids
only): with ``HeaderCodecBehavior.CODEC`` headers go through ``encryption.codec``, which
leaves a public payload in plaintext (``is_public_payload``). A header that does not
decode as one is ignored (no trace), never a failed task.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from temporalio import activity, client, workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadConverter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleUpdateInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from encryption.codec import PublicPayloadConverter
from kbflow import trace
from kbflow.trace import TraceContext, TraceHeader

#: The Temporal header that carries the trace.
HEADER = "kbflow-trace"
#: Makes the header's payload on the client (the one kbflow's data converter uses).
_CLIENT_CONVERTER = PublicPayloadConverter()
#: The trace of the workflow task running now (the run's, or one update handler's).
_WORKFLOW_TRACE: ContextVar[TraceContext | None] = ContextVar("kbflow_workflow_trace",
                                                              default=None)


def header_payload(context: TraceContext, converter: PayloadConverter) -> Payload:
    """``context`` as the header's payload."""
    return converter.to_payloads([TraceHeader.of(context)])[0]


def from_headers(headers: Mapping[str, Payload], converter: PayloadConverter
                 ) -> TraceContext | None:
    """The trace in ``headers``, or None (absent, or not a ``TraceHeader``)."""
    payload = headers.get(HEADER)
    if payload is None:
        return None
    try:
        header = converter.from_payloads([payload], [TraceHeader])[0]
        return header.context() if isinstance(header, TraceHeader) else None
    except Exception:  # anything else in the header: no trace, never a failed task
        return None


def _with_trace(headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
    context = trace.current()
    if context is None:
        return headers
    return {**headers, HEADER: header_payload(context, _CLIENT_CONVERTER)}


class TraceContextClient(client.Interceptor):
    """Adds the current trace to workflow starts and updates (module docstring)."""

    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _ClientOutbound(next)


class _ClientOutbound(client.OutboundInterceptor):
    async def start_workflow(self, input: client.StartWorkflowInput
                             ) -> client.WorkflowHandle[Any, Any]:
        input.headers = _with_trace(input.headers)
        return await super().start_workflow(input)

    async def start_workflow_update(self, input: client.StartWorkflowUpdateInput
                                    ) -> client.WorkflowUpdateHandle[Any]:
        input.headers = _with_trace(input.headers)
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(
            self, input: client.StartWorkflowUpdateWithStartInput
    ) -> client.WorkflowUpdateHandle[Any]:
        input.start_workflow_input.headers = _with_trace(input.start_workflow_input.headers)
        input.update_workflow_input.headers = _with_trace(input.update_workflow_input.headers)
        return await super().start_update_with_start_workflow(input)


class TraceContextWorker(Interceptor):
    """Carries the trace from a workflow's start or update to the activities it
    schedules, and makes it current in the activity (module docstring)."""

    def intercept_activity(
            self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _WorkflowInbound


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        _WORKFLOW_TRACE.set(from_headers(input.headers, workflow.payload_converter()))
        return await super().execute_workflow(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        # Set in the update's own task (each update runs in one): it never leaks out.
        _WORKFLOW_TRACE.set(from_headers(input.headers, workflow.payload_converter()))
        return await super().handle_update_handler(input)


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        context = _WORKFLOW_TRACE.get()
        if context is not None:
            input.headers = {**input.headers,
                             HEADER: header_payload(context, workflow.payload_converter())}
        return super().start_activity(input)


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        context = from_headers(input.headers, activity.payload_converter())
        with trace.use(context):
            return await super().execute_activity(input)
