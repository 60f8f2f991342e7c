"""What one run of a case hands to the next when ``CaseWorkflow`` continues as new.

A case lives for years (an OTS extended each year until the child is 18), and every event
may carry up to ``kbflow.items.BODY_MAX_BYTES``; one run's history would approach
Temporal's limits (it suggests continuing as new at 4,096 events or 4 MB by default,
warns at 10,240 events or 10 MB and fails a run at 51,200 events or 50 MB). So the run
continues as new (same workflow id, a new run and a fresh history) when Temporal suggests
it and when an extension ruling starts a new OTS period, and hands over ``CarriedCase``:
the whole ``kbflow.case.CaseState`` (the record with its V-nummer provenance, the
weighings, every awaited party with its absolute deadline and reminded/escalated flags,
the seen idempotency keys with their outcomes, the timeline, the sub-states, the OTS end
and extension state, the erasure state), the case's retention period, a digest of the
start it was opened with, and the progress last shown in its memo and search attributes.

It is personal data: it travels as the new run's input payload, which the codec encrypts
under the case's key (the workflow id, and so the key scope, stay the same). It is not a
``kbflow.public.Public`` model, so it is never left in plaintext.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from pydantic import BaseModel, ConfigDict, Field

from kbflow.case import CaseState
from kbflow.events import CaseStart
from kbflow.progress import CaseProgress


class CarriedCase(BaseModel):
    """The input of a continued run of ``CaseWorkflow``: everything the case knows.

    ``CaseWorkflow.run`` takes a ``CaseStart`` (a new case, and every history recorded
    before continue-as-new) or a ``CarriedCase`` (a continued run); the two never validate
    as each other (both forbid extra fields and share no required field).
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    start_digest: str = Field(pattern=r"^[0-9a-f]{64}$",
                              description="``start_digest`` of the start the case was "
                                          "opened with (a repeated `kbflow start` compares "
                                          "itself with it; the start itself is in the "
                                          "record and need not travel twice)")
    state: CaseState = Field(description="The case's whole state at the hand-over")
    retention: dt.timedelta = Field(description="How long the case is kept once closed")
    progress: CaseProgress | None = Field(
        description="The progress last upserted into the memo and search attributes "
                    "(None: the run showed none); the next run starts from it")
    run: int = Field(ge=2, description="This run's number in the case's chain (the first "
                                       "run, started with the CaseStart, is 1)")


def start_digest(start: CaseStart) -> str:
    """A fingerprint of a case start (SHA-256 of its JSON), to tell a repeated start from
    another start reusing its idempotency key, also once the case has continued as new."""
    return hashlib.sha256(start.model_dump_json().encode()).hexdigest()


def recorded_start_digest(recorded: CaseStart | CarriedCase) -> str:
    """The start digest of a run's input: a first run's ``CaseStart``, or the digest a
    continued run carries."""
    if isinstance(recorded, CarriedCase):
        return recorded.start_digest
    return start_digest(recorded)
