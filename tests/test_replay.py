"""Replay every committed history (tests/histories/, recorded from the examples by
tests/record_histories.py) against today's CaseWorkflow with the worker's data converter.

A change that would break running cases fails here: guard it with ``workflow.patched``.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from encryption.codec import encrypted_data_converter
from encryption.keys import KeyStore
from kbflow.scenario import example_files
from workflows.case_workflow import CaseWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_example_has_a_recorded_history() -> None:
    assert {path.stem for path in HISTORIES} >= {path.stem for path in example_files()}


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_history_replays(path: Path, keys: KeyStore) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=encrypted_data_converter(keys))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
