"""Replay every committed history against today's CaseWorkflow with the worker's data
converter (and the fixtures' keys), so that a change which would break running cases fails.

- tests/histories/*.json: recorded from the examples by tests/record_histories.py, with
  encrypted payloads, running through retention and erasure.
- tests/histories/before-retention/*.json: recorded before ``RETENTION_PATCH``; cases that
  ended when they closed. They prove the patch keeps old runs replayable.
- tests/histories/ots-from-ruling-date/*.json: recorded with ``RULING_DATE_PATCH`` and
  ``PLAUSIBLE_START_PATCH`` (rulings carry their date; starts are checked), and the
  transition-table rules; the two sets above predate them. These and the *.json above
  run through retention inside ``CaseWorkflow``: they prove such runs finish the old way.
- tests/histories/progress-visible/*.json: recorded with ``PROGRESS_PATCH`` (memo and
  search attributes upserted; summaries, details and public query results in
  plaintext); every set above predates it. It too runs through retention the old way.
- tests/histories/closed-means-closed/*.json: recorded with ``CLOSED_PATCH`` (not
  ``PROGRESS_PATCH``): each case's run completes when it closes; ``retention/`` holds its
  ``RetentionWorkflow``'s history (kept, then erased by the retention timer).
- tests/histories/visible-and-closed/: recorded with both.
- tests/histories/continue-as-new/: recorded with ``CONTINUE_PATCH`` too, the newest set:
  a case's run continues as new when an extension ruling starts an OTS period; ``<example>.json`` is
  its first run, ``continued/<example>.<n>.json`` its run ``n``, each replayed on its own
  (a continued run from its carried input).

Guard a change that alters history with ``workflow.patched`` and keep both sets green.
"""

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from encryption.codec import ENCODING, encrypted_data_converter
from kbflow.public import PublicText
from kbflow.scenario import EXAMPLES_DIR, Scenario, example_files
from tests.record_histories import (
    CLOSED_DIR,
    CONTINUE_DIR,
    CONTINUED_SUBDIR,
    HISTORIES_DIR,
    LATEST_DIR,
    RETENTION_SUBDIR,
    RULING_DATE_DIR,
    VISIBLE_AND_CLOSED_DIR,
    fixture_keys,
)
from workflows.case_workflow import (
    CLOSED_PATCH,
    CONTINUE_PATCH,
    PLAUSIBLE_START_PATCH,
    PROGRESS_PATCH,
    RETENTION_PATCH,
    RULING_DATE_PATCH,
    CaseWorkflow,
)
from workflows.retention_workflow import RetentionWorkflow

CURRENT = sorted(HISTORIES_DIR.glob("*.json"))
BEFORE_RETENTION = sorted((HISTORIES_DIR / "before-retention").glob("*.json"))
RULING_DATES = sorted(RULING_DATE_DIR.glob("*.json"))
PROGRESS_VISIBLE = sorted((HISTORIES_DIR / PROGRESS_PATCH).glob("*.json"))
CLOSED = sorted(CLOSED_DIR.glob("*.json"))
RETENTIONS = sorted((CLOSED_DIR / RETENTION_SUBDIR).glob("*.json"))
VISIBLE_AND_CLOSED = sorted(VISIBLE_AND_CLOSED_DIR.glob("*.json"))
VISIBLE_AND_CLOSED_RETENTIONS = sorted((VISIBLE_AND_CLOSED_DIR / RETENTION_SUBDIR).glob("*.json"))
#: The continue-as-new set: first runs, continued runs, retention workflows.
CONTINUE_FIRST = sorted(CONTINUE_DIR.glob("*.json"))
CONTINUE_RUNS = sorted((CONTINUE_DIR / CONTINUED_SUBDIR).glob("*.json"))
CONTINUE_RETENTIONS = sorted((CONTINUE_DIR / RETENTION_SUBDIR).glob("*.json"))
OLD_STYLE = CURRENT + BEFORE_RETENTION + RULING_DATES + PROGRESS_VISIBLE
WITHOUT_PROGRESS = CURRENT + BEFORE_RETENTION + RULING_DATES + CLOSED + RETENTIONS
BEFORE_CONTINUE = (OLD_STYLE + CLOSED + RETENTIONS + VISIBLE_AND_CLOSED
                   + VISIBLE_AND_CLOSED_RETENTIONS)
ALL = BEFORE_CONTINUE + CONTINUE_FIRST + CONTINUE_RUNS + CONTINUE_RETENTIONS


def _id(path: Path) -> str:
    return str(path.relative_to(HISTORIES_DIR).with_suffix(""))


def _example(path: Path) -> str:
    """The example a history was recorded from (a continued run's: ``<example>.<n>``)."""
    return path.stem.partition(".")[0]


