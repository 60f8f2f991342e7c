"""The case record: everything kbflow knows about one case, gathered from its events.

Packets are projections of this record (kbflow/packets.py); nothing else reads it. It
holds personal data and never leaves the workflow except inside a packet.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kbflow.events import AgencyEvent, CaseStart, PersonInput
from kbflow.items import (
    CourtRequest,
    CourtRuling,
    DepartureProcedure,
    GiDetails,
    PersonVNumber,
    Relaas,
    VvApplication,
)
from kbflow.process import Item, Party


class CaseRecord(BaseModel):
    """The full record of one case; one attribute per §5 item (PROCESS.md §5).

    ``known_to`` holds ``known_to_sender`` per sender (step 3 has two senders).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    case_ref: str
    persons: tuple[PersonInput, ...]
    relaas: Relaas
    known_to: dict[Party, bool] = Field(default_factory=dict)
    residence_status: str | None = None
    procedure_history: str | None = None
    removal_date: dt.date | None = None
    departure_procedure: DepartureProcedure | None = None
    dossier_documents: tuple[str, ...] | None = None
    court_request: CourtRequest | None = None
    goals: tuple[str, ...] | None = None
    means: tuple[str, ...] | None = None
    gi: GiDetails | None = None
    court_ruling: CourtRuling | None = None
    advice_available: bool | None = None
    vv_application: VvApplication | None = None
    rvdk_report: str | None = None
    gi_report: str | None = None
    return_perspective: str | None = None
    transferability: str | None = None
    handover_progress: str | None = None

    @classmethod
    def open(cls, start: CaseStart) -> CaseRecord:
        """The record at step 1: the reported persons and the relaas."""
        return cls(case_ref=start.case_ref, persons=start.persons, relaas=start.relaas)

    def value_of(self, item: Item, sender: Party) -> Any:
        """The current value of ``item`` as ``sender`` would disclose it; ``None`` if unknown."""
        if item is Item.V_NUMBER:
            numbers = tuple(
                PersonVNumber(person=index, v_number=person.v_number)
                for index, person in enumerate(self.persons)
                if person.v_number
            )
            return numbers or None
        if item is Item.KNOWN_TO_SENDER:
            return self.known_to.get(sender)
        return getattr(self, item.value)

    def merge(self, event: AgencyEvent, **more: Any) -> CaseRecord:
        """A new record with the event's §5 items (and ``more``) written over this one.

        V-nummers are written onto the persons they index.

        Raises:
            ValueError: a V-nummer names a person the case does not have.
        """
        values: dict[str, Any] = {item.value: value for item, value in event.item_values().items()}
        numbers: tuple[PersonVNumber, ...] = values.pop(Item.V_NUMBER.value, None) or ()
        known = values.pop(Item.KNOWN_TO_SENDER.value, None)
        persons = list(self.persons)
        for number in numbers:
            if number.person >= len(persons):
                raise ValueError("v_number.person: the case has no person with that index")
            persons[number.person] = persons[number.person].model_copy(
                update={"v_number": number.v_number}
            )
        values["persons"] = tuple(persons)
        if known is not None:
            values["known_to"] = {**self.known_to, event.sender: known}
        values.update(more)
        return self.model_copy(update=values)
