"""Activities that deliver packets and reminders (the I/O of PROCESS.md §3's flows).

Each logs what it did (case ref, step, parties, packet or notice id, workflow id; never
personal data) and counts it with the activity's metric meter (``kbflow.metrics``):
packets delivered, reminders sent, cases erased. A retry that finds its work done logs
"already …" and counts nothing. Failed attempts are logged and counted by
``workflows.operator_log.OperatorLog``.
"""

from __future__ import annotations

import asyncio

import structlog
from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notifications import Notifier
from activities.outbox_store import Erasure, OutboxStore
from encryption.keys import KeyUnavailable
from encryption.sealed import PartyKeyMissing
from kbflow import metrics, trace
from kbflow.case import Reminder
from kbflow.events import ErasureReason
from kbflow.packets import Packet

log = structlog.get_logger(__name__)


class DeliveryReceipt(BaseModel):
    """What a delivery did: no personal data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_id: str
    delivered: bool  # False: this packet id was already in the outbox (a retry)


class ErasureOrder(BaseModel):
    """What to erase and why (no personal data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_ref: str
    reason: str
    requested_by: str


class DeliveryActivities:
    """Activities bound to one outbox store; ``notifier`` (the worker's client) notifies
    the recipients' webhooks of each delivered packet (``activities.notifications``)."""

    def __init__(self, store: OutboxStore, notifier: Notifier | None = None) -> None:
        self.store = store
        self.notifier = notifier

    @activity.defn
    async def deliver_packet(self, packet: Packet) -> DeliveryReceipt:
        """Deliver ``packet`` to its recipient's outbox and write its processing-log entries
        (one per data subject), exactly once per packet id; the entries are spans in the
        trace the activity was scheduled with (``workflows.trace_context``), else in a
        new one.

        Then notifies the recipient's webhooks (``_notify``).

        Errors: a storage error is raised as is and retried by Temporal's retry policy.
        """
        context = trace.current()
        try:
            # to_thread copies the context: the store reads the trace (kbflow.trace.current)
            delivered = await asyncio.to_thread(self.store.deliver, packet)
        except KeyUnavailable:  # no retry can bring a destroyed key back
            raise ApplicationError(f"packet {packet.packet_id}: the case was erased",
                                   type="CaseErased", non_retryable=True) from None
        except PartyKeyMissing as missing:  # retried: ops add the party's public key
            raise ApplicationError(f"packet {packet.packet_id}: {missing}",
                                   type="PartyKeyMissing") from None
        log.info("packet delivered" if delivered else "packet already delivered",
                 case_ref=packet.case_ref, step=int(packet.step), sender=packet.sender.value,
                 recipient=packet.recipient.value, packet_id=packet.packet_id,
                 workflow_id=activity.info().workflow_id,
                 trace_id=None if context is None else context.trace_id)
        if delivered:
            metrics.PACKETS_DELIVERED.add(activity.metric_meter(), {
                "step": str(int(packet.step)), "recipient": packet.recipient.value})
        await self._notify(packet)
        return DeliveryReceipt(packet_id=packet.packet_id, delivered=delivered)

    async def _notify(self, packet: Packet) -> None:
        """Start the notifications of ``packet`` to its recipient's webhooks; also on a
        retry that found it delivered (a crash in between loses none: each is started
        once per event id).

        Errors: ``NotificationsUnconfigured`` (retried) when the recipient has webhooks
        but this worker cannot notify (no ``KBFLOW_API_TLS_DIR`` server certificate).
        """
        rows = await asyncio.to_thread(self.store.subscriptions.subscription_rows,
                                       packet.recipient.value)
        if not rows:
            return
        if self.notifier is None:
            raise ApplicationError(
                f"packet {packet.packet_id}: {packet.recipient.value} has webhooks, but this "
                "worker cannot notify: KBFLOW_API_TLS_DIR lacks the API's server.crt "
                "(kbflow's OIN)", type="NotificationsUnconfigured")
        await self.notifier.notify(packet, rows, activity.info().task_queue,
                                   activity.info().current_attempt_scheduled_time)

    @activity.defn
    async def send_reminder(self, reminder: Reminder) -> bool:
        """Put a reminder (no personal data) in the late party's outbox, once per notice id."""
        sent = await asyncio.to_thread(self.store.remind, reminder)
        log.info("reminder sent" if sent else "reminder already sent",
                 case_ref=reminder.case_ref, party=reminder.party.value,
                 step=None if reminder.step is None else int(reminder.step),
                 awaited_event=reminder.event.value, workflow_id=activity.info().workflow_id)
        if sent:
            metrics.REMINDERS.add(activity.metric_meter(), {
                "party": reminder.party.value, "event": reminder.event.value})
        return sent

    @activity.defn
    async def erase_case(self, order: ErasureOrder) -> Erasure:
        """Crypto-shred a case: destroy its data key (its Temporal history and every backup
        become unreadable), remove its packets, record the erasure. Idempotent.

        Logs "retention ended" first when the retention timer ordered it; the log line
        and the ``kbflow_erasures_total`` label carry the reason's code (``ErasureReason``),
        never who asked."""
        reason = erasure_reason(order.reason)
        if reason == ErasureReason.RETENTION_ENDED.value:
            log.info("retention ended", case_ref=order.case_ref,
                     workflow_id=activity.info().workflow_id)
        erasure = await asyncio.to_thread(
            self.store.erase, order.case_ref, reason=order.reason,
            requested_by=order.requested_by, at=activity.info().current_attempt_scheduled_time)
        log.info("case erased", case_ref=order.case_ref, reason=reason,
                 packets_removed=erasure.packets_removed, key_destroyed=erasure.key_destroyed,
                 workflow_id=activity.info().workflow_id)
        metrics.ERASURES.add(activity.metric_meter(), {"reason": reason})
        return erasure


def erasure_reason(reason: str) -> str:
    """The ``ErasureReason`` code an erasure order's reason starts with (the retention
    timer adds "(N days after closing)"), or ``unknown``."""
    code = reason.split(" ", 1)[0]
    return code if code in {r.value for r in ErasureReason} else metrics.UNKNOWN
