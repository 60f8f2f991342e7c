"""Events through the agencies' API against updates sent directly with the Temporal
client: ``python -m bench.bench_api`` (issue 8).

Starts one Temporal dev server as ``kbflow server`` runs it (SQLite, WAL), one kbflow
worker process (``bench.bench_worker kbflow``) and the API as ``kbflow api`` serves it,
in its own process (``--serve``: ``serve``), over mutual TLS with a development set from
``kbflow certs init``; all on one data dir. For every example (``examples/*.json``) and
every round, ``--cases`` cases of it run end to end, ``--concurrency`` at a time, once
per path (which goes first alternates by round; round 0 warms up and is not counted):

- **direct**: ``starter.cases.start_case`` and ``starter.cases.send_event`` on kbflow's
  encrypting Temporal client, as ``kbflow start`` / ``kbflow event`` do;
- **api**: ``POST /v1/cases`` by the reporter and
  ``POST /v1/cases/{caseRef}/events/{event}`` by each event's sender, each party with its
  own client certificate (``httpx``, one kept-alive connection pool per party).

A case counts its start and each event as one request. Reported per path, as medians over
the rounds: requests per second of a batch, p50 latency of a request, and the API
process's CPU per request; with the ratio api / direct. Prints a table (``--json``:
JSON); nothing is asserted. No network beyond localhost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from api.certs import DEV_OINS, init_dev_certs
from api.tls import TlsFiles, client_context
from bench.bench_vs_bare import Plan as ExamplePlan
from bench.bench_vs_bare import (
    WorkerProcess,
    _free_port,
    _machine,
    cpu_seconds,
    dev_server,
    plan_of,
)
from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow.process import Party
from kbflow.scenario import example_files
from kbflow.settings import Settings
from starter import inputs
from starter.cases import send_event, start_case

PATHS = ("direct", "api")
#: Bound for one request (a start or an event, its deliveries included).
REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class Batch:
    """One batch of cases of one example on one path."""

    path: str
    example: str
    round: int
    requests: int
    seconds: float
    latencies: list[float]
    api_cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


class Driver(Protocol):
    """Runs one case of an example on one path; returns each request's latency."""

    async def run_case(self, plan: ExamplePlan) -> list[float]: ...


class DirectDriver:
    """Cases as the CLI starts them and sends their events, on the Temporal client."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings, self.client = settings, client

    async def run_case(self, plan: ExamplePlan) -> list[float]:
        document = {**plan.scenario.case, "idempotency_key": f"bench-{uuid.uuid4()}"}
        start = inputs.case_start(document)
        latencies = []
        began = time.perf_counter()
        await start_case(self.client, self.settings, start)
        latencies.append(time.perf_counter() - began)
        for item in plan.scenario.events:
            body = inputs.event_body(item.event, {**item.body,
                                                  "idempotency_key": f"b-{uuid.uuid4()}"})
            began = time.perf_counter()
            await send_event(self.client, start.case_ref, item.event, body)
            latencies.append(time.perf_counter() - began)
        return latencies


class ApiDriver:
    """Cases through the API, each request by its party's own certificate."""

    def __init__(self, base_url: str, files: TlsFiles) -> None:
        self.clients = {party: httpx.AsyncClient(
            base_url=base_url, verify=client_context(files, party),
            timeout=httpx.Timeout(REQUEST_TIMEOUT)) for party in Party}

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def run_case(self, plan: ExamplePlan) -> list[float]:
        document = {**plan.scenario.case, "idempotency_key": f"bench-{uuid.uuid4()}"}
        latencies = []
        began = time.perf_counter()
        # every bench case concerns the example's one fictional child: a second open
        # case for it is intended
        response = await self.clients[Party(document["reporter"])].post(
            "/v1/cases", json=document, params={"secondCase": "true"})
        latencies.append(time.perf_counter() - began)
        if response.status_code != 201:
            raise RuntimeError(f"POST /v1/cases: {response.status_code} {response.text}")
        case_path = response.headers["Location"]
        for item in plan.scenario.events:
            body = {**item.body, "idempotency_key": f"b-{uuid.uuid4()}"}
            if isinstance(body.get("gi"), dict):  # the API needs the GI's OIN (parties.json)
                body["gi"] = {**body["gi"], "oin": DEV_OINS[Party.GI]}
            began = time.perf_counter()
            response = await self.clients[Party(body["sender"])].post(
                f"{case_path}/events/{item.event.replace('_', '-')}", json=body)
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"event {item.event}: {response.status_code} "
                                   f"{response.text}")
        return latencies