def test_every_example_has_recorded_histories() -> None:
    examples = {path.stem for path in example_files()}
    assert {path.stem for path in CURRENT} == examples
    assert {path.stem for path in BEFORE_RETENTION} == examples
    assert {path.stem for path in RULING_DATES} == examples
    assert {path.stem for path in PROGRESS_VISIBLE} == examples
    assert {path.stem for path in CLOSED} == examples
    assert {path.stem for path in RETENTIONS} == examples  # every example closes
    assert {path.stem for path in VISIBLE_AND_CLOSED} == examples
    assert {path.stem for path in VISIBLE_AND_CLOSED_RETENTIONS} == examples
    assert {path.stem for path in CONTINUE_FIRST} == examples
    assert {path.stem for path in CONTINUE_RETENTIONS} == examples
    assert LATEST_DIR == CONTINUE_DIR  # the newest set


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


@pytest.mark.parametrize("path", WITHOUT_PROGRESS, ids=[_id(p) for p in WITHOUT_PROGRESS])
def test_histories_before_progress_visible_have_no_upserts(path: Path) -> None:
    assert PROGRESS_PATCH not in _patches(path)
    events = _history(path)
    upserted = {name for event in events
                if "upsertWorkflowSearchAttributesEventAttributes" in event
                for name in event["upsertWorkflowSearchAttributesEventAttributes"]
                ["searchAttributes"]["indexedFields"]}
    assert upserted <= {"TemporalChangeVersion"}  # the patch markers' own
    assert not [e for e in events if "workflowPropertiesModifiedEventAttributes" in e]


@pytest.mark.parametrize("path", PROGRESS_VISIBLE + VISIBLE_AND_CLOSED,
                         ids=[_id(p) for p in PROGRESS_VISIBLE + VISIBLE_AND_CLOSED])
def test_progress_visible_histories_upsert_and_show_plaintext_progress(path: Path) -> None:
    events = _history(path)
    handed_over = path in VISIBLE_AND_CLOSED  # its erasure is in its retention's history
    assert {PROGRESS_PATCH, PLAUSIBLE_START_PATCH} <= _patches(path)
    assert (CLOSED_PATCH in _patches(path)) is handed_over
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
    assert ("erase: destroy the case key, remove its packets" in summaries) is not handed_over
    assert all(PublicText.parse(summary) for summary in summaries)


@pytest.mark.parametrize("path", ALL, ids=[_id(p) for p in ALL])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    replayer = Replayer(workflows=[CaseWorkflow, RetentionWorkflow],
                        data_converter=encrypted_data_converter(fixture_keys(replay=True)))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


ENCRYPTED = CURRENT + PROGRESS_VISIBLE + VISIBLE_AND_CLOSED + CONTINUE_FIRST + CONTINUE_RUNS


@pytest.mark.parametrize("path", ENCRYPTED, ids=[_id(p) for p in ENCRYPTED])
def test_current_histories_are_encrypted_and_patched(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    scenario = Scenario.load(EXAMPLES_DIR / f"{_example(path)}.json")
    names = [person["name"] for person in scenario.case["persons"]]
    assert names and not any(name in text for name in names)
    assert base64.b64encode(ENCODING).decode() in text  # metadata values are base64
    markers = [event["markerRecordedEventAttributes"]
               for event in json.loads(text)["events"] if "markerRecordedEventAttributes" in event]
    assert any(marker["markerName"] == "core_patch" for marker in markers)


@pytest.mark.parametrize("path", BEFORE_RETENTION, ids=[p.stem for p in BEFORE_RETENTION])
def test_old_histories_predate_the_patch(path: Path) -> None:
    assert '"markerName": "core_patch"' not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ALL, ids=[_id(p) for p in ALL])
