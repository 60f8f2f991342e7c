"""The kbflow worker: runs ``CaseWorkflow`` and the delivery activities until interrupted.

Takes a ``kbflow.settings.Settings`` (``main`` reads it from the environment: Temporal's
address and namespace, the task queue, the data dir and the keys); logs JSON lines to
stderr that carry case refs, steps and workflow ids, never personal data. SIGTERM or
SIGINT stops it gracefully: running activities get ``GRACEFUL_SHUTDOWN`` (30 s) to
finish, then it exits.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Worker

from activities.delivery import DeliveryActivities
from activities.outbox_store import OutboxStore
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow.logs import configure_logging
from kbflow.settings import Settings
from workflows.case_workflow import CaseWorkflow

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


def build_worker(
    client: Client, task_queue: str, store: OutboxStore, identity: str | None = None
) -> Worker:
    """A worker for ``CaseWorkflow`` and the delivery activities on ``task_queue``.

    ``identity`` names the worker in Temporal (default: the SDK's pid@host).
    """
    activities = DeliveryActivities(store)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CaseWorkflow],
        activities=[activities.deliver_packet, activities.send_reminder, activities.erase_case],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        identity=identity,
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
