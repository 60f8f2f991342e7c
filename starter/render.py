"""Human-readable lines for statuses, outcomes, packets, the register (art. 30), access
answers (art. 15) and the codec server. Item names, parties, steps and dates only: never
an item's value (the values are in ``packets --json`` output and the outbox)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from activities.outbox_store import Erasure
from encryption.codec_server import TOKEN_ENV
from kbflow.case import CaseStatus, EventOutcome, TimelineEntry
from kbflow.disclosures import AccessAnswer
from kbflow.packets import Packet
from kbflow.process import Party
from kbflow.register import RegisterEntry
from starter.cases import CaseView

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
    if status.erased_at:
        lines.append(f"erased at: {status.erased_at:%Y-%m-%d %H:%M:%S %Z} (its data is gone)")
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
        lines.append("timeline: not available" + (
            " (erased)" if status.erased_at else " (no worker answered the query)"))
    else:
        lines.append("timeline:")
        for entry in timeline:
            step = f"step {int(entry.step):>2}" if entry.step else "       "
            party = entry.party.value if entry.party else "-"
            lines.append(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.kind:<10} {step}  "
                         f"{party:<5} {entry.detail}")
    return lines


def erased_line(erasure: Erasure | None, status: CaseStatus | None) -> str:
    """``erased on 2026-03-01 10:00 UTC (art-17-request); its data is gone``."""
    if erasure is not None:
        when = f" on {erasure.at:%Y-%m-%d %H:%M} UTC ({erasure.reason})"
    elif status is not None and status.erased_at is not None:
        when = f" on {status.erased_at:%Y-%m-%d %H:%M} UTC"
    else:
        when = " (its data key is destroyed)"
    return f"erased{when}; its data is gone"


def view_lines(view: CaseView) -> list[str]:
    """``kbflow status``: the case at a glance; for an erased case, "erased" with the
    erasure's date and reason, and what is still known of how it ended."""
    if not view.erased:
        assert view.status is not None
        return status_lines(view.status, view.timeline)
    lines = [f"case: {view.case_ref}", erased_line(view.erasure, view.status)]
    if view.status is not None:
        lines += [f"phase: {view.status.phase.value}",
                  f"end state: {view.status.end_state.value if view.status.end_state else '-'}",
                  f"steps done: {', '.join(str(s) for s in view.status.steps_done) or '-'}"]
        if view.status.closed_at:
            lines.append(f"closed at: {view.status.closed_at:%Y-%m-%d %H:%M:%S %Z}")
    lines.append("timeline: gone (erased)")
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


# ---- accountability and keys ----------------------------------------------------------------


def register_lines(entries: Sequence[RegisterEntry]) -> list[str]:
    """The register of processing activities (GDPR art. 30(1)): what every activity shares
    first, then one block per activity."""
    if not entries:
        return ["register of processing activities: empty"]
    first = entries[0]
    lines = [
        f"Register of processing activities (GDPR art. 30(1)): {len(entries)} activities, "
        "one per step and disclosing party (PROCESS.md §3)",
        "data subjects (all activities):",
        *(f"  - {subject}" for subject in first.data_subjects),
        f"transfers outside the EEA: {first.transfers_outside_eea}",
        f"erasure: {first.retention}",
        "security measures (all activities):",
        *(f"  - {measure}" for measure in first.security_measures),
    ]
    for entry in entries:
        lines += [
            "",
            entry.processing_activity_id,
            f"  step {entry.step}: {entry.step_title} ({entry.seed_name})",
            f"  controller:  {entry.controller}",
            f"  recipients:  {', '.join(entry.recipients)}",
            f"  purpose:     {entry.purpose}",
            f"  legal basis: {entry.legal_basis}",
            "  data:",
            *(f"    - {category}" for category in entry.data_categories),
            f"  systems:     {', '.join(entry.systems)}; channel: {entry.channel}",
        ]
        if entry.data_subjects != first.data_subjects:
            lines.append(f"  data subjects: {'; '.join(entry.data_subjects)}")
    return lines


def disclosure_lines(answer: AccessAnswer) -> list[str]:
    """An art. 15 answer: per disclosure the recipient organisation, step, purpose, legal
    basis, items, time and case ref; then each operator's look at the subject's cases
    (time, case, operator id, payload count). Organisations, item names, staff ids and
    pseudonyms only."""
    count = len(answer.disclosures)
    lines = [f"data subject: {answer.data_subject_id}",
             f"disclosures: {count}" if count else
             "disclosures: none recorded in this processing log"]
    if count:
        names = ", ".join(f"{o.name} ({o.code.value})" for o in answer.recipients)
        lines.append(f"recipients: {names}")
    for disclosure in answer.disclosures:
        lines += [
            "",
            f"{disclosure.at:%Y-%m-%d %H:%M:%S %Z}  case {disclosure.case_ref}  "
            f"step {disclosure.step}: {disclosure.step_title}",
            f"  to:          {disclosure.recipient.name} ({disclosure.recipient.code.value})",
            f"  from:        {disclosure.sender.name} ({disclosure.sender.code.value})",
            f"  purpose:     {disclosure.purpose}",
            f"  legal basis: {disclosure.legal_basis}",
            "  items:       " + "; ".join(
                f"{item} ({meaning})"
                for item, meaning in zip(disclosure.items, disclosure.data_categories,
                                         strict=True)),
            f"  activity:    {disclosure.processing_activity_id}",
        ]
    lines += ["", f"operator looks (decodes through the codec server): "
                  f"{len(answer.operator_looks) or 'none recorded'}"]
    lines += [f"  {look.at:%Y-%m-%d %H:%M:%S %Z}  case {look.case_ref}  operator "
              f"{look.operator_id}  {look.payload_count} payload(s)"
              for look in answer.operator_looks]
    lines += ["", f"storage: {answer.storage_period}"]
    return lines


def codec_server_lines(endpoint: str, token_file: Path | None, token: str | None,
                       ui_origins: Sequence[str]) -> list[str]:
    """How to use a running codec server, for stderr. No token appears but the services'
    (encode-only) one, and that only if given.

    Args:
        endpoint: the server's base URL, e.g. ``http://127.0.0.1:8081``.
        token_file: the file holding the services' token; ``None`` when it comes from
            ``KBFLOW_CODEC_TOKEN``.
        token: the services' token itself, only when the operator asked to see it.
        ui_origins: the browser origins the server admits.
    """
    if token_file is None:
        hint, source = f"${TOKEN_ENV}", f"the variable {TOKEN_ENV}"
    else:
        hint, source = f"$(cat {token_file})", f"the file {token_file}"
    lines = [
        f"kbflow codec server on {endpoint} (Web UI origins: {', '.join(ui_origins)})",
        "Decoding takes an operator's own token (kbflow operator issue OPERATOR_ID); every",
        "decode is written to the processing log under that operator. Without one: 401.",
        "",
        "temporal CLI:",
        f"  temporal workflow show -w kb-case-<case ref> --detailed --codec-endpoint {endpoint} "
        '--codec-auth "Bearer <operator token>"',
        "",
        "Web UI: in your own browser, open the UI's codec server settings (top bar), set",
        f"  {endpoint}/t/<operator token>",
        "(choose 'Use my browser setting and ignore Cluster-level setting' if offered).",
        "",
        f"Services that only encode (/encode) use the codec token in {source}:",
        f'  --codec-auth "Bearer {token if token is not None else hint}"',
    ]
    return lines
