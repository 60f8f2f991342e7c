"""The register of processing activities (GDPR art. 30(1)), generated from the process table.

One entry per step and sender: that sender's disclosure in that step is one processing
activity, identified by ``processing_activity_id`` (versioned, LDV) — the id every
processing-log entry points to.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

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
    "remote codec with token authentication (the token kept out of logs) and CORS limited "
    "to the Temporal UI; without the token the UI shows ciphertext",
    "processing log with pseudonymous data-subject ids and item names only",
    "per-case weighing (necessity, proportionality, subsidiarity) before a party's first "
    "disclosure",
)


class RegisterEntry(BaseModel):
    """One processing activity: ``controller`` discloses to ``recipients`` in ``step``.

    The fields answer GDPR art. 30(1) (a)-(g); ``processing_activity_id`` is what every
    processing-log entry of this activity points to.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    processing_activity_id: str = Field(description="LDV dpl.core.processing_activity_id")
    version: int = Field(description="Bumped on a relevant change (a new id)")
    step: int = Field(description="Step of PROCESS.md §3")
    step_title: str = Field(description="The step's heading, in English")
    seed_name: str = Field(description="The step's heading in the Dutch seed")
    controller: str = Field(description="Art. 30(1)(a): the disclosing party, code and name")
    purpose: str = Field(description="Art. 30(1)(b)")
    legal_basis: str = Field(description="GDPR art. 6(1) ground and national law")
    data_subjects: tuple[str, ...] = Field(description="Art. 30(1)(c): categories of subjects")
    data_categories: tuple[str, ...] = Field(description="Art. 30(1)(c): categories of data")
    recipients: tuple[str, ...] = Field(
        description="Art. 30(1)(d): the actual recipients, code and name")
    systems: tuple[str, ...] = Field(description="Systems of the step (SYSTEEM column)")
    channel: str = Field(description="How the disclosure travels (always a secure channel)")
    transfers_outside_eea: str = Field(description="Art. 30(1)(e)")
    retention: str = Field(description="Art. 30(1)(f): time limit for erasure")
    security_measures: tuple[str, ...] = Field(description="Art. 30(1)(g), art. 32")


def register(retention: timedelta = RETENTION_AFTER_CLOSE) -> list[RegisterEntry]:
    """Every processing activity of PROCESS.md §3, in step order."""
    entries = []
    for spec in PROCESS_TABLE.values():
        for flow in spec.flows:
            categories = ["name, address, place of residence (NAW)", "date of birth",
                          "role in the case (child, parent, carer)"]
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
