"""What encrypting every Temporal payload costs: ``python -m bench.bench_encryption``.

Runs every example scenario (``examples/``) ``--rounds`` times on one Temporal server
(``--server``: the in-memory time-skipping test server by default, or the dev server with
SQLite as ``kbflow server`` runs it), each case once with the unencrypted converter
(``pydantic_data_converter``) and once with kbflow's ``encrypted_data_converter``
(AES-256-GCM with the case's data key) — and with ``--noop-codec`` once more with a codec
that changes nothing —, each on its own worker and task queue in this process. The runs of
a case follow each other, the order rotating by round, so that drift on the machine hits
every mode alike; one warm-up round is not counted. A case's wall time runs
from starting its workflow until its last event's update returned and every delivery is
done (no activity or workflow task pending); the cases run one after another, so each
time is a latency, not a share of a busy server. Time is never skipped: no case waits on
a timer.

Both modes deliver to the same kind of outbox store, so the ratio is the cost of the
payload codec (and its key store) alone, not of the outbox's own encryption.

Then micro-benchmarks: ``CaseCodec`` encode + decode of one payload the size of a packet,
for the median and the largest packet of the examples, beside the pydantic JSON round trip
of the same packet that every payload costs anyway; and creating a case's data key, which
the first payload of every case pays.

Prints the tables only; nothing here is asserted. No network beyond localhost.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import itertools
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec, WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.codec import CaseCodec, encrypted_data_converter
from encryption.keys import KeyStore
from kbflow import search_attributes
from kbflow.case import CaseState
from kbflow.events import CaseStart
from kbflow.logs import configure_logging
from kbflow.packets import Packet
from kbflow.scenario import Scenario, example_files
from kbflow.settings import Settings, installed_binary, workflow_id
from starter import inputs
from starter.cases import send_event, start_case
from starter.dev_server import DevServerConfig, SpawnedDevServer
from worker import build_worker

#: The converters compared; ``noop-codec`` (``--noop-codec``) has a payload codec that
#: changes nothing, to tell the SDK's cost of running any codec from encryption's.
MODES = ("plain", "encrypted")
NOOP_MODE = "noop-codec"
LABELS = {"plain": "plain", "encrypted": "encr", NOOP_MODE: "noop"}
#: Bounds for one case (a healthy case takes well under a second).
CASE_TIMEOUT = dt.timedelta(seconds=60)
IDLE_POLL = 0.005


@dataclass
class Timings:
    """Wall times in seconds, by case name and mode."""

    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, case: str, mode: str, value: float) -> None:
        self.seconds.setdefault((case, mode), []).append(value)

    def of(self, case: str, mode: str) -> list[float]:
        return self.seconds[(case, mode)]


def p90(values: list[float]) -> float:
    """The 90th percentile (inclusive method: within the sample's range)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


# ---- whole cases ----------------------------------------------------------------------

class NoopCodec(PayloadCodec):
    """A payload codec that returns its payloads as they are."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


async def _until_idle(client: Client, case_ref: str) -> None:
    """Poll until no activity and no workflow task of the case is pending. Asks the raw
    service: the time-skipping server keeps an unset search attribute as a typed null,
    which the SDK's ``describe()`` cannot decode."""
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id(case_ref)))
    deadline = time.monotonic() + CASE_TIMEOUT.total_seconds()
    while True:
        raw = await client.workflow_service.describe_workflow_execution(request)
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{case_ref}: not idle within {CASE_TIMEOUT}")
        await asyncio.sleep(IDLE_POLL)


async def run_case(client: Client, settings: Settings, scenario: Scenario) -> float:
    """Run ``scenario`` as a fresh case to its end; returns its wall time in seconds."""
    start = inputs.case_start(scenario.case)
    events = [(item.event, inputs.event_body(item.event, item.body))
              for item in scenario.events]
    began = time.perf_counter()
    await start_case(client, settings, start)
    for name, body in events:
        await send_event(client, start.case_ref, name, body, CASE_TIMEOUT)
    await _until_idle(client, start.case_ref)
    return time.perf_counter() - began


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def temporal(server: str, data_dir: Path) -> AsyncIterator[str]:
    """The time-skipping test server (in memory), or the dev server as ``kbflow server``
    runs it (SQLite in the data dir, output to ``temporal-server.log`` there); yields its
    address."""
    if server == "time-skipping":
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(installed_binary("temporal-test-server")))
        try:
            await search_attributes.register(env.client)  # it knows none
            yield env.client.service_client.config.target_host
        finally:
            await env.shutdown()
        return
    files = Settings(data_dir=data_dir)
    config = DevServerConfig(host="127.0.0.1", port=_free_port(), ui_port=_free_port(),
                             namespace="default", db_file=files.dev_server_db_path)
    dev_server = SpawnedDevServer(config, files.dev_server_log_path)
    try:
        address = f"127.0.0.1:{config.port}"
        await dev_server.wait_ready(Settings(temporal_address=address))
        yield address
    finally:
        dev_server.stop()


