"""``RetentionWorkflow``: one run per closed case, from its closing until its erasure.

A case whose protocol ended is closed in Temporal (its ``CaseWorkflow`` run completes);
its personal data is still kept for the retention period (GDPR art. 5(1)(e)). This
workflow holds that period durably: started by the case as a child that outlives it
(``ParentClosePolicy.ABANDON``), it sleeps until the retention ends, or until an operator
sends the ``erase`` update, then crypto-shreds the case (``DeliveryActivities.erase_case``)
and completes with the erasure record. Its input, state and result hold no personal data.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.delivery import DeliveryActivities, ErasureOrder
    from activities.outbox_store import Erasure
    from kbflow.case import EventRefused, RefusalCode
    from kbflow.events import ErasureReason, ErasureRequest
    from kbflow.progress import Phrase
    from kbflow.public import PublicText
    from kbflow.retention import (
        Retention,
        RetentionStatus,
        erasure_reason,
        retention_reason,
    )
    from workflows.details import set_details

#: The erasure activity's timeout and retries (as ``CaseWorkflow``'s activities).
ERASURE_TIMEOUT = timedelta(seconds=30)
ERASURE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))
#: Who the erasure record names when the retention period ended.
RETENTION_TIMER = "kbflow-retention-timer"


@workflow.defn
class RetentionWorkflow:
    """A closed case kept for its retention period, then erased."""

    @workflow.init
    def __init__(self, retention: Retention) -> None:
        self._retention = retention
        self._request: ErasureRequest | None = None
        self._erasure: Erasure | None = None

    @workflow.run
    async def run(self, retention: Retention) -> Erasure:
        """Sleep until ``retention.erase_due`` (or an ``erase`` update), then destroy the
        case's data key, remove its packets and record the erasure.

        Returns:
            The erasure record (no personal data).
        """
        self._show_details()
        left = retention.erase_due - workflow.now()
        if left.total_seconds() > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._request is not None, timeout=left,
                    timeout_summary=PublicText.of(Phrase.RETENTION_ENDS))
        request = self._request or ErasureRequest(requested_by=RETENTION_TIMER,
                                                  reason=ErasureReason.RETENTION_ENDED)
        reason = request.reason.value
        if request.reason is ErasureReason.RETENTION_ENDED:
            reason = retention_reason(retention.retention)
        self._erasure = await workflow.execute_activity_method(
            DeliveryActivities.erase_case,
            ErasureOrder(case_ref=retention.case_ref, reason=reason,
                         requested_by=request.requested_by),
            start_to_close_timeout=ERASURE_TIMEOUT,
            retry_policy=ERASURE_RETRY,
            summary=PublicText.of(Phrase.ERASE),
        )
        self._show_details()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._erasure

    @workflow.update
    async def erase(self, request: ErasureRequest) -> Erasure:
        """Erase the closed case now rather than when its retention ends.

        Returns:
            The erasure record (no personal data); a second request while the first is
            carried out gets the same record.
        """
        if self._request is None:
            self._request = request
        await workflow.wait_condition(lambda: self._erasure is not None)
        assert self._erasure is not None
        return self._erasure

    @erase.validator
    def validate_erase(self, request: ErasureRequest) -> None:
        """Refuse an erasure once the case is erased already (the same wording as
        ``CaseWorkflow``'s)."""
        if self._erasure is not None:
            raise EventRefused("erase: the case is erased already", RefusalCode.ERASED)

    @workflow.query
    def status(self) -> RetentionStatus:
        """When the case's data is erased (or was), and why (an ``ErasureReason``); no
        personal data, and in plaintext (a ``Public`` model)."""
        erasure = self._erasure
        return RetentionStatus(
            case_ref=self._retention.case_ref, closed_at=self._retention.closed_at,
            erase_due=self._retention.erase_due,
            erased_at=None if erasure is None else erasure.at,
            reason=None if erasure is None else erasure_reason(erasure.reason))

    def _show_details(self) -> None:
        """Current details in plaintext (``PublicText``): the case, when it closed, until
        when its personal data is kept or when it was erased."""
        retention = self._retention
        lines = [PublicText.of(Phrase.KEPT_CASE, case_ref=retention.case_ref),
                 PublicText.of(Phrase.CLOSED_ON, date=retention.closed_at.date())]
        if self._erasure is None:
            lines.append(PublicText.of(Phrase.KEPT_UNTIL, date=retention.erase_due.date()))
        else:
            lines.append(PublicText.of(Phrase.ERASED, date=self._erasure.at.date()))
        set_details(PublicText.lines(*lines))
