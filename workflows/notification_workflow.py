"""``NotificationWorkflow``: one run per notification (a delivered packet, one webhook),
from the delivery until the receiver answers 2xx, the subscription is removed, or the
time given runs out (issue 8, point 5).

Started by ``DeliveryActivities.deliver_packet`` (``activities.notifications.Notifier``)
with an id derived from the CloudEvent's id, so it exists once per event. Its one
activity POSTs the event; Temporal retries it with backoff (from 1 s, doubling, up to the
notification's ``retry_maximum_seconds``, no maximum of attempts) until
``give_up_after_seconds`` have passed since the first; the workflow then completes with a
``failed`` outcome. Input, state and result are ``Public`` (ids only): plaintext in
Temporal, no personal data.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notifications import NotificationActivities
    from kbflow.notifications import Notification, NotificationOutcome, NotificationResult

#: One attempt's limit: the POST's own timeout (10 s) and the store lookup.
ATTEMPT_TIMEOUT = timedelta(seconds=30)
#: The first retry's wait, and its growth per attempt.
INITIAL_INTERVAL = timedelta(seconds=1)
BACKOFF = 2.0


@workflow.defn
class NotificationWorkflow:
    """One CloudEvent to one webhook, durably (module docstring)."""

    @workflow.run
    async def run(self, notification: Notification) -> NotificationOutcome:
        """POST the event until a 2xx answer, a removed subscription, or the end of the
        time given.

        Returns:
            The outcome: ``delivered`` (with the attempts and the answer's status),
            ``dropped``, or ``failed`` (with the last answer's status, if any).
        """
        try:
            return await workflow.execute_activity_method(
                NotificationActivities.send_notification, notification,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=timedelta(
                    seconds=notification.give_up_after_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=INITIAL_INTERVAL, backoff_coefficient=BACKOFF,
                    maximum_interval=timedelta(seconds=notification.retry_maximum_seconds),
                    maximum_attempts=0))
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                # e.g. a webhook that resolves to a forbidden address (WebhookForbidden)
                workflow.logger.warning("notification %s failed: %s", notification.event.id,
                                        cause.type or "refused")
            else:
                workflow.logger.warning("notification %s failed: no 2xx answer within %d s",
                                        notification.event.id,
                                        notification.give_up_after_seconds)
            return NotificationOutcome(event_id=notification.event.id,
                                       result=NotificationResult.FAILED,
                                       status_code=_last_status(error))


def _last_status(error: BaseException) -> int | None:
    """The status code the receiver last answered, from the failure chain, if any."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.details:
            details = cause.details[0]
            if isinstance(details, dict) and isinstance(details.get("status_code"), int):
                return int(details["status_code"])
        cause = cause.__cause__
    return None
