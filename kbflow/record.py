"""The case record: everything kbflow knows about one case, gathered from its events.

The case rules (kbflow/case.py) write it from the events and read what they decide on
(the measure requested, whether an advice exists); packets are projections of it
(kbflow/packets.py). It holds personal data and never leaves the workflow except inside
a packet.
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
    DocumentRef,
    GiDetails,
    PersonVNumber,
    Relaas,
    VvApplication,
)
from kbflow.process import Item, Party


class VNumberOnRecord(BaseModel):
    """One person's V-nummer with its provenance (issue: who gave it, who knows it).

    ``given_by`` is the party whose report or event put it on record; ``known_to`` the
    parties that gave it or received it in a packet. A packet carries only the V-nummers
    its sender knows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    person: int
    v_number: str
    given_by: Party
    known_to: frozenset[Party]


class CaseRecord(BaseModel):
    """The full record of one case; one attribute per §5 item (PROCESS.md §5).

    ``known_to`` holds ``known_to_sender`` per sender (step 3 has two senders);
    ``v_numbers`` the V-nummers with their provenance.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    case_ref: str
    persons: tuple[PersonInput, ...]
    relaas: Relaas
    v_numbers: tuple[VNumberOnRecord, ...] = ()
    known_to: dict[Party, bool] = Field(default_factory=dict)
    residence_status: str | None = None
    procedure_history: str | None = None
    removal_date: dt.date | None = None
    departure_procedure: DepartureProcedure | None = None
    dossier_documents: tuple[str | DocumentRef, ...] | None = None
    court_request: CourtRequest | None = None
    goals: tuple[str, ...] | None = None
    means: tuple[str, ...] | None = None
    gi: GiDetails | None = None
    court_ruling: CourtRuling | None = None
    advice_available: bool | None = None
    vv_application: VvApplication | None = None
    rvdk_report: str | DocumentRef | None = None
    gi_report: str | DocumentRef | None = None
    return_perspective: str | None = None
    transferability: str | None = None
    handover_progress: str | None = None

    @classmethod
    def open(cls, start: CaseStart) -> CaseRecord:
        """The record at step 1: the reported persons, the relaas, and the V-nummers the
        reporter gave (known to the reporter only: step 1 does not disclose them)."""
        numbers = tuple(
            VNumberOnRecord(person=index, v_number=person.v_number, given_by=start.reporter,
                            known_to=frozenset({start.reporter}))
            for index, person in enumerate(start.persons) if person.v_number
        )
        persons = tuple(person.model_copy(update={"v_number": None})
                        for person in start.persons)
        return cls(case_ref=start.case_ref, persons=persons, relaas=start.relaas,
                   v_numbers=numbers)

    def v_number_of(self, person: int) -> VNumberOnRecord | None:
        """The V-nummer on record for person ``person`` (an index), if any."""
        return next((number for number in self.v_numbers if number.person == person), None)

    def contradictions(self, numbers: tuple[PersonVNumber, ...]) -> list[str]:
        """For each of ``numbers`` that differs from the V-nummer on record for its person:
        which person and whose number it contradicts (never the numbers themselves)."""
        problems = []
        for index, number in enumerate(numbers):
            on_record = self.v_number_of(number.person)
            if on_record is not None and on_record.v_number != number.v_number:
                problems.append(
                    f"v_number[{index}]: differs from the V-nummer on record for person "
                    f"{number.person}, given by {on_record.given_by.value}")
        return problems

    def value_of(self, item: Item, sender: Party) -> Any:
        """The current value of ``item`` as ``sender`` would disclose it; ``None`` if unknown.

        V-nummers: only those ``sender`` knows (gave, or received in a packet).
        """
        if item is Item.V_NUMBER:
            numbers = tuple(
                PersonVNumber(person=number.person, v_number=number.v_number)
                for number in sorted(self.v_numbers, key=lambda n: n.person)
                if sender in number.known_to
            )
            return numbers or None
        if item is Item.KNOWN_TO_SENDER:
            return self.known_to.get(sender)
        return getattr(self, item.value)

    def merge(self, event: AgencyEvent, **more: Any) -> CaseRecord:
        """A new record with the event's §5 items (and ``more``) written over this one.

        V-nummers: a new one is recorded with the sender as its source; one equal to the
        number on record makes the sender know it too; one that contradicts the number on
        record is not written (the first source wins; the validator refuses such events, so
        this happens only when two events raced past it).

        Raises:
            ValueError: a V-nummer names a person the case does not have.
        """
        values: dict[str, Any] = {item.value: value for item, value in event.item_values().items()}
        numbers: tuple[PersonVNumber, ...] = values.pop(Item.V_NUMBER.value, None) or ()
        known = values.pop(Item.KNOWN_TO_SENDER.value, None)
        record = self.with_v_numbers(numbers, event.sender) if numbers else self
        if known is not None:
            values["known_to"] = {**self.known_to, event.sender: known}
        values.update(more)
        return record.model_copy(update=values)

    def with_v_numbers(self, numbers: tuple[PersonVNumber, ...], sender: Party, *,
                       correct: bool = False) -> CaseRecord:
        """A new record with ``sender``'s V-nummers; ``correct`` replaces contradicting ones
        (a ``v_number_correction``), which only ``sender`` then knows.

        Raises:
            ValueError: a V-nummer names a person the case does not have.
        """
        by_person = {number.person: number for number in self.v_numbers}
        for number in numbers:
            if number.person >= len(self.persons):
                raise ValueError("v_number.person: the case has no person with that index")
            on_record = by_person.get(number.person)
            if on_record is None or (correct and on_record.v_number != number.v_number):
                by_person[number.person] = VNumberOnRecord(
                    person=number.person, v_number=number.v_number, given_by=sender,
                    known_to=frozenset({sender}))
            elif on_record.v_number == number.v_number:
                by_person[number.person] = on_record.model_copy(
                    update={"known_to": on_record.known_to | {sender}})
        ordered = tuple(by_person[person] for person in sorted(by_person))
        return self.model_copy(update={"v_numbers": ordered})

    def disclosed_v_numbers(self, numbers: tuple[PersonVNumber, ...],
                            recipient: Party) -> CaseRecord:
        """A new record in which ``recipient`` knows ``numbers`` (it received them)."""
        sent = {(number.person, number.v_number) for number in numbers}
        return self.model_copy(update={"v_numbers": tuple(
            number.model_copy(update={"known_to": number.known_to | {recipient}})
            if (number.person, number.v_number) in sent else number
            for number in self.v_numbers)})
