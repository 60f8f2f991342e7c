"""The processing log: one entry per data subject per disclosure (LDV, REFERENCES.md).

Entries name items, never their values; the data subject is a pseudonym (keyed hash, see
``activities/pseudonyms.py``). Legal basis and purpose are copied from the processing
activity so that an auditor reads them without a join.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from kbflow.items import Person
from kbflow.packets import Packet
from kbflow.process import Party, Step

#: Maps a person to their pseudonymous data-subject id.
Pseudonymise = Callable[[Person], str]


class ProcessingLogEntry(BaseModel):
    """One disclosure of one data subject's data to one recipient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_id: str
    case_ref: str
    step: Step
    sender: Party
    recipient: Party
    processing_activity_id: str = Field(description="dpl.core.processing_activity_id")
    data_subject_id: str = Field(description="dpl.core.data_subject_id (pseudonym)")
    data_subject_id_type: str = Field(default="kbflow-pseudonym")
    purpose: str
    legal_basis: str
    items: tuple[str, ...] = Field(description="Item names disclosed, persons included")
    at: dt.datetime


def entries_for(packet: Packet, pseudonymise: Pseudonymise) -> list[ProcessingLogEntry]:
    """The log entries a delivered packet owes: one per data subject in its body (LDV).

    Persons with the same pseudonym (listed twice, or same name and date of birth) are one
    data subject and get one entry.
    """
    items = tuple(sorted(packet.body))
    subjects = dict.fromkeys(pseudonymise(person) for person in packet.persons)
    return [
        ProcessingLogEntry(
            packet_id=packet.packet_id,
            case_ref=packet.case_ref,
            step=packet.step,
            sender=packet.sender,
            recipient=packet.recipient,
            processing_activity_id=packet.processing_activity_id,
            data_subject_id=subject_id,
            purpose=packet.purpose,
            legal_basis=packet.legal_basis,
            items=items,
            at=packet.created_at,
        )
        for subject_id in subjects
    ]


class DecodeEntry(BaseModel):
    """One operator's look at one case: the codec server decoded ``payload_count`` of the
    case's encrypted payloads for ``operator_id`` in one request (issue 7, governed
    decoding). One entry per case per request; ``kbflow disclosures`` shows them to the
    case's data subjects (GDPR art. 15).

    The decoded values are not logged, nor who the payloads are about: a case's data
    subjects are those of its packets' entries (``ProcessingLogEntry.case_ref``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(description="The codec request, shared by its entries")
    operator_id: str = Field(description="Staff id of the operator whose token was used")
    case_ref: str | None = Field(description="The case; null for payloads of no case "
                                             "(encrypted under the system key)")
    scope: str = Field(description="The data key's scope: the case's workflow id, or "
                                   "kbflow-system")
    payload_count: int = Field(ge=1, description="Encrypted payloads decoded")
    at: dt.datetime = Field(description="When they were decoded (UTC)")
