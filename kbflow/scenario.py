"""Scenario files (``examples/*.json``): a fictional case and its event timeline.

Shape::

    {"title": str, "expected_phase": Phase, "expected_end_state": EndState | null,
     "expected_steps": [int, ...],
     "case": CaseStart without case_ref,
     "events": [{"event": a kbflow.events.Event, "body": event body}, ...]}

A ruling's ``ruled_on`` may be left out of a scenario: it is then the day the scenario is
loaded, since a scenario's case is reported the day it runs and a ruling may be neither in
the future nor before the report.

The demo, the tests and the recorded replay histories all run these files.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kbflow.case import RULES, EndState, Phase
from kbflow.events import AgencyEvent, CaseStart, Event

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


class ScenarioEvent(BaseModel):
    """One event of a timeline: its update name and body."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    event: str
    body: dict[str, Any]

    @field_validator("event")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in RULES:
            raise ValueError(f"unknown event; known: {', '.join(RULES)}")
        return name

    @model_validator(mode="after")
    def _dated_today(self) -> ScenarioEvent:
        if "ruled_on" in RULES[Event(self.event)].model.model_fields:
            self.body.setdefault("ruled_on", dt.datetime.now(dt.UTC).date().isoformat())
        return self

    def parsed(self) -> AgencyEvent:
        """The body validated as the event's model (raises pydantic.ValidationError)."""
        return RULES[Event(self.event)].model.model_validate(self.body)


class Scenario(BaseModel):
    """A fictional case with its timeline and expected outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    title: str
    expected_phase: Phase
    expected_end_state: EndState | None = None
    expected_steps: tuple[int, ...] = Field(description="Steps the case goes through")
    case: dict[str, Any]
    events: tuple[ScenarioEvent, ...]

    def start(self, case_ref: str) -> CaseStart:
        """The case start with ``case_ref`` filled in (raises pydantic.ValidationError)."""
        return CaseStart.model_validate({**self.case, "case_ref": case_ref})

    @classmethod
    def load(cls, path: Path) -> Scenario:
        """Read a scenario file (raises OSError, ValueError, pydantic.ValidationError)."""
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


def example_files() -> list[Path]:
    """The example scenario files, sorted by name."""
    return sorted(EXAMPLES_DIR.glob("*.json"))
