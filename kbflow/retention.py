"""A closed case's retention (GDPR art. 5(1)(e)): what its retention workflow keeps.

When a case's protocol ends, ``CaseWorkflow`` completes and hands the case to a
``RetentionWorkflow`` (``workflows/retention_workflow.py``) with workflow id
``retention_workflow_id(case_ref)``. That workflow sleeps until ``Retention.erase_due``,
then crypto-shreds the case. Its input and state hold no personal data: the case ref (an
id), dates, a period and the case's final ``CaseStatus`` (which is personal-data-free by
contract), so that the case's status stays readable after its data key is destroyed.

Pure: no Temporal, no I/O.
"""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kbflow.case import CaseStatus
from kbflow.events import ErasureReason
from kbflow.public import CaseRef, Public

_MODEL = ConfigDict(frozen=True, extra="forbid")


def retention_workflow_id(case_ref: str) -> str:
    """The retention workflow's id of a case: ``kb-retention-<case_ref>``."""
    return f"kb-retention-{case_ref}"


def retention_reason(retention: dt.timedelta) -> str:
    """The erasure reason the retention timer records, e.g. ``retention-ended (365 days
    after closing)`` (the wording runs in CaseWorkflow used before the hand-over)."""
    return f"retention-ended ({retention.days} days after closing)"


class Retention(BaseModel):
    """The input of a closed case's retention workflow (no personal data)."""

    model_config = _MODEL

    case_ref: str = Field(description="The case (an id made by kbflow)")
    closed_at: AwareDatetime = Field(description="When the case's protocol ended")
    retention: dt.timedelta = Field(description="How long the case is kept after closing")
    final_status: CaseStatus = Field(description="The case as it closed (no personal data)")

    @property
    def erase_due(self) -> dt.datetime:
        """When the retention ends and the case is erased."""
        return self.closed_at + self.retention


class RetentionStatus(Public):
    """A closed case in retention at a glance (the retention workflow's ``status`` query).

    A ``kbflow.public.Public`` model: ids, dates and an enum only, so the query's answer
    is left in plaintext and readable without any codec (``temporal workflow query
    --name status``); a free-text field cannot be added."""

    model_config = Public.model_config | {"frozen": True}

    case_ref: CaseRef
    closed_at: dt.datetime
    erase_due: dt.datetime = Field(description="When its data will be erased")
    erased_at: dt.datetime | None = Field(description="When it was erased; None: kept")
    reason: ErasureReason | None = Field(
        description="Why it was erased (the fixed list; retention-ended when its retention "
                    "period ended), once erased")


def erasure_reason(recorded: str) -> ErasureReason | None:
    """The fixed reason of an erasure record's ``reason``: one of ``ErasureReason``, or
    the retention timer's ``retention_reason`` text (``retention-ended (365 days after
    closing)``, read as ``retention-ended``); ``None`` for any other text (never raised
    from a query)."""
    try:
        return ErasureReason(recorded.split(" (", 1)[0])
    except ValueError:
        return None
