"""A query on an erased case (issue 7): the worker says so in one WARNING line.

``temporal workflow query --name status`` on an erased case's completed run makes a worker
replay its history, which needs the destroyed data key. The query fails (by design); the
worker logs one WARNING naming the case ref, no traceback and no ERROR
(``kbflow.erased_log``). What to use instead, as the README says: ``kbflow status``, or the
progress memo that ``temporal workflow describe`` prints in plaintext.

Real dev server, real worker (``build_worker`` on a runtime that forwards the SDK core's
lines, as ``kbflow worker`` runs it), JSON logging as the worker configures it; every line
the SDK and its core log is recorded before the filter, so the test knows when all of them
have come.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore, KeyUnavailable
from kbflow import erased_log, metrics
from kbflow.events import ErasureReason, ErasureRequest
from kbflow.logs import CORE_LOGGER, configure_logging
from kbflow.scenario import EXAMPLES_DIR
from kbflow.settings import Settings, installed_binary, workflow_id
from starter import inputs
from starter.cases import erase_running_case, start_case
from worker import build_worker, connect

#: The scenario's persons must not reach the log.
SCENARIO = EXAMPLES_DIR / "01_custody_termination.json"


class _Seen(logging.Filter):
    """Records every line of the SDK's and its core's loggers, before any other filter."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(logging.makeLogRecord(record.__dict__))
        return True


@pytest.fixture
def seen() -> Iterator[_Seen]:
    recorder = _Seen()
    loggers = [logging.getLogger(name) for name in (erased_log.SDK_WORKFLOW_LOGGER,
                                                     CORE_LOGGER)]
    for logger in loggers:
        logger.filters.insert(0, recorder)
    yield recorder
    for logger in loggers:
        logger.removeFilter(recorder)


