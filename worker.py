"""The kbflow worker: runs ``CaseWorkflow``, ``RetentionWorkflow`` and the delivery
activities until interrupted.

Takes a ``kbflow.settings.Settings`` (``main`` reads it from the environment: Temporal's
address and namespace, the task queue, the data dir and the keys); logs JSON lines to
stderr that carry case refs, steps and workflow ids, never personal data. SIGTERM or
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
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    HandleQueryInput,
    Interceptor,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from activities.delivery import DeliveryActivities
from activities.outbox_store import OutboxStore
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from encryption.storage import StorageError
from kbflow.logs import configure_logging
from kbflow.settings import Settings
from workflows.case_workflow import CaseWorkflow
from workflows.retention_workflow import RetentionWorkflow

log = structlog.get_logger(__name__)

#: How long a stopping worker lets running activities finish.
GRACEFUL_SHUTDOWN = timedelta(seconds=30)


async def connect(settings: Settings, keys: KeyStore | None = None) -> Client:
    """A Temporal client with kbflow's encrypting data converter (``encryption.codec``),
    for the worker and the CLI; headers go through the codec too.

    ``keys`` defaults to the key store ``settings`` configures (``KeyStore.open``).
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=encrypted_data_converter(keys or KeyStore.open(settings)),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )


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
    client: Client, task_queue: str, store: OutboxStore, identity: str | None = None
) -> Worker:
    """A worker for ``CaseWorkflow``, ``RetentionWorkflow`` (a closed case's retention)
    and the delivery activities on ``task_queue``.

    ``identity`` names the worker in Temporal (default: the SDK's pid@host). Queries
    on erased cases are refused but ``status`` (``ErasedCaseQueries``, with the store's
    key store).
    """
    activities = DeliveryActivities(store)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CaseWorkflow, RetentionWorkflow],
        activities=[activities.deliver_packet, activities.send_reminder, activities.erase_case],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        identity=identity,
        interceptors=[ErasedCaseQueries(store.keys)],
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set, or until SIGTERM / SIGINT when ``stop`` is None."""
    keys = KeyStore.open(settings)  # one instance: codec and outbox shred alike
    client = await connect(settings, keys)
    store = OutboxStore(settings, keys=keys)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    worker = build_worker(client, settings.task_queue, store)
    log.info("worker started", task_queue=settings.task_queue,
             temporal_address=settings.temporal_address, namespace=settings.namespace)
    async with worker:
        await stop.wait()
        log.info("worker stopping", task_queue=settings.task_queue)
    log.info("worker stopped", task_queue=settings.task_queue)


def main() -> None:
    """Entry point of ``python worker.py``; ``kbflow worker`` does the same, with a
    one-line error when Temporal cannot be reached."""
    configure_logging(json=True)
    asyncio.run(run_worker(Settings.from_env()))


if __name__ == "__main__":
    main()
