"""The bare twin of ``CaseWorkflow`` for ``bench.bench_vs_bare``: plain Temporal, nothing
of kbflow's.

``BareCase`` takes a start, delivers its packets (one activity each, in parallel), then
takes updates; each update delivers its packets the same way and returns their ids. An
update marked ``last`` ends the run (a kbflow case that closes); otherwise the run waits
for the next update for ever (a case that stays open). Payloads are ~1 KB of text in
dataclasses, through the SDK's default data converter: no codec, no pydantic, no store,
no search attributes, memo, timers, summaries or logging. ``deliver`` does nothing but
return a receipt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

#: Bytes of text in a start, an update and a packet: about a kbflow packet's payload.
PAYLOAD_CHARS = 1000
DELIVERY_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class BarePacket:
    """One packet to deliver."""

    packet_id: str
    data: str


@dataclass(frozen=True)
class BareStart:
    """A case start: its text and how many packets it delivers."""

    data: str
    packets: int


@dataclass(frozen=True)
class BareEvent:
    """An event: its text, how many packets it delivers, whether it closes the case."""

    event_id: str
    data: str
    packets: int
    last: bool = False


@dataclass(frozen=True)
class BareOutcome:
    """What an event did: the ids of the packets delivered."""

    event_id: str
    packet_ids: list[str]


@activity.defn
async def deliver(packet: BarePacket) -> str:
    """Deliver nothing; return the packet's id as its receipt."""
    return packet.packet_id


@workflow.defn
class BareCase:
    """A case's shape without kbflow: start, updates, activities per update."""

    def __init__(self) -> None:
        self._closed = False

    @workflow.run
    async def run(self, start: BareStart) -> str:
        """Deliver the start's packets, then wait for updates until one is ``last``."""
        await self._deliver(start.packets, start.data)
        await workflow.wait_condition(lambda: self._closed)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return "closed"

    @workflow.update
    async def event(self, event: BareEvent) -> BareOutcome:
        """Deliver the event's packets; close the case after a ``last`` event."""
        ids = await self._deliver(event.packets, event.data)
        if event.last:
            self._closed = True
        return BareOutcome(event_id=event.event_id, packet_ids=ids)

    async def _deliver(self, packets: int, data: str) -> list[str]:
        return list(await asyncio.gather(*(
            workflow.execute_activity(
                deliver, BarePacket(packet_id=str(workflow.uuid4()), data=data),
                start_to_close_timeout=DELIVERY_TIMEOUT)
            for _ in range(packets))))