async def _temporal(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    process = await asyncio.create_subprocess_exec(
        str(installed_binary("temporal")), *args, "--disable-config-file",
        "--disable-config-env", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def _until(condition: Any, what: str, bound: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not condition():
        assert loop.time() < deadline, f"{what}: not within {bound} s"
        await asyncio.sleep(0.1)


def _personal(document: Any) -> set[str]:
    keys = ("name", "address", "place_of_residence", "date_of_birth", "v_number")
    if isinstance(document, dict):
        return {v for k, v in document.items() if k in keys and isinstance(v, str)} | {
            value for v in document.values() for value in _personal(v)}
    if isinstance(document, list):
        return {value for v in document for value in _personal(v)}
    return set()


async def test_a_query_on_an_erased_case_logs_one_warning_and_describe_shows_where_it_stood(
        dev_server: WorkflowEnvironment, tmp_path: Path, seen: _Seen,
        restore_logging: None, capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    address = dev_server.client.service_client.config.target_host
    settings = Settings(temporal_address=address, namespace=dev_server.client.namespace,
                        task_queue=f"kbflow-erased-{uuid.uuid4()}", data_dir=tmp_path)
    keys = KeyStore.open(settings)
    client: Client = await connect(settings, keys, metrics.runtime(None))
    scenario = inputs.scenario(SCENARIO)
    start = inputs.case_start(scenario.case)
    wid = workflow_id(start.case_ref)
    async with build_worker(client, settings.task_queue, OutboxStore(settings, keys=keys)):
        await start_case(client, settings, start)
        await erase_running_case(client, start.case_ref, ErasureRequest(
            requested_by="ops-017", reason=ErasureReason.ART_17_REQUEST))
        handle = client.get_workflow_handle(wid)
        described = await handle.describe()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while described.status is not WorkflowExecutionStatus.COMPLETED:  # it ends now
            assert loop.time() < deadline, "the erased case's run did not complete"
            await asyncio.sleep(0.1)
            described = await handle.describe()
        capfd.readouterr()  # the lines of the case's run so far
        seen.records.clear()

        code, out, err = await _temporal("workflow", "query", "-w", wid, "--name", "status",
                                         "--address", address, "--output", "json")
        assert code == 1 and "querying workflow failed" in err  # the key is gone
        # Every line the SDK and its core write about it: the activation's failure, the
        # query job's, the core's two failed answers and its answer-not-found.
        await _until(lambda: len(seen.records) >= 5, "the SDK's lines of the query")
        raw = [record.getMessage() for record in seen.records]
        assert sum("Failed handling activation" in line for line in raw) == 2
        assert raw.count("Failing legacy query request") == 2
        assert raw.count("Query not found when attempting to respond to it") == 1

        # What the worker's log shows of them: one WARNING, the case ref, no traceback.
        lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()
                 if line.startswith("{")]
        assert [(line["level"], line["event"]) for line in lines] == [(
            "warning", f"case {start.case_ref}: erased: its history can no longer be "
                       f"decoded (run {described.run_id}); ask kbflow status")]
        assert "exception" not in lines[0]

        # Instead: the progress memo, in plaintext, where the case stood when erased.
        code, out, err = await _temporal("workflow", "describe", "-w", wid, "--address",
                                         address, "--output", "json")
        assert code == 0, err
        progress = _memo_progress(json.loads(out))
        assert progress["case_ref"] == start.case_ref
        assert (progress["phase"], progress["end_state"]) == ("closed", "erased")
        assert not [value for value in _personal(scenario.case) if value in out]


def _memo_progress(described: dict[str, Any]) -> dict[str, Any]:
    """The ``progress`` memo of ``temporal workflow describe --output json``: the CLI
    prints a plain JSON payload as its JSON (an encrypted one would be base64 with its
    ``binary/kbflow-aes256gcm`` metadata)."""
    progress: dict[str, Any] = described["workflowExecutionInfo"]["memo"]["fields"]["progress"]
    assert "metadata" not in progress
    return progress


def test_the_filter_passes_every_other_line(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an erased run's lines are changed: another failed activation keeps its
    ERROR and traceback, an unknown key names no case, a core line of another run
    passes, and a "query not found" that no dropped answer explains passes too."""
    keys = KeyStore.open(Settings(data_dir=tmp_path))
    log = erased_log.ErasedHistoryLog()
    log.add_keys(keys)

    def activation(error: BaseException, run_id: str) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            return logging.LogRecord(erased_log.SDK_WORKFLOW_LOGGER, logging.ERROR, __file__,
                                     1, "Failed handling activation on workflow with run "
                                     "ID %s", (run_id,), sys.exc_info())

    other = activation(ValueError("boom"), "run-1")
    assert log.filter(other) and other.levelno == logging.ERROR and other.exc_info
    missing = activation(RuntimeError("Missing initialize workflow, workflow could have "
                                      "unexpectedly been removed from cache"), "run-1")
    assert log.filter(missing)  # run-1 is not erased: kept
    query_not_found = logging.LogRecord(CORE_LOGGER, logging.WARNING, __file__, 1,
                                        "Query not found when attempting to respond to "
                                        "it", None, None)
    assert log.filter(query_not_found)

    keys.key_for_scope("kb-case-KB-2026-7K4M2XCH-R")
    key_id = keys.key_for_scope("kb-case-KB-2026-7K4M2XCH-R")[0]
    keys.destroy("kb-case-KB-2026-7K4M2XCH-R")
    with pytest.raises(KeyUnavailable) as destroyed:
        keys.key(key_id)
    erased = activation(destroyed.value, "run-2")
    assert log.filter(erased) and erased.levelno == logging.WARNING
    assert erased.getMessage().startswith("case KB-2026-7K4M2XCH-R: erased:")
    assert erased.exc_info is None
    unknown = activation(KeyUnavailable("data key dk-00ff: destroyed (case erased)"), "run-3")
    assert log.filter(unknown) and "case of key dk-00ff: erased" in unknown.getMessage()

    # What follows from the erased run is dropped: the query job's failure, then one
    # "query not found" for its second answer, within _STRAY_WITHIN seconds; no more.
    clock = [1000.0]
    monkeypatch.setattr(erased_log.time, "monotonic", lambda: clock[0])
    for _ in range(2):
        assert not log.filter(activation(RuntimeError(
            "Missing initialize workflow, workflow could have unexpectedly been removed "
            "from cache"), "run-2"))
    assert not log.filter(query_not_found)
    clock[0] += erased_log._STRAY_WITHIN + 1  # the second credit explains nothing now
    assert log.filter(query_not_found)
