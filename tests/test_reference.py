"""Event bodies a user can write (issue 6, finding 9): ``kbflow schema``, ``kbflow template``,
the README's generated event reference, and validation errors in JSON words.

Pure: the state machine on a fixed clock, the CLI through typer's ``CliRunner`` (every
command here fails or answers before Temporal is contacted).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import ErrorDetails
from typer.testing import CliRunner

from kbflow import reference
from kbflow.case import RULES, CaseState, Phase
from kbflow.errors import describe, describe_error, json_path
from kbflow.events import MADE_BY_KBFLOW, REQUIRED_WHEN_SENT, CaseStart, ResidenceInformation
from kbflow.items import CourtRequest, Measure
from kbflow.scenario import Scenario, example_files
from starter import inputs
from starter.cli import app
from tests import factories as f

EVENTS = {event.value: rule for event, rule in RULES.items()}

README = Path(__file__).resolve().parent.parent / "README.md"
#: The case is reported at the start of today, so a template's ruling (dated today) lies
#: between the report and the event.
T0 = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
#: Words of Python, not JSON, that a user must never read in an error.
PYTHON_WORDS = ("tuple", "dictionary", "instance of", "Input should", "Field required",
                "PersonVNumber", "Weighing", "DepartureProcedure", "GiDetails",
                "VvApplication", "ResidenceInformation", "CaseStart", "PersonInput")


# ---- templates -----------------------------------------------------------------------------

#: Events that bring a fresh case (after its step-1 report) to where each event is allowed,
#: built with the test factories, independently of the examples the templates come from.
PHASE_OF: dict[str, Callable[[], list[f.Ev]]] = {
    "weighing": lambda: [],
    "announce_investigation": lambda: [],
    "residence_information": lambda: [f.announce()],
    "investigation_decision": lambda: [f.announce(), f.residence_ind(), f.residence_dtv()],
    "application_rejected": f.to_investigating,
    "investigation_result": f.to_investigating,
    "court_ruling": lambda: f.to_awaiting_ruling(CourtRequest.OTS),
    "advice_availability_request": f.to_ots,
    "advice_availability": lambda: [*f.to_ots(), f.availability_request()],
    "advice_request": lambda: [*f.to_ots(), f.availability_request(), f.availability(False)],
    "advice": lambda: [*f.to_ots(), f.availability_request(), f.availability(False),
                       f.advice_request()],
    "extension_ruling": f.to_ots,
    "extension_advice_request": lambda: [*f.to_ots(), f.extension(True)],
    "extension_advice": lambda: [*f.to_ots(), f.extension(True), f.extension_advice_request()],
    "warm_handover": f.to_ots,
    "v_number_correction": lambda: [f.announce(), f.residence_ind()],
}


def test_every_event_has_a_phase_here() -> None:
    assert set(PHASE_OF) == set(EVENTS)


def case_in_phase(events: list[f.Ev]) -> tuple[CaseState, dt.datetime]:
    ids = f.Ids()
    now = T0
    state, _ = CaseState.start(f.case_start(), now, ids)
    for ev in events:
        now += dt.timedelta(minutes=1)
        state.apply(ev.name, ev.event, now, ids)
    return state, now + dt.timedelta(minutes=1)


@pytest.mark.parametrize("name", list(EVENTS))
def test_template_is_accepted_as_is_in_its_phase(name: str) -> None:
    body = reference.template(name)
    event = EVENTS[name].model.model_validate(body)
    state, now = case_in_phase(PHASE_OF[name]())
    assert state.phase is not Phase.CLOSED
    assert state.admit(name, event, now) is None  # raises EventRefused if not accepted


def test_case_template_starts_a_case() -> None:
    body = reference.template("case")
    start = inputs.case_start(body)  # generates a case ref
    state, packets = CaseState.start(start, T0, f.Ids())
    assert state.phase is Phase.REPORTED
    assert packets


def test_templates_come_from_the_examples_except_the_curated_few() -> None:
    """Every event has a body; only events that no example sends are curated."""
    from_examples = {entry.event for path in example_files()
                     for entry in Scenario.load(path).events}
    assert set(reference.example_bodies()) == {"case", *EVENTS}
    assert set(reference._CURATED) == set(EVENTS) - from_examples


def test_template_has_a_fresh_idempotency_key() -> None:
    first, second = reference.template("advice"), reference.template("advice")
    assert first["idempotency_key"] != second["idempotency_key"]
    assert re.fullmatch(r"dtv-advice-[0-9a-f]{8}", first["idempotency_key"])
    assert reference.template("advice", token="0001")["idempotency_key"] == "dtv-advice-0001"
    # the examples are not changed by handing out a template
    assert reference.example_bodies()["advice"]["idempotency_key"] != first["idempotency_key"]


def test_template_shows_the_fullest_example() -> None:
    """Of several example bodies the one with most fields: an OTS ruling (gi, months),
    IND's residence information (with V-nummers)."""
    assert reference.template("court_ruling")["measure"] == Measure.OTS.value
    assert "v_number" in reference.template("residence_information")


