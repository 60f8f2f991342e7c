"""A case's progress as everyone who traces cases may see it: no personal data.

``CaseProgress`` is what ``CaseWorkflow`` keeps in its memo (key ``MEMO_KEY``) and shows in
the Temporal UI; ``kbflow cases`` and ``kbflow worklist`` read it from visibility (the
list answer carries the memo), so neither needs a worker. Its fields are enums, steps,
party codes, event names, dates and the case ref (an id) only: both models are
``kbflow.public.Public``, so their payloads are left in plaintext and a personal field
cannot be added.

``Phrase`` holds every wording of the case's summaries and details (activity and timer
summaries, the workflow's static summary and current details), each a
``kbflow.public.PublicText``.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from kbflow import search_attributes as sa
from kbflow.case import CaseState, EndState, Phase
from kbflow.events import Event
from kbflow.items import Measure
from kbflow.process import Party, Step
from kbflow.public import CaseRef, Public, PublicText, Wording

#: The memo key under which a case keeps its ``CaseProgress``.
MEMO_KEY = "progress"


class AwaitedProgress(Public):
    """One thing the case waits for: ``party`` should send ``event`` (by ``due``)."""

    model_config = Public.model_config | {"frozen": True}

    party: Party
    event: Event
    step: Step | None
    due: dt.datetime | None
    overdue: bool


class CaseProgress(Public):
    """The case at a glance, for tracing: where it stands and who must act by when."""

    model_config = Public.model_config | {"frozen": True}

    case_ref: CaseRef
    phase: Phase
    last_step: Step | None
    measure: Measure | None
    end_state: EndState | None
    awaiting: tuple[AwaitedProgress, ...]
    next_deadline: dt.datetime | None
    overdue: bool
    closed_at: dt.datetime | None


def progress_of(state: CaseState, now: dt.datetime) -> CaseProgress:
    """``state``'s progress at ``now``: a wait is overdue once its ``due`` has passed
    (the workflow wakes then, to remind the party, so the flag flips on time)."""
    awaiting = tuple(
        AwaitedProgress(party=wait.party, event=wait.event, step=wait.step, due=wait.due,
                        overdue=wait.due is not None and wait.due <= now)
        for wait in state.awaited)
    ruling = state.record.court_ruling
    return CaseProgress(
        case_ref=state.record.case_ref,
        phase=state.phase,
        last_step=Step(max(state.steps_done)) if state.steps_done else None,
        measure=None if ruling is None else ruling.measure,
        end_state=state.end_state,
        awaiting=awaiting,
        next_deadline=min((wait.due for wait in awaiting if wait.due is not None),
                          default=None),
        overdue=any(wait.overdue for wait in awaiting),
        closed_at=state.closed_at,
    )


class Phrase(Wording):
    """Every wording of kbflow's summaries and details (``PublicText.of``)."""

    __blanks__: ClassVar[dict[str, Any]] = {
        "case_ref": CaseRef, "step": Step, "sender": Party, "recipient": Party,
        "party": Party, "event": Event, "phase": Phase, "end_state": EndState,
        "measure": Measure, "date": dt.date, "days": int,
    }

    CASE = "case {case_ref}: step {step} report by {sender}"
    DELIVERY = "step {step}: {sender} to {recipient}"
    REMINDER = "reminder to {party}: {event}"
    ERASE = "erase: destroy the case key, remove its packets"
    NEXT_DEADLINE = "next deadline"
    PHASE = "phase: {phase}"
    END_STATE = "end state: {end_state}"
    MEASURE = "measure: {measure}"
    ERASED = "erased: {date}"
    KEPT_UNTIL = "personal data kept until {date}"
    AWAITING = "awaiting {party}: {event}"
    AWAITING_DUE = "awaiting {party}: {event} (due {date})"
    OVERDUE = "awaiting {party}: {event} (due {date}, overdue)"
    KEPT_CASE = "case: {case_ref}"
    CLOSED_ON = "closed: {date}"
    RETENTION_ENDS = "retention ends"
    RETENTION = "retention of case {case_ref}, then erasure"


def search_attribute_updates(progress: CaseProgress, since: CaseProgress | None = None
                             ) -> list[SearchAttributeUpdate]:
    """The case's search attributes (``kbflow.search_attributes``) for ``progress``: each
    set to its value, or unset when it has none (never an empty string or list). With
    ``since`` (the progress last upserted), only those whose value changed."""
    updates = _updates(progress)
    if since is None:
        return updates
    before = {update.key.name: update.value for update in _updates(since)}
    return [update for update in updates if before[update.key.name] != update.value]


def typed_search_attributes(progress: CaseProgress) -> TypedSearchAttributes:
    """The search attributes ``progress`` sets, as a start's ``search_attributes=`` (for
    stand-in cases in tests and benchmarks)."""
    return TypedSearchAttributes([
        SearchAttributePair(update.key, update.value) for update in _updates(progress)
        if update.value is not None])


def _updates(progress: CaseProgress) -> list[SearchAttributeUpdate]:

    def keyword(key: SearchAttributeKey[str], value: enum.Enum | None) -> SearchAttributeUpdate:
        return key.value_unset() if value is None else key.value_set(str(value.value))

    parties = list(dict.fromkeys(wait.party.value for wait in progress.awaiting))
    return [
        keyword(sa.PHASE, progress.phase),
        sa.LAST_STEP.value_unset() if progress.last_step is None
        else sa.LAST_STEP.value_set(int(progress.last_step)),
        sa.AWAITING.value_set(parties) if parties else sa.AWAITING.value_unset(),
        sa.NEXT_DEADLINE.value_unset() if progress.next_deadline is None
        else sa.NEXT_DEADLINE.value_set(progress.next_deadline),
        sa.OVERDUE.value_set(progress.overdue),
        keyword(sa.MEASURE, progress.measure),
        keyword(sa.END_STATE, progress.end_state),
    ]


def details_of(progress: CaseProgress, kept_until: dt.datetime | None,
               erased_at: dt.datetime | None) -> PublicText:
    """The workflow's current details: phase, end state, measure, until when the personal
    data is kept (or when it was erased), and each wait with its deadline."""
    lines = [PublicText.of(Phrase.PHASE, phase=progress.phase)]
    if progress.end_state is not None:
        lines.append(PublicText.of(Phrase.END_STATE, end_state=progress.end_state))
    if progress.measure is not None:
        lines.append(PublicText.of(Phrase.MEASURE, measure=progress.measure))
    if erased_at is not None:
        lines.append(PublicText.of(Phrase.ERASED, date=erased_at))
    elif kept_until is not None:
        lines.append(PublicText.of(Phrase.KEPT_UNTIL, date=kept_until))
    for wait in progress.awaiting:
        if wait.due is None:
            lines.append(PublicText.of(Phrase.AWAITING, party=wait.party, event=wait.event))
        else:
            lines.append(PublicText.of(Phrase.OVERDUE if wait.overdue else Phrase.AWAITING_DUE,
                                       party=wait.party, event=wait.event, date=wait.due))
    return PublicText.lines(*lines)
