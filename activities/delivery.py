"""Activities that deliver packets and reminders (the I/O of PROCESS.md §3's flows)."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.outbox_store import Erasure, OutboxStore
from encryption.keys import KeyUnavailable
from encryption.sealed import PartyKeyMissing
from kbflow.case import Reminder
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
    """Activities bound to one outbox store."""

    def __init__(self, store: OutboxStore) -> None:
        self.store = store

    @activity.defn
    async def deliver_packet(self, packet: Packet) -> DeliveryReceipt:
        """Deliver ``packet`` to its recipient's outbox and write its processing-log entries
        (one per data subject), exactly once per packet id.

        Errors: a storage error is raised as is and retried by Temporal's retry policy.
        """
        try:
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
                 workflow_id=activity.info().workflow_id)
        return DeliveryReceipt(packet_id=packet.packet_id, delivered=delivered)

    @activity.defn
    async def send_reminder(self, reminder: Reminder) -> bool:
        """Put a reminder (no personal data) in the late party's outbox, once per notice id."""
        sent = await asyncio.to_thread(self.store.remind, reminder)
        log.info("reminder sent" if sent else "reminder already sent",
                 case_ref=reminder.case_ref, party=reminder.party.value,
                 awaited_event=reminder.event, workflow_id=activity.info().workflow_id)
        return sent

    @activity.defn
    async def erase_case(self, order: ErasureOrder) -> Erasure:
        """Crypto-shred a case: destroy its data key (its Temporal history and every backup
        become unreadable), remove its packets, record the erasure. Idempotent."""
        erasure = await asyncio.to_thread(
            self.store.erase, order.case_ref, reason=order.reason,
            requested_by=order.requested_by, at=activity.info().current_attempt_scheduled_time)
        log.info("case erased", case_ref=order.case_ref, packets_removed=erasure.packets_removed,
                 key_destroyed=erasure.key_destroyed, workflow_id=activity.info().workflow_id)
        return erasure
