"""The kbflow worker: runs ``CaseWorkflow``, ``RetentionWorkflow``,
``NotificationWorkflow`` (webhooks, with kbflow's OIN from ``KBFLOW_API_TLS_DIR``'s
``server.crt``) and their activities until interrupted.

Takes a ``kbflow.settings.Settings`` (``main`` reads it from the environment: Temporal's
address and namespace, the task queue, the data dir and the keys); logs JSON lines to
stderr that carry case refs, steps and workflow ids, never personal data: every accepted
and refused event, delivery, reminder, escalation, retention end, erasure and failed
activity attempt (``workflows.operator_log.OperatorLog``, ``activities.delivery``), and
the SDK core's own lines (``kbflow.metrics.runtime``). With ``KBFLOW_METRICS_PORT`` set it
serves Prometheus metrics on ``/metrics`` there (``kbflow.metrics``). SIGTERM or
SIGINT stops it gracefully: running activities get ``GRACEFUL_SHUTDOWN`` (30 s) to
finish, then it exits.

An erased case's decoded state is never served from the worker's cache: once its data key
is destroyed, every query but ``status`` (no personal data) is refused
(``ErasedCaseQueries``). A worker that no longer holds the run cannot decode its history
at all; ``kbflow status`` does not ask a worker about an erased case.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from typing import Any

import structlog
from temporalio import workflow
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import (
    HandleQueryInput,
    Interceptor,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.delivery import DeliveryActivities
from activities.notifications import NotificationActivities, NotificationSettings, Notifier
from activities.outbox_store import OutboxStore
from api.tls import TlsMaterialError
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from encryption.storage import StorageError
from kbflow import erased_log, metrics, search_attributes
from kbflow.logs import configure_logging
from kbflow.settings import Settings
from workflows.case_workflow import CaseWorkflow
from workflows.notification_workflow import NotificationWorkflow
from workflows.operator_log import OperatorLog
from workflows.retention_workflow import RetentionWorkflow
from workflows.trace_context import TraceContextClient, TraceContextWorker

log = structlog.get_logger(__name__)

#: How long a stopping worker lets running activities finish.
GRACEFUL_SHUTDOWN = timedelta(seconds=30)
#: kbflow's own modules pass through the workflow sandbox: imported once per worker
#: rather than once per workflow run (``workflows`` was the one re-imported: ``kbflow``,
#: ``activities`` and ``encryption`` were passed through by the workflow modules already).
#: The sandbox still runs every workflow with its own globals, but a passed-through
#: module's calls are not checked by it: the sandbox no longer refuses a non-deterministic
#: call (``datetime.now()``, say) in ``workflows/``, as it never did in ``kbflow/`` (the
#: case rules). The replay tests over committed histories and the suite's check that no
#: workflow task fails guard determinism instead. Measured with
#: ``python -m bench.bench_vs_bare``: about a tenth less worker CPU per case (README,
#: "Performance").
PASSTHROUGH_MODULES = ("workflows", "kbflow", "activities", "encryption")


def workflow_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox with ``PASSTHROUGH_MODULES`` passed through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *PASSTHROUGH_MODULES))


async def connect(settings: Settings, keys: KeyStore | None = None,
                  runtime: Runtime | None = None) -> Client:
    """A Temporal client with kbflow's encrypting data converter (``encryption.codec``),
    for the worker and the CLI; headers go through the codec too. Starts and updates
    carry the current trace (``workflows.trace_context.TraceContextClient``).

    ``keys`` defaults to the key store ``settings`` configures (``KeyStore.open``);
    ``runtime`` to the SDK's default runtime (the worker passes ``kbflow.metrics.runtime``:
    a worker runs on its client's runtime).
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=encrypted_data_converter(keys or KeyStore.open(settings)),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
        interceptors=[TraceContextClient()],  # the current trace into starts and updates
        runtime=runtime,
    )


class MetricsPortError(RuntimeError):
    """The worker cannot serve metrics on ``KBFLOW_METRICS_PORT`` (in use, not allowed)."""


#: Queries an erased case still answers: its status holds no personal data.
ANSWERED_AFTER_ERASURE = frozenset({"status", "__temporal_workflow_metadata"})
_IS_ERASED = "kbflow_case_erased"


