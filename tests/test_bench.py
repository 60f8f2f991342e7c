"""The dev server ``kbflow server`` and the demo run keeps SQLite in WAL mode (issue 9,
point 5), and ``python -m bench.bench_vs_bare`` and ``python -m bench.bench_api`` run end
to end (tiny smoke runs: the benchmarks' figures themselves are measured by hand, never
asserted here)."""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from bench import bench_api, bench_vs_bare
from kbflow.settings import Settings
from starter.dev_server import DevServerConfig, SpawnedDevServer

#: SQLite's file header: bytes 18 and 19 are the write and read format versions, 1 for
#: the rollback journal, 2 for WAL (https://www.sqlite.org/fileformat.html#the_database_header).
_FORMAT_VERSIONS = slice(18, 20)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_kbflow_servers_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    # The config `kbflow server` and the demo build from the settings.
    settings = Settings(temporal_address=f"127.0.0.1:{_free_port()}", data_dir=tmp_path)
    config = DevServerConfig.from_settings(settings, ui_port=_free_port())
    command = config.command()
    assert command[command.index("journal_mode=wal") - 1] == "--sqlite-pragma"
    server = SpawnedDevServer(config, settings.dev_server_log_path)
    try:
        await server.wait_ready(settings)
        client = await Client.connect(settings.temporal_address)
        handle = await client.start_workflow(  # something to write; no worker polls
            "NoSuchWorkflow", id=f"wal-{uuid.uuid4()}", task_queue="nobody-polls")
        await handle.terminate()
        header = config.db_file.read_bytes()[:100]
        assert header[_FORMAT_VERSIONS] == b"\x02\x02", header[_FORMAT_VERSIONS]
        assert config.db_file.with_name(config.db_file.name + "-wal").exists()
    finally:
        server.stop()
    # WAL is recorded in the file: anyone opening it later finds it in WAL mode.
    with sqlite3.connect(config.db_file) as database:
        assert database.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_bench_vs_bare_runs_and_reports_every_figure(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     restore_logging: None) -> None:
    """A tiny run of the benchmark's one command: one case of one example per twin and
    round, a few idle cases, two OTS years. Its figures are noise at this size; what is
    asserted is that every figure is there, from real runs on both twins."""
    out = tmp_path / "bench.json"
    bench_vs_bare.main(["--cases", "2", "--concurrency", "2", "--rounds", "1",
                        "--examples", "06", "--idle-cases", "4", "--bounded-cache", "2",
                        "--years", "1,2", "--json-out", str(out), "--keep",
                        str(tmp_path / "data")])
    table = capsys.readouterr().out
    for heading in ("kbflow / bare", "worker CPU", "server CPU", "update p50", "events",
                    "Worker memory with idle open cases", "OTS years"):
        assert heading in table, heading
    document = json.loads(out.read_text())
    per_case = document["per_case"]["06_family_unknown"]
    assert set(per_case) == {"wall_ms", "update_p50_ms", "worker_cpu_ms", "server_cpu_ms",
                             "events", "kbytes"}
    for name, figure in per_case.items():
        assert figure["kbflow"] > 0 and figure["bare"] > 0, name
    # the twins run the same updates and activities; kbflow's run records more
    assert per_case["events"]["kbflow"] > per_case["events"]["bare"]
    assert [(idle["mode"], idle["cache"]) for idle in document["idle"]] == [
        ("kbflow", 4), ("kbflow", 2), ("bare", 4)]
    years = document["years"]
    assert [row["years"] for row in years] == [0, 1, 2]
    assert years[0]["events"] < years[1]["events"] < years[2]["events"]
    # the report reads the JSON back as the same tables
    assert bench_vs_bare.report(bench_vs_bare.from_json(document)) == table.rstrip("\n")


def test_bench_compares_with_sqlites_default_journal(tmp_path: Path) -> None:
    # `--journal delete`: kbflow server's dev server without its pragmas, nothing else.
    settings = Settings(data_dir=tmp_path)
    wal = DevServerConfig.from_settings(settings)
    delete = bench_vs_bare._JournalConfig(**dataclasses.asdict(wal))
    assert "--sqlite-pragma" not in delete.command()
    assert [arg for arg in wal.command() if arg not in ("--sqlite-pragma", "journal_mode=wal")
            ] == delete.command()


def test_bench_api_runs_both_paths_and_reports_the_ratio(
        capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    """A tiny run of ``python -m bench.bench_api``: two cases of one example per path and
    round, through ``kbflow api`` in its own process and directly. Its figures are noise
    at this size; asserted is that both paths ran every request and the ratio is there."""
    bench_api.main(["--cases", "2", "--concurrency", "2", "--rounds", "1", "--examples", "03",
                    "--json"])
    document = json.loads(capsys.readouterr().out)
    batches = document["batches"]
    assert {batch["path"] for batch in batches} == {"direct", "api"}
    requests = {batch["path"]: batch["requests"] for batch in batches}
    assert requests["api"] == requests["direct"] > 2  # a start and the example's events
    api_cpu = [batch["api_cpu_seconds"] for batch in batches if batch["path"] == "api"]
    assert api_cpu[0] > 0  # the API process did the work of its path
    ratio = document["summary"]["ratio"]["requests_per_second"]
    assert ratio == pytest.approx(document["summary"]["api"]["requests_per_second"]
                                  / document["summary"]["direct"]["requests_per_second"])
