"""Minimised data packets (GDPR art. 5(1)(c); PROCESS.md §2 and §5).

A packet is an envelope (no personal data: ids, step, parties, legal basis, purpose,
systems, channel, time, pseudonymous subject ids) around a body that holds ``persons``
(NAW + date of birth + role) and exactly the items of its step's flow. The body model of
each flow is derived from the process table; ``project_packet`` is the one way to build
a packet from a case record and cannot put anything else in.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, create_model, model_validator

from kbflow.items import ITEM_TYPES, PERSONAL, Person
from kbflow.process import (
    PROCESS_TABLE,
    Item,
    Party,
    Step,
    legal_basis_of,
    processing_activity_id,
)
from kbflow.record import CaseRecord


@cache
def body_model(step: Step, sender: Party) -> type[BaseModel]:
    """The body model of ``sender``'s flow in ``step``: ``persons`` plus that flow's items.

    Every item is optional (a sender that does not know the family sends only
    ``known_to_sender``); no other field is accepted (``extra="forbid"``).

    Raises:
        KeyError: ``sender`` has no flow in ``step``.
    """
    flow = PROCESS_TABLE[step].flow_of(sender)
    fields: dict[str, Any] = {
        "persons": (tuple[Person, ...], Field(min_length=1, description="NAW + date of birth")),
    }
    for item in sorted(flow.items):
        fields[item.value] = (ITEM_TYPES[item] | None, Field(default=None))
    return create_model(
        f"Step{int(step):02d}{sender.value.title()}Body", __config__=PERSONAL, **fields
    )


class Packet(BaseModel):
    """One disclosure to one recipient (PROCESS.md §5).

    ``body`` is validated against the flow's body model and stored as JSON values with
    unset items left out, so ``body``'s keys are ``persons`` plus the items present.
    """

    model_config = PERSONAL

    packet_id: str = Field(description="Unique id; delivery is idempotent by it")
    case_ref: str
    step: Step
    sender: Party
    recipient: Party
    processing_activity_id: str = Field(description="Register id (LDV), see kbflow.register")
    legal_basis: str
    purpose: str
    systems: tuple[str, ...]
    channel: str
    created_at: AwareDatetime
    body: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _minimise_body(cls, data: Any) -> Any:
        if isinstance(data, dict) and "body" in data and "step" in data and "sender" in data:
            model = body_model(Step(data["step"]), Party(data["sender"]))
            body = data["body"]
            if isinstance(body, BaseModel):
                body = body.model_dump()
            data = {**data, "body": model.model_validate(body).model_dump(
                mode="json", exclude_none=True)}
        return data

    @model_validator(mode="after")
    def _recipient_in_flow(self) -> Packet:
        flow = PROCESS_TABLE[self.step].flow_of(self.sender)
        if self.recipient not in flow.recipients:
            raise ValueError(f"recipient: {self.recipient.value} gets nothing in step "
                             f"{int(self.step)} from {self.sender.value}")
        return self

    @property
    def persons(self) -> tuple[Person, ...]:
        """The data subjects of this packet (NAW + date of birth + role)."""
        return tuple(Person.model_validate(person) for person in self.body["persons"])

    @property
    def items(self) -> frozenset[Item]:
        """The §5 items this packet's body holds (``persons`` not counted)."""
        return frozenset(Item(key) for key in self.body if key != "persons")


def project_packet(
    record: CaseRecord,
    step: Step,
    sender: Party,
    recipient: Party,
    *,
    packet_id: str,
    created_at: dt.datetime,
) -> Packet:
    """Project the case record onto ``sender``'s flow in ``step`` for ``recipient``.

    Only the flow's items are read from the record; a sender that told the RvdK it does
    not know the family (``known_to_sender`` false) discloses nothing else (PROCESS.md §5).

    Raises:
        KeyError: ``sender`` has no flow in ``step``.
        ValueError: ``recipient`` is not a recipient of that flow.
    """
    spec = PROCESS_TABLE[step]
    flow = spec.flow_of(sender)
    items = flow.items
    if Item.KNOWN_TO_SENDER in items and record.known_to.get(sender) is False:
        items = frozenset({Item.KNOWN_TO_SENDER})
    body: dict[str, Any] = {
        "persons": [
            Person.model_validate(person.model_dump(include=set(Person.model_fields)))
            for person in record.persons
        ]
    }
    for item in items:
        value = record.value_of(item, sender)
        if value is not None:
            body[item.value] = value
    return Packet(
        packet_id=packet_id,
        case_ref=record.case_ref,
        step=step,
        sender=sender,
        recipient=recipient,
        processing_activity_id=processing_activity_id(step, sender),
        legal_basis=legal_basis_of(sender).value,
        purpose=spec.purpose,
        systems=tuple(system.value for system in spec.systems),
        channel=flow.channel.value,
        created_at=created_at,
        body=body,
    )