async def run_batch(driver: Driver, plan: ExamplePlan, path: str, round_number: int,
                    cases: int, concurrency: int, api_pid: int) -> Batch:
    """``cases`` cases of ``plan`` on one path, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            latencies.extend(await driver.run_case(plan))

    cpu_before = cpu_seconds(api_pid)
    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(cases)))
    seconds = time.perf_counter() - began
    return Batch(path, plan.name, round_number, len(latencies), seconds, latencies,
                 cpu_seconds(api_pid) - cpu_before)


def serve(settings: Settings) -> None:
    """The API as ``kbflow api`` serves it (``api.context.ApiContext.open``,
    ``api.server``), on ``settings`` instead of the environment; until SIGTERM."""
    import uvicorn

    from api import server
    from api.app import create_app
    from api.context import ApiContext

    api_context = asyncio.run(ApiContext.open(settings))
    config = server.config(create_app(api_context), TlsFiles(settings.api_tls_path),
                           settings.api_address, server_header=False, log_level="warning")
    uvicorn.Server(config).run()


class ApiProcess:
    """The API in its own process (``python -m bench.bench_api --serve``: ``serve``); its
    output goes to a file in the data dir."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.bench_api", "--serve",
                 "--address", settings.temporal_address, "--task-queue", settings.task_queue,
                 "--data-dir", str(settings.data_dir), "--api-address", settings.api_address],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    async def wait_serving(self, base_url: str, files: TlsFiles, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=base_url, verify=client_context(
                files, Party.RVDK)) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/v1/openapi.json")).status_code == 200:
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"kbflow api did not start; see {self.log_path}")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Results:
    """Everything measured."""

    options: dict[str, Any]
    batches: list[Batch] = field(default_factory=list)
    seconds: float = 0.0
    machine: str = field(default_factory=_machine)


@contextlib.asynccontextmanager
async def services(data_dir: Path) -> AsyncIterator[tuple[Settings, Any, str, TlsFiles, int]]:
    """The dev server, a worker and the API on ``data_dir``; yields the settings, the
    encrypting client, the API's base URL, its TLS folder and its process id."""
    settings = Settings(data_dir=data_dir)
    files = init_dev_certs(settings.api_tls_path)
    keys = KeyStore.open(settings)  # the master keys, before the worker and the API
    async with dev_server(data_dir, "wal") as server:
        address = f"127.0.0.1:{server.config.port}"
        task_queue = f"bench-api-{uuid.uuid4()}"
        settings = Settings(temporal_address=address, task_queue=task_queue,
                            data_dir=data_dir)
        from temporalio.client import Client

        client = await Client.connect(address, data_converter=encrypted_data_converter(keys))
        worker = WorkerProcess("kbflow", address, task_queue, data_dir)
        api_address = f"127.0.0.1:{_free_port()}"
        api = ApiProcess(dataclasses.replace(settings, api_address=api_address),
                         settings.dev_server_log_path.with_name("bench-api.log"))
        try:
            await worker.wait_polling(client)
            base_url = f"https://{api_address}"
            await api.wait_serving(base_url, files)
            yield settings, client, base_url, files, api.process.pid
        finally:
            api.stop()
            worker.stop()


