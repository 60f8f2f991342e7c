"""A retention workflow's ``status`` query is readable without any codec (issue 7).

``RetentionStatus`` is a ``kbflow.public.Public`` model (ids, dates, the fixed
``ErasureReason``), so kbflow's codec leaves its payload in plaintext, and ``temporal
workflow query --name status`` on ``kb-retention-<case ref>`` prints readable JSON, before
and after the erasure. A query changes no history: no patch, committed histories replay
(``tests/test_replay.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from encryption.codec import ENCODING, CaseCodec, PublicPayloadConverter
from encryption.keys import KeyStore
from kbflow.events import ErasureReason, ErasureRequest
from kbflow.public import PersonalFieldError, Public
from kbflow.retention import (
    RetentionStatus,
    erasure_reason,
    retention_reason,
    retention_workflow_id,
)
from kbflow.settings import Settings, installed_binary
from starter.cases import erase_running_case
from tests.test_case_workflow import start_case
from tests.test_retention import close, until_status
from worker import build_worker, connect

REF = "KB-2026-7K4M2XCH-R"
CLOSED = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_the_reason_is_one_of_the_fixed_list() -> None:
    assert erasure_reason("art-17-request") is ErasureReason.ART_17_REQUEST
    assert erasure_reason(retention_reason(dt.timedelta(days=365))) is (
        ErasureReason.RETENTION_ENDED)
    assert erasure_reason("Fenna Fictief asked") is None  # never a free text
    with pytest.raises(PersonalFieldError, match="str may hold personal data"):
        class _WithText(RetentionStatus):  # a free-text field cannot be added
            note: str


async def test_the_codec_leaves_a_retention_status_in_plaintext(tmp_path: Path) -> None:
    status = RetentionStatus(case_ref=REF, closed_at=CLOSED, erase_due=CLOSED,
                             erased_at=CLOSED, reason=ErasureReason.ART_17_REQUEST)
    assert isinstance(status, Public)
    [payload] = PublicPayloadConverter().to_payloads([status])
    [encoded] = await CaseCodec(KeyStore.open(Settings(data_dir=tmp_path)),
                                f"kb-retention-{REF}").encode([payload])
    assert encoded.metadata["encoding"] == b"json/plain" != ENCODING
    assert json.loads(encoded.data)["reason"] == "art-17-request"


async def _status_query(address: str, wid: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    process = await asyncio.create_subprocess_exec(
        str(installed_binary("temporal")), "workflow", "query", "-w", wid, "--name",
        "status", "--address", address, "--output", "json", "--disable-config-file",
        "--disable-config-env", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode(errors="replace")
    answer: dict[str, Any] = json.loads(out)["queryResult"][0]
    return answer


async def test_temporal_workflow_query_status_of_a_retention_workflow_is_readable(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    address = dev_server.client.service_client.config.target_host
    settings = Settings(temporal_address=address, namespace=dev_server.client.namespace,
                        task_queue=f"kbflow-kept-{uuid.uuid4()}", data_dir=tmp_path)
    keys = KeyStore.open(settings)
    client = await connect(settings, keys)
    async with build_worker(client, settings.task_queue, OutboxStore(settings, keys=keys)):
        handle = await start_case(client, settings.task_queue)
        await close(handle)
        await until_status(handle, WorkflowExecutionStatus.COMPLETED)
        ref = handle.id.removeprefix("kb-case-")
        wid = retention_workflow_id(ref)
        kept = await _status_query(address, wid)  # no codec, no keys
        assert kept["case_ref"] == ref and kept["erased_at"] is None
        assert kept["reason"] is None and kept["erase_due"] > kept["closed_at"]
        await erase_running_case(client, ref, ErasureRequest(
            requested_by="RvdK-privacy-01", reason=ErasureReason.COURT_ORDER))
        retention = client.get_workflow_handle(wid)
        await until_status(retention, WorkflowExecutionStatus.COMPLETED)
        # A completed run: the worker replays it (its input holds no personal data, but
        # is encrypted under the retention workflow's own key, which erasure leaves).
        erased = await _status_query(address, wid)
    assert erased["case_ref"] == ref and erased["erased_at"] is not None
    assert erased["reason"] == "court-order"
