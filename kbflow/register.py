"""The register of processing activities (GDPR art. 30(1)), generated from the process table.

One entry per step and sender: that sender's disclosure in that step is one processing
activity, identified by ``processing_activity_id`` (versioned, LDV) — the id every
processing-log entry points to.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict

from kbflow.process import (
    ITEM_MEANINGS,
    PARTY_NAMES,
    PROCESS_TABLE,
    RETENTION_AFTER_CLOSE,
    legal_basis_of,
    processing_activity_id,
)

DATA_SUBJECTS = ("children under (a request for) a child-protection measure whose family is "
                 "in the aliens chain", "their parents and carers")
SECURITY_MEASURES = (
    "per-case data key (AES-256-GCM) over all workflow payloads, wrapped by a rotating "
    "master key; crypto-shredding after retention",
    "each packet sealed to its recipient's public key (X25519, NaCl sealed box)",
    "remote codec with token authentication and CORS limited to the Temporal UI",
    "processing log with pseudonymous data-subject ids and item names only",
    "per-case weighing (necessity, proportionality, subsidiarity) before a party's first "
    "disclosure",
)


class RegisterEntry(BaseModel):
    """One processing activity: ``controller`` discloses to ``recipients`` in ``step``."""

    model_config = ConfigDict(frozen=True)

    processing_activity_id: str
    version: int
    step: int
    step_title: str
    seed_name: str
    controller: str
    purpose: str
    legal_basis: str
    data_subjects: tuple[str, ...]
    data_categories: tuple[str, ...]
    recipients: tuple[str, ...]
    systems: tuple[str, ...]
    channel: str
    transfers_outside_eea: str
    retention: str
    security_measures: tuple[str, ...]


def register(retention: timedelta = RETENTION_AFTER_CLOSE) -> list[RegisterEntry]:
    """Every processing activity of PROCESS.md §3, in step order."""
    entries = []
    for spec in PROCESS_TABLE.values():
        for flow in spec.flows:
            categories = ["name, address, place of residence (NAW)", "date of birth"]
            categories += [f"{item.value}: {ITEM_MEANINGS[item]}" for item in sorted(flow.items)]
            entries.append(RegisterEntry(
                processing_activity_id=processing_activity_id(spec.step, flow.sender),
                version=spec.version,
                step=int(spec.step),
                step_title=spec.title,
                seed_name=spec.seed_name,
                controller=f"{flow.sender.value} ({PARTY_NAMES[flow.sender]})",
                purpose=spec.purpose,
                legal_basis=legal_basis_of(flow.sender).value,
                data_subjects=DATA_SUBJECTS,
                data_categories=tuple(categories),
                recipients=tuple(f"{r.value} ({PARTY_NAMES[r]})" for r in flow.recipients),
                systems=tuple(system.value for system in spec.systems),
                channel=flow.channel.value,
                transfers_outside_eea="none",
                retention=(f"personal data crypto-shredded {retention.days} days after the "
                           "case closes; processing log (no personal values) kept"),
                security_measures=SECURITY_MEASURES,
            ))
    return entries