def test_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(reference.UnknownEventError, match="known: case, weighing"):
        reference.template("advies")
    with pytest.raises(reference.UnknownEventError):
        reference.json_schema("advies")


# ---- schemas -------------------------------------------------------------------------------


def _definitions(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("body", schema), *schema.get("$defs", {}).items()]


@pytest.mark.parametrize("name", reference.names())
def test_schema_is_the_models_with_every_field_described(name: str) -> None:
    schema = reference.json_schema(name)
    model = reference.model_of(name)
    # The body as sent: the model's fields but those kbflow makes; its required ones and
    # those required when sent.
    made = set(MADE_BY_KBFLOW.get(name, ()))
    assert set(schema["properties"]) == set(model.model_fields) - made
    assert set(schema["required"]) == (set(model.model_json_schema()["required"]) - made
                                       | set(REQUIRED_WHEN_SENT.get(name, ())))
    undescribed = [f"{where}.{field}" for where, definition in _definitions(schema)
                   for field, prop in definition.get("properties", {}).items()
                   if not prop.get("description")]
    assert undescribed == []


def _unbounded(schema: dict[str, Any]) -> list[str]:
    found = []
    for where, definition in _definitions(schema):
        for field, prop in definition.get("properties", {}).items():
            options = prop.get("anyOf", [prop])
            for option in options:
                if option.get("type") == "array" and "maxItems" not in option:
                    found.append(f"{where}.{field}")
                if (option.get("type") == "string" and "maxLength" not in option
                        and "pattern" not in option and "enum" not in option
                        and "format" not in option):
                    found.append(f"{where}.{field}")
    return found


def test_every_list_and_text_has_a_maximum() -> None:
    assert {name: _unbounded(reference.json_schema(name)) for name in reference.names()
            if _unbounded(reference.json_schema(name))} == {}


def test_reference_shows_the_limits_the_model_has() -> None:
    class Limited(BaseModel):
        notes: tuple[str, ...] = Field(max_length=7, description="Notes")
        code: str = Field(max_length=12, description="A code")

    objects = reference._Objects()
    schema = Limited.model_json_schema()
    rows = "\n".join(reference._field_rows(schema, objects))
    assert "at most 7 items" in rows
    assert "at most 12 characters" in rows