def test_no_committed_history_holds_a_failed_workflow_task(path: Path) -> None:
    events = json.loads(path.read_text(encoding="utf-8"))["events"]
    assert events and not [e for e in events
                           if e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_FAILED"]


@pytest.mark.parametrize("path", OLD_STYLE, ids=[_id(p) for p in OLD_STYLE])
def test_old_style_histories_keep_the_case_in_its_own_run(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert CLOSED_PATCH not in _patches(path)
    assert "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED" not in text


@pytest.mark.parametrize("path", CLOSED + VISIBLE_AND_CLOSED,
                         ids=[_id(p) for p in CLOSED + VISIBLE_AND_CLOSED])
def test_closed_histories_hand_the_case_to_its_retention_workflow(path: Path) -> None:
    events = json.loads(path.read_text(encoding="utf-8"))["events"]
    assert {CLOSED_PATCH, PLAUSIBLE_START_PATCH} <= _patches(path)
    types = [event["eventType"] for event in events]
    # The run starts the child and waits until it has started, then completes.
    started = types.index("EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED")
    assert types.index("EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED") < started
    assert types[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" in types
    [initiated] = [e["startChildWorkflowExecutionInitiatedEventAttributes"] for e in events
                   if "startChildWorkflowExecutionInitiatedEventAttributes" in e]
    assert initiated["workflowId"].startswith("kb-retention-KB-2026-REPLAY")
    assert initiated["parentClosePolicy"] == "PARENT_CLOSE_POLICY_ABANDON"
    scenario = Scenario.load(EXAMPLES_DIR / f"{path.stem}.json")
    names = [person["name"] for person in scenario.case["persons"]]
    retention = (path.parent / RETENTION_SUBDIR / path.name).read_text(encoding="utf-8")
    assert not any(name in retention for name in names)
    retention_types = [e["eventType"] for e in json.loads(retention)["events"]]
    assert "EVENT_TYPE_TIMER_FIRED" in retention_types  # kept until the retention ended
    assert retention_types[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"


def test_the_longest_example_stays_far_from_the_history_limits() -> None:
    """README "Typical cases stay far from Temporal's history limits"."""
    lengths = {path.stem: len(json.loads(path.read_text(encoding="utf-8"))["events"])
               for path in VISIBLE_AND_CLOSED}
    assert max(lengths, key=lengths.__getitem__) == "04_ots_extended"
    assert lengths["04_ots_extended"] == 235
    assert {len(json.loads(path.read_text(encoding="utf-8"))["events"])
            for path in VISIBLE_AND_CLOSED_RETENTIONS} == {16}


# ---- the continue-as-new set ------------------------------------------------------------

def _runs(example: str) -> list[Path]:
    """Every run of ``example``'s case in the continue-as-new set, in order."""
    continued = sorted((CONTINUE_DIR / CONTINUED_SUBDIR).glob(f"{example}.*.json"),
                       key=lambda path: int(path.suffixes[-2].lstrip(".")))
    return [CONTINUE_DIR / f"{example}.json", *continued]


def test_the_continue_as_new_set_holds_runs_that_continued() -> None:
    """An extension ruling that starts a new OTS period starts a new run: example 04's.
    The other examples stay in one run."""
    runs = {path.stem: len(_runs(path.stem)) for path in CONTINUE_FIRST}
    assert runs == {"01_custody_termination": 1, "02_ots_advice_available": 1,
                    "03_ots_advice_requested": 1, "04_ots_extended": 2,
                    "05_warm_handover": 1, "06_family_unknown": 1, "07_urgent_report": 1}


@pytest.mark.parametrize("example", [p.stem for p in CONTINUE_FIRST])
def test_continued_runs_form_one_chain_and_hand_over_at_the_end(example: str) -> None:
    runs = [_history(path) for path in _runs(example)]
    for earlier, later in itertools.pairwise(runs):
        continued = earlier[-1]["workflowExecutionContinuedAsNewEventAttributes"]
        started = later[0]["workflowExecutionStartedEventAttributes"]
        assert started["continuedExecutionRunId"] == (
            earlier[0]["workflowExecutionStartedEventAttributes"]["originalExecutionRunId"])
        assert continued["newExecutionRunId"] == started["originalExecutionRunId"]
        # The progress goes along, in plaintext; the carried case is encrypted.
        assert "progress" in started["memo"]["fields"]
        [carried] = started["input"]["payloads"]
        assert carried["metadata"]["encoding"] == base64.b64encode(ENCODING).decode()
        # Every run shows the phase: a new run starts from the carried search attributes.
        assert "KbflowPhase" in started["searchAttributes"]["indexedFields"]
    last = runs[-1]
    types = [event["eventType"] for event in last]
    assert types[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    assert "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED" in types
    for history in runs[:-1]:
        assert history[-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    scenario = Scenario.load(EXAMPLES_DIR / f"{example}.json")
    texts = [path.read_text(encoding="utf-8") for path in _runs(example)]
    names = [person["name"] for person in scenario.case["persons"]]
    assert not any(name in text for name in names for text in texts)


@pytest.mark.parametrize("path", CONTINUE_FIRST + CONTINUE_RUNS,
                         ids=[_id(p) for p in CONTINUE_FIRST + CONTINUE_RUNS])
def test_the_continue_as_new_set_is_patched_and_the_older_ones_are_not(path: Path) -> None:
    assert {CONTINUE_PATCH, PROGRESS_PATCH} <= _patches(path)
    # Decided as the case closes: only in the run that hands it to its retention.
    assert (CLOSED_PATCH in _patches(path)) is (path == _runs(_example(path))[-1])
    if path in CONTINUE_FIRST:
        assert PLAUSIBLE_START_PATCH in _patches(path)
    else:  # a continued run does not check its start again
        assert PLAUSIBLE_START_PATCH not in _patches(path)


@pytest.mark.parametrize("path", BEFORE_CONTINUE, ids=[_id(p) for p in BEFORE_CONTINUE])
def test_histories_before_continue_as_new_never_continue(path: Path) -> None:
    assert CONTINUE_PATCH not in _patches(path)
    assert "CONTINUED_AS_NEW" not in path.read_text(encoding="utf-8")