async def bench_cases(server: str, rounds: int, modes: tuple[str, ...], data_dir: Path,
                      progress: Callable[[str], None]) -> Timings:
    """Every example, ``rounds`` times per mode (plus one warm-up round), interleaved: the
    runs of one case follow each other, the order of the modes rotating by round."""
    scenarios = {path.stem: Scenario.load(path) for path in example_files()}
    keys = KeyStore.open(Settings(data_dir=data_dir))
    converters: dict[str, DataConverter] = {
        "plain": pydantic_data_converter,
        "encrypted": encrypted_data_converter(keys),
        NOOP_MODE: dataclasses.replace(pydantic_data_converter, payload_codec=NoopCodec()),
    }
    timings = Timings()
    async with AsyncExitStack() as stack:
        address = await stack.enter_async_context(temporal(server, data_dir))
        settings: dict[str, Settings] = {}
        clients: dict[str, Client] = {}
        store = OutboxStore(Settings(data_dir=data_dir), keys=keys)
        for mode in modes:
            settings[mode] = Settings(temporal_address=address, data_dir=data_dir,
                                      task_queue=f"bench-{mode}-{uuid.uuid4()}")
            clients[mode] = await Client.connect(
                address, data_converter=converters[mode],
                header_codec_behavior=HeaderCodecBehavior.CODEC)
            await stack.enter_async_context(
                build_worker(clients[mode], settings[mode].task_queue, store))
        for round_number in range(rounds + 1):
            shift = round_number % len(modes)
            order = modes[shift:] + modes[:shift]
            for name, scenario in scenarios.items():
                for mode in order:
                    seconds = await run_case(clients[mode], settings[mode], scenario)
                    if round_number > 0:  # round 0 warms up
                        timings.add(name, mode, seconds)
            progress(f"round {round_number}/{rounds} done"
                     + (" (warm-up)" if round_number == 0 else ""))
    return timings


# ---- the codec alone ------------------------------------------------------------------

def example_packets() -> list[Packet]:
    """Every packet the examples disclose, from the pure case state machine."""
    now = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    def new_id() -> str:
        return str(uuid.uuid4())

    packets: list[Packet] = []
    for path in example_files():
        scenario = Scenario.load(path)
        start: CaseStart = inputs.case_start(scenario.case)
        state, sent = CaseState.start(start, now, new_id)
        packets += sent
        for item in scenario.events:
            _, sent = state.apply(item.event, inputs.event_body(item.event, item.body),
                                  now, new_id)
            packets += sent
    return packets


async def _per_call(call: Callable[[], Awaitable[Any]], repeat: int = 7,
                    number: int = 1000) -> float:
    """Median over ``repeat`` batches of the mean seconds per call of ``number`` calls,
    after one batch of warm-up."""
    batches = []
    for _ in range(number):
        await call()
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(number):
            await call()
        batches.append((time.perf_counter() - began) / number)
    return statistics.median(batches)


@dataclass(frozen=True)
class CodecRow:
    """The codec on one packet's payload."""

    label: str
    plain_bytes: int
    encrypted_bytes: int
    codec_seconds: float  # encode + decode
    json_seconds: float  # the pydantic JSON round trip every payload costs anyway


