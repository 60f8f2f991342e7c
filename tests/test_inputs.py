"""What the CLI reads (starter/inputs.py), found by a new user trying to break it: files
with a byte-order mark, duplicate keys or deep nesting, texts that NFC makes longer, the
fields a body must give when sent, sizes in the messages, refs typed loosely, the
retention timer's erasure reason, and a V-nummer given to two persons. Pure: no Temporal
(the CLI refuses before it would contact one)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kbflow import case_refs, reference
from kbflow.events import CaseStart
from kbflow.scenario import EXAMPLES_DIR, Scenario
from starter import inputs
from starter.cli import app
from tests import factories as f

HEAVY_NFC = "\U0001d160"  # MUSICAL SYMBOL EIGHTH NOTE: NFC turns it into 3 characters


def _case() -> dict[str, Any]:
    return dict(Scenario.load(EXAMPLES_DIR / "03_ots_advice_requested.json").case)


def test_a_text_that_nfc_makes_too_long_is_refused_at_the_edge() -> None:
    # Before: the CLI counted 4,000 characters and started the case; the workflow counted
    # 12,000 after NFC and failed its first task for good.
    case = _case()
    case["relaas"] = {**case["relaas"], "concerns": HEAVY_NFC * 4000}
    with pytest.raises(inputs.InputError) as refused:
        inputs.case_start(case)
    assert "relaas.concerns: must be a string of at most 4000 characters (it has 12000" in str(
        refused.value)
    assert HEAVY_NFC not in str(refused.value)


def test_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": 1}).encode())
    assert inputs.read_json_object(path) == {"a": 1}


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text('{"investigate": true, "investigate": false}', encoding="utf-8")
    with pytest.raises(inputs.InputError, match="the key 'investigate' appears twice"):
        inputs.read_json_object(path)


def test_a_key_that_is_no_field_name_is_never_echoed(tmp_path: Path) -> None:
    body = {"sender": "RVDK", "idempotency_key": f.new_key(), "weighing": {
        "necessary": True, "proportionate": True, "subsidiarity": True, "note": "n",
        "by": "RVDK-1"}, "Fenna": f.CHILD.name, "v_numbr": []}
    with pytest.raises(inputs.InputError) as refused:
        inputs.event_body("weighing", body)
    message = str(refused.value)
    assert "a key that is no field name (not shown)" in message
    assert "v_numbr: unknown field" in message  # a mistyped field is named
    assert "Fenna" not in message
    path = tmp_path / "body.json"
    path.write_text('{"Fenna": 1, "Fenna": 2}', encoding="utf-8")
    with pytest.raises(inputs.InputError, match="a key appears twice") as twice:
        inputs.read_json_object(path)
    assert "Fenna" not in str(twice.value)


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(inputs.InputError, match="nested too deeply"):
        inputs.read_json_object(path)


def test_a_ruling_without_its_date_is_refused_with_every_other_error() -> None:
    body = {"sender": "RVDK", "idempotency_key": f.new_key(), "measure": "ots",
            "summary": "s", "gi": {"name": "g", "contact": "c"}, "ots_months": "3"}
    with pytest.raises(inputs.InputError) as refused:
        inputs.event_body("court_ruling", body)
    message = str(refused.value)
    assert "ruled_on: required" in message and "ots_months: must be an integer" in message


def test_sizes_are_named_in_the_messages() -> None:
    body = {"sender": "RVDK", "idempotency_key": f.new_key(), "court_request": "ots",
            "goals": ["x" * 4001], "means": ["m"] * 31}
    with pytest.raises(inputs.InputError) as refused:
        inputs.event_body("investigation_result", body)
    assert "(it has 4001 characters)" in str(refused.value)
    assert "(it has 31 items)" in str(refused.value)


def test_the_schema_of_a_case_start_is_the_document_as_sent() -> None:
    schema = reference.json_schema("case")
    assert "case_ref" not in schema["properties"]  # kbflow makes it
    assert "idempotency_key" in schema["required"]
    for ruling in ("court_ruling", "extension_ruling"):
        ruling_schema = reference.json_schema(ruling)
        assert "ruled_on" in ruling_schema["required"]
        assert ruling_schema["properties"]["ruled_on"]["type"] == "string"


def test_a_ref_typed_in_lower_case_or_with_spaces_is_the_ref() -> None:
    ref = case_refs.new_case_ref(dt.date(2026, 12, 1))
    assert inputs.check_case_ref(f"  {ref.lower()} ") == ref


def test_the_retention_timers_reason_is_not_for_people(tmp_path: Path) -> None:
    ref = case_refs.new_case_ref(dt.date(2026, 12, 1))
    result = CliRunner().invoke(
        app, ["erase", ref, "--requested-by", "RvdK-privacy-01", "--reason", "retention-ended"],
        env={"KBFLOW_DATA_DIR": str(tmp_path), "TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert result.exit_code == 1
    assert "retention-ended is the retention timer's own reason" in result.output
    assert not list(tmp_path.iterdir())  # refused before anything was opened


def test_one_v_nummer_for_two_persons_is_implausible() -> None:
    start = f.case_start(persons=(
        f.CHILD.model_copy(update={"v_number": f.V_NUMBERS[0]}),
        f.PARENT.model_copy(update={"v_number": f.V_NUMBERS[0]})))
    assert isinstance(start, CaseStart)
    problem = start.implausibility(dt.date(2026, 12, 1))
    assert problem == ("persons[1].v_number: the same V-nummer as persons[0]'s; a V-nummer "
                       "names one person")
    assert f.V_NUMBERS[0] not in problem