async def bench(cases: int, concurrency: int, rounds: int, examples: tuple[str, ...],
                data_dir: Path, progress: Callable[[str], None]) -> Results:
    """See the module docstring."""
    began = time.monotonic()
    results = Results({"cases": cases, "concurrency": concurrency, "rounds": rounds,
                       "examples": list(examples)})
    plans = [plan_of(path) for path in example_files()
             if not examples or path.stem[:2] in examples or path.stem in examples]
    async with services(data_dir) as (settings, client, base_url, files, api_pid):
        api_driver = ApiDriver(base_url, files)
        drivers: dict[str, Driver] = {"direct": DirectDriver(settings, client),
                                      "api": api_driver}
        try:
            for round_number in range(rounds + 1):
                order = PATHS if round_number % 2 else PATHS[::-1]
                count = concurrency if round_number == 0 else cases
                for plan in plans:
                    for path in order:
                        batch = await run_batch(drivers[path], plan, path, round_number,
                                                count, concurrency, api_pid)
                        if round_number > 0:
                            results.batches.append(batch)
                progress(f"round {round_number}/{rounds} done"
                         + (" (warm-up)" if round_number == 0 else ""))
        finally:
            await api_driver.close()
    results.seconds = time.monotonic() - began
    return results


def summary(results: Results) -> dict[str, dict[str, float]]:
    """Per path: the median over rounds of requests per second (all examples of a round
    together), p50 latency (ms) and API CPU per request (ms); and the ratios."""
    rows: dict[str, dict[str, float]] = {}
    for path in PATHS:
        per_round: dict[int, list[Batch]] = {}
        for batch in results.batches:
            if batch.path == path:
                per_round.setdefault(batch.round, []).append(batch)
        rates = [sum(b.requests for b in batches) / sum(b.seconds for b in batches)
                 for batches in per_round.values()]
        latencies = [x for b in results.batches if b.path == path for x in b.latencies]
        cpu = [sum(b.api_cpu_seconds for b in batches) / sum(b.requests for b in batches)
               for batches in per_round.values()]
        rows[path] = {"requests_per_second": statistics.median(rates),
                      "p50_ms": statistics.median(latencies) * 1000,
                      "api_cpu_ms_per_request": statistics.median(cpu) * 1000}
    rows["ratio"] = {"requests_per_second": rows["api"]["requests_per_second"]
                     / rows["direct"]["requests_per_second"],
                     "p50_ms": rows["api"]["p50_ms"] / rows["direct"]["p50_ms"],
                     "api_cpu_ms_per_request": float("nan")}
    return rows


def report(results: Results) -> str:
    rows = summary(results)
    lines = [f"kbflow API vs direct Temporal updates ({results.machine}; "
             f"{results.options}; {results.seconds:.0f} s)", "",
             "| path | requests/s | p50 latency | API CPU per request |", "|---|---|---|---|"]
    for path in PATHS:
        row = rows[path]
        lines.append(f"| {path} | {row['requests_per_second']:.1f} | {row['p50_ms']:.0f} ms | "
                     f"{row['api_cpu_ms_per_request']:.1f} ms |")
    ratio = rows["ratio"]
    lines.append(f"| api / direct | {ratio['requests_per_second']:.2f}x | "
                 f"{ratio['p50_ms']:.2f}x | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.bench_api``."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api")
    parser.add_argument("--cases", type=int, default=10, help="cases per example and round")
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--examples", default="",
                        help="comma-separated example numbers or names (default: all)")
    parser.add_argument("--json", action="store_true")
    # the API's own process (ApiProcess)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--task-queue", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--api-address", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Settings(temporal_address=args.address, task_queue=args.task_queue,
                       data_dir=args.data_dir, api_address=args.api_address))
        return
    examples = tuple(x for x in args.examples.split(",") if x)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="kbflow-bench-api-") as folder:
        results: Results = asyncio.run(bench(args.cases, args.concurrency, args.rounds,
                                             examples, Path(folder), progress))
    if args.json:
        print(json.dumps({"options": results.options, "seconds": results.seconds,
                          "machine": results.machine, "summary": summary(results),
                          "batches": [asdict(b) for b in results.batches]}, indent=2))
    else:
        print(report(results))


if __name__ == "__main__":
    main()