async def bench_codec(data_dir: Path) -> list[CodecRow]:
    """The codec on the median and on the largest packet the examples disclose."""
    converter = pydantic_data_converter.payload_converter
    sized = sorted(((len(converter.to_payloads([p])[0].SerializeToString()), p)
                    for p in example_packets()), key=lambda pair: pair[0])
    keys = KeyStore.open(Settings(data_dir=data_dir))
    codec = CaseCodec(keys).with_context(WorkflowSerializationContext(
        namespace="default", workflow_id="kb-case-KB-2026-BENCH001"))
    rows = []
    for label, (size, packet) in (("median packet", sized[len(sized) // 2]),
                                  ("largest packet", sized[-1])):
        payload: Payload = converter.to_payloads([packet])[0]

        async def codec_round_trip(payload: Payload = payload) -> None:
            await codec.decode(await codec.encode([payload]))

        async def json_round_trip(packet: Packet = packet) -> None:
            converter.from_payloads(converter.to_payloads([packet]), [Packet])

        encrypted = (await codec.encode([payload]))[0]
        rows.append(CodecRow(label, size, len(encrypted.SerializeToString()),
                             await _per_call(codec_round_trip),
                             await _per_call(json_round_trip)))
    return rows


async def bench_new_key(data_dir: Path) -> float:
    """Seconds to create a new case's data key (generate, wrap, one SQLite write): the
    first payload of every case pays it once."""
    keys = KeyStore.open(Settings(data_dir=data_dir))
    scopes = (f"kb-case-KB-2026-NEWKEY{number:04d}" for number in itertools.count())

    async def new_key() -> None:
        keys.key_for_scope(next(scopes))

    return await _per_call(new_key, repeat=5, number=40)


# ---- report ---------------------------------------------------------------------------

def report(timings: Timings, modes: tuple[str, ...], codec_rows: list[CodecRow],
           new_key_seconds: float, server: str, rounds: int, elapsed: float) -> str:
    ms = 1000.0
    names = sorted({name for name, _ in timings.seconds})
    totals = {mode: [sum(values) for values in zip(*(timings.of(n, mode) for n in names),
                                                   strict=True)] for mode in modes}
    others = [mode for mode in modes if mode != "plain"]

    def row(label: str, series: dict[str, list[float]]) -> str:
        cells = [f"{statistics.median(series[m]) * ms:>9.0f} {p90(series[m]) * ms:>6.0f}"
                 for m in modes]
        ratios = [f"{statistics.median(series[m]) / statistics.median(series['plain']):>9.2f}"
                  for m in others]
        return f"{label:<24} " + " ".join(cells + ratios)

    lines = [
        f"kbflow encryption benchmark — {dt.date.today().isoformat()}, "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"{server} server, {rounds} round{'' if rounds == 1 else 's'}, {elapsed:.0f} s",
        "",
        "Whole cases (wall time per case, ms; start to end state, deliveries done)",
        f"{'case':<24} " + " ".join([f"{LABELS[m] + ' med':>9} {'p90':>6}" for m in modes]
                                    + [f"{LABELS[m] + '/plain':>9}" for m in others]),
    ]
    lines += [row(name, {m: timings.of(name, m) for m in modes}) for name in names]
    lines.append(row(f"all {len(names)} cases, per round", totals))
    lines += [
        "",
        "Codec alone (per payload, µs; median of 7 batches of 1000)",
        f"{'payload':<16} {'bytes':>6} {'encrypted':>9} {'encode+decode':>14} "
        f"{'JSON round trip':>16}",
    ]
    for codec_row in codec_rows:
        lines.append(f"{codec_row.label:<16} {codec_row.plain_bytes:>6} "
                     f"{codec_row.encrypted_bytes:>9} {codec_row.codec_seconds * 1e6:>14.1f} "
                     f"{codec_row.json_seconds * 1e6:>16.1f}")
    lines.append(f"a new case's data key (once per case): {new_key_seconds * 1e3:.2f} ms")
    return "\n".join(lines)


async def main_async(server: str, rounds: int, modes: tuple[str, ...]) -> str:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kbflow-bench-") as folder:
        data_dir = Path(folder)
        timings = await bench_cases(server, rounds, modes, data_dir,
                                    lambda line: print(line, file=sys.stderr, flush=True))
        codec_rows = await bench_codec(data_dir)
        new_key_seconds = await bench_new_key(data_dir)
    return report(timings, modes, codec_rows, new_key_seconds, server, rounds,
                  time.monotonic() - began)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.bench_encryption``."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_encryption",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20,
                        help="counted rounds of all examples per mode (default 20)")
    parser.add_argument("--server", choices=("time-skipping", "dev"), default="time-skipping",
                        help="the in-memory time-skipping test server (default), or the dev "
                             "server with SQLite (about 2.5 times slower a case)")
    parser.add_argument("--noop-codec", action="store_true",
                        help="also run every case with a codec that changes nothing (the "
                             "run takes half as long again)")
    args = parser.parse_args(argv)
    modes = (*MODES, NOOP_MODE) if args.noop_codec else MODES
    configure_logging(json=True, level=logging.WARNING)  # no line per delivered packet
    print(asyncio.run(main_async(args.server, args.rounds, modes)))


if __name__ == "__main__":
    main()
