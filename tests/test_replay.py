"""Replay every committed history against today's CaseWorkflow with the worker's data
converter (and the fixtures' keys), so that a change which would break running cases fails.

- tests/histories/*.json: recorded from the examples by tests/record_histories.py, with
  encrypted payloads, running through retention and erasure.
- tests/histories/before-retention/*.json: recorded before ``RETENTION_PATCH``; cases that
  ended when they closed. They prove the patch keeps old runs replayable.
- tests/histories/ots-from-ruling-date/*.json: recorded with ``RULING_DATE_PATCH`` and
  ``PLAUSIBLE_START_PATCH`` (rulings carry their date; starts are checked), and the
  transition-table rules; the two sets above predate them.
- tests/histories/progress-visible/*.json: recorded with ``PROGRESS_PATCH`` (memo and
  search attributes upserted; summaries, details and public query results in
  plaintext); every set above predates it.

Guard a change that alters history with ``workflow.patched`` and keep both sets green.
"""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from encryption.codec import ENCODING, encrypted_data_converter
from kbflow.public import PublicText
from kbflow.scenario import EXAMPLES_DIR, Scenario, example_files
from tests.record_histories import HISTORIES_DIR, LATEST_DIR, fixture_keys
from workflows.case_workflow import (
    PLAUSIBLE_START_PATCH,
    PROGRESS_PATCH,
    RETENTION_PATCH,
    RULING_DATE_PATCH,
    CaseWorkflow,
)

CURRENT = sorted(HISTORIES_DIR.glob("*.json"))
BEFORE_RETENTION = sorted((HISTORIES_DIR / "before-retention").glob("*.json"))
RULING_DATES = sorted(LATEST_DIR.glob("*.json"))
PROGRESS_VISIBLE = sorted((HISTORIES_DIR / PROGRESS_PATCH).glob("*.json"))
ALL = CURRENT + BEFORE_RETENTION + RULING_DATES + PROGRESS_VISIBLE


def test_every_example_has_recorded_histories() -> None:
    examples = {path.stem for path in example_files()}
    assert {path.stem for path in CURRENT} == examples
    assert {path.stem for path in BEFORE_RETENTION} == examples
    assert {path.stem for path in RULING_DATES} == examples
    assert {path.stem for path in PROGRESS_VISIBLE} == examples


def _patches(path: Path) -> set[str]:
    """The ids of the ``workflow.patched`` markers in a recorded history."""
    found = set()
    for event in json.loads(path.read_text(encoding="utf-8"))["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_patch":
            data = marker["details"]["patch-data"]["payloads"][0]["data"]
            found.add(json.loads(base64.b64decode(data))["id"])
    return found


@pytest.mark.parametrize("path", RULING_DATES, ids=[p.stem for p in RULING_DATES])
def test_newest_histories_hold_the_newest_patches(path: Path) -> None:
    patches = _patches(path)
    assert {PLAUSIBLE_START_PATCH, RETENTION_PATCH} <= patches
    scenario = Scenario.load(EXAMPLES_DIR / f"{path.stem}.json")
    if any(item.event in ("court_ruling", "extension_ruling") for item in scenario.events):
        assert RULING_DATE_PATCH in patches


@pytest.mark.parametrize("path", CURRENT + BEFORE_RETENTION,
                         ids=[f"{p.parent.name}/{p.stem}" for p in CURRENT + BEFORE_RETENTION])
def test_older_histories_predate_ruling_dates(path: Path) -> None:
    assert not _patches(path) & {RULING_DATE_PATCH, PLAUSIBLE_START_PATCH}


def _history(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["events"]
    return events


@pytest.mark.parametrize("path", CURRENT + BEFORE_RETENTION + RULING_DATES,
                         ids=[f"{p.parent.name}/{p.stem}"
                              for p in CURRENT + BEFORE_RETENTION + RULING_DATES])
def test_histories_before_progress_visible_have_no_upserts(path: Path) -> None:
    assert PROGRESS_PATCH not in _patches(path)
    events = _history(path)
    upserted = {name for event in events
                if "upsertWorkflowSearchAttributesEventAttributes" in event
                for name in event["upsertWorkflowSearchAttributesEventAttributes"]
                ["searchAttributes"]["indexedFields"]}
    assert upserted <= {"TemporalChangeVersion"}  # the patch markers' own
    assert not [e for e in events if "workflowPropertiesModifiedEventAttributes" in e]


@pytest.mark.parametrize("path", PROGRESS_VISIBLE, ids=[p.stem for p in PROGRESS_VISIBLE])
def test_progress_visible_histories_upsert_and_show_plaintext_progress(path: Path) -> None:
    events = _history(path)
    assert {PROGRESS_PATCH, PLAUSIBLE_START_PATCH, RETENTION_PATCH} <= _patches(path)
    upserts = [fields for event in events
               if "upsertWorkflowSearchAttributesEventAttributes" in event
               for fields in [event["upsertWorkflowSearchAttributesEventAttributes"]
                              ["searchAttributes"]["indexedFields"]]
               if "KbflowPhase" in fields]
    memos = [event["workflowPropertiesModifiedEventAttributes"]["upsertedMemo"]["fields"]
             for event in events if "workflowPropertiesModifiedEventAttributes" in event]
    assert upserts and memos
    phases = [json.loads(base64.b64decode(fields["KbflowPhase"]["data"])) for fields in upserts]
    assert phases[-1] == "closed" and "closed" not in phases[:-1]
    last = json.loads(base64.b64decode(memos[-1]["progress"]["data"]))  # plaintext JSON
    assert last["phase"] == "closed" and last["end_state"]
    summaries = [json.loads(base64.b64decode(event["userMetadata"]["summary"]["data"]))
                 for event in events if "summary" in event.get("userMetadata", {})]
    assert summaries[0].startswith("step 1: ") and summaries[0].endswith(" to RVDK")
    assert "erase: destroy the case key, remove its packets" in summaries
    assert all(PublicText.parse(summary) for summary in summaries)


@pytest.mark.parametrize("path", ALL, ids=[f"{p.parent.name}/{p.stem}" for p in ALL])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    replayer = Replayer(workflows=[CaseWorkflow],
                        data_converter=encrypted_data_converter(fixture_keys()))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("path", CURRENT + PROGRESS_VISIBLE,
                         ids=[f"{p.parent.name}/{p.stem}" for p in CURRENT + PROGRESS_VISIBLE])
def test_current_histories_are_encrypted_and_patched(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    scenario = Scenario.load(EXAMPLES_DIR / f"{path.stem}.json")
    names = [person["name"] for person in scenario.case["persons"]]
    assert names and not any(name in text for name in names)
    assert base64.b64encode(ENCODING).decode() in text  # metadata values are base64
    markers = [event["markerRecordedEventAttributes"]
               for event in json.loads(text)["events"] if "markerRecordedEventAttributes" in event]
    assert any(marker["markerName"] == "core_patch" for marker in markers)


@pytest.mark.parametrize("path", BEFORE_RETENTION, ids=[p.stem for p in BEFORE_RETENTION])
def test_old_histories_predate_the_patch(path: Path) -> None:
    assert '"markerName": "core_patch"' not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ALL, ids=[f"{p.parent.name}/{p.stem}" for p in ALL])
def test_no_committed_history_holds_a_failed_workflow_task(path: Path) -> None:
    events = json.loads(path.read_text(encoding="utf-8"))["events"]
    assert events and not [e for e in events
                           if e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_FAILED"]