def test_cli_schema_prints_the_schema() -> None:
    result = CliRunner().invoke(app, ["schema", "residence_information"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == reference.json_schema("residence_information")


def test_cli_template_prints_an_accepted_body() -> None:
    result = CliRunner().invoke(app, ["template", "court_ruling"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    inputs.event_body("court_ruling", body)  # raises InputError if not valid


def test_cli_schema_of_unknown_event_is_one_line_exit_1() -> None:
    result = CliRunner().invoke(app, ["schema", "advies"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "unknown event 'advies'" in result.stderr


# ---- the README ----------------------------------------------------------------------------


def test_readme_reference_is_generated_from_the_models() -> None:
    """Fails when README.md's generated regions differ from the models: run `make docs`."""
    text = README.read_text(encoding="utf-8")
    assert reference.render_readme(text) == text, "README.md is out of date: run `make docs`"


def test_readme_check_catches_drift(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    stale = tmp_path / "README.md"
    row = "(#event-advice_request) | IND |"
    assert row in text
    stale.write_text(text.replace(row, "(#event-advice_request) | DTV |"), encoding="utf-8")
    assert reference.main(["--check", str(stale)]) == 1
    assert reference.main(["--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert reference.main(["--check", str(stale)]) == 0


def test_readme_without_markers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no region 'events'"):
        reference.render_readme("# a README without markers\n")


def test_reference_spells_out_every_event_and_nested_object() -> None:
    text = reference.field_reference()
    for name in EVENTS:
        assert f"#### Event `{name}`" in text
    for label in ("weighing", "persons[]", "v_number[]", "gi", "vv_application",
                  "departure_procedure", "relaas"):
        assert text.count(f"#### Object `{label}`") == 1
    assert "[object `v_number[]`](#object-v_number)" in text


def test_events_table_reads_senders_and_steps_from_the_event_list() -> None:
    table = reference.events_table()
    for name, spec in EVENTS.items():
        senders = ", ".join(p.value for p in spec.senders)
        step = str(int(spec.step)) if spec.step is not None else "-"
        assert f"| [`{name}`](#event-{name}) | {senders} | {step} |" in table


# ---- errors in JSON words ------------------------------------------------------------------


def _errors(model: type[BaseModel], body: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return caught.value


def test_five_mistakes_one_message_in_json_words() -> None:
    body = reference.template("residence_information")
    body["known_to_sender"] = "maybe"                          # 1 not a boolean
    body["v_number"] = [{"person": "first", "v_number": "0000000011"}, 7]  # 2, 3
    body["departure_procedure"] = ["travel"]                   # 4 not an object
    body["residence_status"] = "x" * 201                        # 5 too long
    body["remarks"] = "Fenna Fictief"                          # 6 unknown field
    del body["sender"]                                          # 7 required
    message = inputs.describe(_errors(ResidenceInformation, body), ResidenceInformation)
    assert message.startswith("7 errors: ")
    for part in (
        "sender: required",
        "known_to_sender: must be true or false",
        "v_number[0].person: must be an integer",
        "v_number[1]: must be an object with fields person, v_number",
        "departure_procedure: must be an object with fields travel_documents, "
        "departure_feasible_short_term",
        "residence_status: must be a string of at most 200 characters",
        "remarks: unknown field",
    ):
        assert part in message
    assert [word for word in PYTHON_WORDS if word in message] == []
    assert "maybe" not in message and "first" not in message
    assert f.leaked(message) == []


def test_cli_event_lists_every_error_before_contacting_temporal(tmp_path: Path) -> None:
    body = reference.template("application_rejected")
    body["dossier_documents"] = "beschikking-fictief-001.pdf"
    body["decision"] = "refusal"
    body["weighing"] = {"necessary": True}
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    result = CliRunner().invoke(app, ["event", "KB-2026-T0000AAAA", "application_rejected",
                                      str(path)])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line
    assert "dossier_documents: must be an array" in line
    assert 'decision: must be one of "rejection", "withdrawal"' in line
    assert "weighing.note: required" in line
    assert "ApplicationRejected" not in line and "fictief-001" not in line


#: (model, body, the expected reason in JSON words) for each kind of pydantic error.
ERROR_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("investigation_decision", {"investigate": 3}, "investigate: must be true or false"),
    ("court_ruling", {"ots_months": "twelve"}, "ots_months: must be an integer"),
    ("court_ruling", {"ots_months": 13}, "ots_months: must be at most 12"),
    ("court_ruling", {"ots_months": 0}, "ots_months: must be at least 1"),
    ("court_ruling", {"ots_months": 2.5}, "ots_months: must be an integer"),
    ("advice", {"transferability": "x" * 4001},
     "transferability: must be a string of at most 4000 characters"),
    ("advice", {"transferability": "  "}, "transferability: must be a non-empty string"),
    ("advice", {"transferability": 5}, "transferability: must be a string"),
    ("advice", {"idempotency_key": "short"},
     "idempotency_key: must be a string matching ^[A-Za-z0-9._:-]{8,80}$"),
    ("advice", {"sender": "RvdK"}, 'sender: must be one of "RVDK", "IND"'),
    ("advice", {"verdict": "ok"}, "verdict: unknown field"),
    ("advice_request", {"vv_application": "see INDIGO"},
     "vv_application: must be an object with fields kind, filed_on, document"),
    ("advice_request", {"vv_application": {"kind": "first", "filed_on": "1 Oct 2026",
                                           "document": "INDIGO ref"}},
     "vv_application.filed_on: must be a date YYYY-MM-DD"),
    ("application_rejected", {"dossier_documents": []},
     "dossier_documents: must be an array of at least 1 item"),
    ("application_rejected", {"dossier_documents": {"a": "b"}},
     "dossier_documents: must be an array"),
    ("investigation_result", {"court_request": "ots", "goals": None},
     "goals and means: required when a measure is requested"),
]


@pytest.mark.parametrize(("name", "change", "expected"), ERROR_CASES)
def test_each_kind_of_error_in_json_words(name: str, change: dict[str, Any],
                                          expected: str) -> None:
    model = EVENTS[name].model
    body = {**reference.template(name), **change}
    message = describe(_errors(model, body))  # the model found by the error's title
    assert expected in message
    assert [word for word in PYTHON_WORDS if word in message] == []


def test_case_start_errors_in_json_words() -> None:
    body = reference.template("case")
    body["persons"][0]["date_of_birth"] = "14-06-2017"
    body["persons"][1]["role"] = "uncle"
    body["weighing"] = None
    with pytest.raises(inputs.InputError) as caught:
        inputs.case_start(body, source="case.json")
    message = str(caught.value)
    assert message.startswith("case.json: invalid case start: 3 errors: ")
    assert "persons[0].date_of_birth: must be a date YYYY-MM-DD" in message
    assert 'persons[1].role: must be one of "child", "parent", "carer"' in message
    assert ("weighing: must be an object with fields necessary, proportionate, "
            "subsidiarity, note, by") in message
    assert "at least 1 item" not in message  # pydantic counts only the valid persons
    assert "CaseStart" not in message and "14-06-2017" not in message


def test_json_path() -> None:
    assert json_path(("v_number", 0, "person")) == "v_number[0].person"
    assert json_path(("persons", 2, "function-after[_check()]", "name")) == "persons[2].name"
    assert json_path(()) == ""


def test_unknown_error_kind_is_cleaned_of_python_words() -> None:
    error: ErrorDetails = {
        "type": "some_future_type", "loc": ("v_number", 1),
        "msg": "Input should be a valid dictionary or instance of PersonVNumber, not a "
               "GiDetails", "input": None}
    message = describe_error(error)
    assert message.startswith("v_number[1]: must be an object")
    assert [word for word in PYTHON_WORDS if word in message] == []


def test_strict_validation_errors_in_json_words() -> None:
    """The workflow may validate strictly; the words stay JSON."""
    with pytest.raises(ValidationError) as caught:
        CaseStart.model_validate({"persons": "none"}, strict=True)
    message = describe(caught.value)
    assert "persons: must be an array" in message
    assert [word for word in PYTHON_WORDS if word in message] == []