class ErasedCaseQueries(Interceptor):
    """Refuses every query but ``status`` on a case whose data key is destroyed, so that
    a worker still holding the run in its cache (a case terminated, then erased by
    ``kbflow erase``) does not serve its decoded timeline. The key store is asked outside
    the workflow sandbox (an extern function); a query changes no history."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[_IS_ERASED] = self._is_erased
        return _ErasedCaseInbound

    def _is_erased(self, workflow_id: str) -> bool:
        try:
            return self._keys.is_destroyed(workflow_id)
        except StorageError:  # cannot tell: refuse rather than serve an erased case
            return True


class _ErasedCaseInbound(WorkflowInboundInterceptor):
    async def handle_query(self, input: HandleQueryInput) -> Any:
        if input.query not in ANSWERED_AFTER_ERASURE:
            is_erased = workflow.extern_functions()[_IS_ERASED]
            if is_erased(workflow.info().workflow_id):
                raise ApplicationError(
                    f"query {input.query}: the case is erased; only its status is answered",
                    type="CaseErased", non_retryable=True)
        return await super().handle_query(input)


def build_worker(
    client: Client, task_queue: str, store: OutboxStore, identity: str | None = None,
    notifications: NotificationSettings | None = None, **options: Any,
) -> Worker:
    """A worker for ``CaseWorkflow``, ``RetentionWorkflow`` (a closed case's retention),
    ``NotificationWorkflow`` (webhooks) and their activities on ``task_queue``.

    ``notifications`` says how delivered packets are notified (kbflow's OIN, the API's
    URL, the retries' backoff); None: this worker starts no notification, and a delivery
    to a party with webhooks fails (retried) until one that can takes it over.

    ``identity`` names the worker in Temporal (default: the SDK's pid@host); ``options``
    are further ``temporalio.worker.Worker`` options (the benchmark's
    ``max_cached_workflows``, ``bench.bench_vs_bare``). Queries
    on erased cases are refused but ``status`` (``ErasedCaseQueries``, with the store's
    key store); events, escalations and failed attempts are logged and counted
    (``OperatorLog``) on the client's runtime; a trace goes from a start or update to
    the activities it schedules (``TraceContextWorker``).
    """
    activities = DeliveryActivities(
        store, None if notifications is None else Notifier(client, notifications))
    sending = NotificationActivities(lambda: store.subscriptions, notifications)
    erased_log.install(store.keys)  # a query replaying an erased case: one WARNING line
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CaseWorkflow, RetentionWorkflow, NotificationWorkflow],
        activities=[activities.deliver_packet, activities.send_reminder, activities.erase_case,
                    sending.send_notification],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        identity=identity,
        interceptors=[ErasedCaseQueries(store.keys), OperatorLog(), TraceContextWorker()],
        **{"workflow_runner": workflow_runner(), **options},
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None,
                     **options: Any) -> None:
    """Run a worker until ``stop`` is set, or until SIGTERM / SIGINT when ``stop`` is None;
    ``options`` go to ``build_worker``.

    Its client and worker run on one runtime (``kbflow.metrics.runtime``): the SDK core's
    logs forwarded to Python logging, and ``/metrics`` on ``settings.metrics_port`` if set.

    Raises:
        MetricsPortError: the metrics port cannot be bound.
        RuntimeError: Temporal cannot be reached (the SDK's "Failed client connect").
    """
    keys = KeyStore.open(settings)  # one instance: codec and outbox shred alike
    try:
        runtime = metrics.runtime(settings.metrics_port)
    except Exception as error:  # the SDK raises a bare exception from its bridge
        raise MetricsPortError(
            f"cannot serve metrics on port {settings.metrics_port}: {error}") from None
    client = await connect(settings, keys, runtime)
    store = OutboxStore(settings, keys=keys)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    await check_search_attributes(client)
    try:
        options.setdefault("notifications", NotificationSettings.from_settings(settings))
    except TlsMaterialError as missing:
        log.warning("notifications off: no API TLS material", reason=str(missing))
    worker = build_worker(client, settings.task_queue, store, **options)
    async with worker:  # validated against the server: it polls from here on
        log.info("worker started", task_queue=settings.task_queue,
                 temporal_address=settings.temporal_address, namespace=settings.namespace,
                 metrics_port=settings.metrics_port)
        await stop.wait()
        log.info("worker stopping", task_queue=settings.task_queue)
    log.info("worker stopped", task_queue=settings.task_queue)


class SearchAttributesMissing(RuntimeError):
    """The namespace lacks kbflow's search attributes: every workflow task that upserts
    them would fail, forever. The message names the missing ones and what to do."""


async def check_search_attributes(client: Client) -> None:
    """Refuse to work on a namespace without kbflow's search attributes
    (``kbflow.search_attributes.ALL``, with their types).

    Raises:
        SearchAttributesMissing: one or more are missing or of another type, or the
            namespace does not exist.
    """
    try:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise SearchAttributesMissing(
                f"namespace {client.namespace} does not exist on this Temporal: check "
                "TEMPORAL_NAMESPACE (or create it: temporal operator namespace create)"
            ) from None
        if error.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        # A server that cannot list them (the time-skipping test server) is not checked.
        log.warning("search attributes not checked: the server cannot list them",
                    namespace=client.namespace)
        return
    missing = [key.name for key in search_attributes.ALL
               if response.custom_attributes.get(key.name) != key.indexed_value_type]
    if missing:
        raise SearchAttributesMissing(
            f"namespace {client.namespace} lacks the search attributes {', '.join(missing)}: "
            "create them (temporal operator search-attribute create, see docker-compose.yml)")


def main() -> None:
    """Entry point of ``python worker.py``; ``kbflow worker`` does the same, with a
    one-line error when Temporal cannot be reached."""
    configure_logging(json=True)
    asyncio.run(run_worker(Settings.from_env()))


if __name__ == "__main__":
    main()
