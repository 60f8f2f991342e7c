"""One benchmark worker in its own process, so that its CPU time and memory can be read
from ``/proc``: ``python -m bench.bench_worker kbflow|bare --address A --task-queue Q``.

``kbflow``: kbflow's own worker, as ``kbflow worker`` runs it (``worker.run_worker``: the
encrypting converter, the outbox store in ``--data-dir``, JSON log lines on stderr at
info level, the interceptors), with ``--max-cached-workflows`` if given. ``bare``: a
worker for ``bench.bare.BareCase`` with the SDK's defaults. Both stop on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from bench.bare import BareCase, deliver
from kbflow.logs import configure_logging
from kbflow.settings import Settings
from worker import run_worker, workflow_runner

#: Workflow runners to compare (``--runner``): the SDK's sandbox as it is; the sandbox
#: with kbflow's own modules passed through (``worker.workflow_runner``, kbflow's
#: default); no sandbox.
RUNNERS: dict[str, Callable[[], WorkflowRunner]] = {
    "sandbox": SandboxedWorkflowRunner,
    "passthrough": workflow_runner,
    "unsandboxed": UnsandboxedWorkflowRunner,
}


async def run_bare(address: str, task_queue: str, options: dict[str, Any]) -> None:
    """A ``BareCase`` worker on the default converter until SIGTERM / SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(address)
    async with Worker(client, task_queue=task_queue, workflows=[BareCase],
                      activities=[deliver], **options):
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.bench_worker``."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_worker")
    parser.add_argument("kind", choices=("kbflow", "bare"))
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path(".kbflow"))
    parser.add_argument("--max-cached-workflows", type=int, default=None)
    parser.add_argument("--runner", choices=sorted(RUNNERS), default=None,
                        help="kbflow's worker only: another workflow runner (default: "
                             "worker.py's)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.runner is not None:
        options["workflow_runner"] = RUNNERS[args.runner]()
    if args.max_cached_workflows is not None:
        options["max_cached_workflows"] = args.max_cached_workflows
    if args.kind == "bare":
        asyncio.run(run_bare(args.address, args.task_queue, options))
        return
    configure_logging(json=True)  # as `kbflow worker`: a JSON line per event and packet
    settings = Settings(temporal_address=args.address, task_queue=args.task_queue,
                        data_dir=args.data_dir)
    asyncio.run(run_worker(settings, **options))


if __name__ == "__main__":
    main()
