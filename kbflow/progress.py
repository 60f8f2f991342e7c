"""A case's progress as everyone who traces cases may see it: no personal data.

``CaseProgress`` is what ``CaseWorkflow`` keeps in its memo (key ``MEMO_KEY``) and shows in
the Temporal UI; ``kbflow cases`` and ``kbflow worklist`` read it from visibility (the
list answer carries the memo), so neither needs a worker. Its fields are enums, steps,
party codes, event names, dates and the case ref (an id) only.

CONTRACT (issue 7, being built): the models here are the shape the list commands read;
the engineer making progress plaintext turns them into the dedicated non-personal type.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from kbflow.case import EndState, Phase
from kbflow.events import Event
from kbflow.items import Measure
from kbflow.process import Party, Step

#: The memo key under which a case keeps its ``CaseProgress``.
MEMO_KEY = "progress"


class AwaitedProgress(BaseModel):
    """One thing the case waits for: ``party`` should send ``event`` (by ``due``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    party: Party
    event: Event
    step: Step | None
    due: dt.datetime | None
    overdue: bool


class CaseProgress(BaseModel):
    """The case at a glance, for tracing: where it stands and who must act by when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_ref: str
    phase: Phase
    last_step: Step | None
    measure: Measure | None
    end_state: EndState | None
    awaiting: tuple[AwaitedProgress, ...]
    next_deadline: dt.datetime | None
    overdue: bool
    closed_at: dt.datetime | None
