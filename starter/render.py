"""Human-readable lines for statuses, outcomes and packets. Item names, parties, steps and
dates only: never an item's value (the values are in ``--json`` output and the outbox)."""

from __future__ import annotations

from collections.abc import Iterable

from kbflow.case import CaseStatus, EventOutcome, TimelineEntry
from kbflow.packets import Packet
from kbflow.process import Party

ARROW = "->"


def item_names(packet: Packet) -> str:
    """The keys of a packet's body (``persons`` first), comma-separated."""
    return ", ".join(sorted(packet.body, key=lambda key: (key != "persons", key)))


def packet_line(packet: Packet) -> str:
    """``step  6  RVDK -> IND   persons, court_ruling, …``"""
    route = f"{packet.sender.value} {ARROW} {packet.recipient.value}"
    return f"step {int(packet.step):>2}  {route:<14} {item_names(packet)}"


def outcome_lines(outcome: EventOutcome) -> list[str]:
    """What an accepted event did."""
    head = f"accepted: {outcome.event} from {outcome.sender.value}"
    if outcome.duplicate:
        head += " (a repeat of an event already applied: nothing sent again)"
    lines = [head, f"phase: {outcome.phase.value}"
             + (f", end state: {outcome.end_state.value}" if outcome.end_state else "")]
    if not outcome.packets:
        lines.append("packets sent: none")
    else:
        lines.append("packets sent:")
        lines += [f"  step {int(p.step):>2}  {p.sender.value} {ARROW} {p.recipient.value}  "
                  f"({p.packet_id})" for p in outcome.packets]
    return lines


def status_lines(status: CaseStatus, timeline: list[TimelineEntry] | None) -> list[str]:
    """The case at a glance, then its timeline (if known)."""
    lines = [
        f"case: {status.case_ref}",
        f"phase: {status.phase.value}",
        f"end state: {status.end_state.value if status.end_state else '-'}",
        f"steps done: {', '.join(str(step) for step in status.steps_done) or '-'}",
    ]
    if status.ots_ends_on:
        lines.append(f"OTS ends on: {status.ots_ends_on.isoformat()}")
    if status.closed_at:
        lines.append(f"closed at: {status.closed_at:%Y-%m-%d %H:%M:%S %Z}")
    lines.append(f"escalations: {status.escalations}")
    if status.awaiting:
        lines.append("awaiting:")
        for wait in status.awaiting:
            due = f"due {wait.due:%Y-%m-%d}" if wait.due else "no deadline"
            step = f"step {int(wait.step)}" if wait.step else "no step"
            lines.append(f"  {wait.party.value:<5} {wait.event:<28} {step:<8} {due}")
    else:
        lines.append("awaiting: nothing")
    if timeline is None:
        lines.append("timeline: not available (no worker answered the query)")
    else:
        lines.append("timeline:")
        for entry in timeline:
            step = f"step {int(entry.step):>2}" if entry.step else "       "
            party = entry.party.value if entry.party else "-"
            lines.append(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.kind:<10} {step}  "
                         f"{party:<5} {entry.detail}")
    return lines


def received_lines(packets: Iterable[Packet]) -> list[str]:
    """Per recipient, what it received: step, sender and item names."""
    by_party: dict[Party, list[Packet]] = {}
    for packet in packets:
        by_party.setdefault(packet.recipient, []).append(packet)
    lines = []
    for party in Party:
        for index, packet in enumerate(by_party.get(party, [])):
            label = party.value if index == 0 else ""
            lines.append(f"{label:<5} step {int(packet.step):>2} from {packet.sender.value:<5} "
                         f"{item_names(packet)}")
    return lines
