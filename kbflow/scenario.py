"""Scenario files (``examples/*.json``): a fictional case and its event timeline.

Shape::

    {"title": str, "expected_phase": Phase, "expected_end_state": EndState | null,
     "expected_steps": [int, ...],
     "case": CaseStart without case_ref,
     "events": [{"event": name in kbflow.events.EVENTS, "body": event body}, ...]}

The demo, the tests and the recorded replay histories all run these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kbflow.case import EndState, Phase
from kbflow.events import EVENTS, AgencyEvent, CaseStart

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


class ScenarioEvent(BaseModel):
    """One event of a timeline: its update name and body."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    event: str
    body: dict[str, Any]

    @field_validator("event")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in EVENTS:
            raise ValueError(f"unknown event; known: {', '.join(EVENTS)}")
        return name

    def parsed(self) -> AgencyEvent:
        """The body validated as the event's model (raises pydantic.ValidationError)."""
        return EVENTS[self.event].model.model_validate(self.body)


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
