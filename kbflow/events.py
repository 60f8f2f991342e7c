"""What the agencies send kbflow: the case start and the events of PROCESS.md §3.

A case starts with a ``CaseStart`` (step 1's report). Every later event is a Temporal
update named after its ``Event``; its body is that event's model (``kbflow.case.RULES``
pairs each event with its model and its rule). Every event
names its ``sender`` and an ``idempotency_key`` (a repeat has exactly one effect), and may
carry the sender's weighing (afweging, PROCESS.md §2).

Field names that are §5 item names (``v_number``, ``goals``, …) carry that item's value;
which of them a sender may fill is read from the process table, not restated here.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from kbflow.items import (
    BODY_MAX_BYTES,
    PERSONAL,
    PERSONS_MAX,
    Count,
    CourtRequest,
    DepartureProcedure,
    DossierDocuments,
    Flag,
    GiDetails,
    Goals,
    LongText,
    Measure,
    Person,
    Relaas,
    Role,
    ShortText,
    VNumber,
    VNumbers,
    VvApplication,
)
from kbflow.process import OTS_MAX_MONTHS, Item, Party, reporters

#: An opaque case reference: ``KB-<year>-<6 to 12 capitals or digits>``. It is the workflow
#: id's suffix, which Temporal never encrypts, so it must say nothing about a person.
CaseRef = Annotated[str, StringConstraints(pattern=r"^KB-[0-9]{4}-[0-9A-Z]{6,12}$")]
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,80}$")]
#: A function or staff id such as ``RvdK-privacy-01``: no spaces, so not a full name.
StaffId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{2,40}$")]


class Weighing(BaseModel):
    """A party's per-case weighing (afweging) before it discloses (PROCESS.md §2).

    All three tests must hold: a weighing that finds sharing unnecessary, disproportionate
    or replaceable by less intrusive means does not allow the disclosure.
    """

    model_config = PERSONAL

    necessary: Flag = Field(description="Sharing is necessary for the purpose")
    proportionate: Flag = Field(description="Sharing is proportionate to the purpose")
    subsidiarity: Flag = Field(description="The aim can't be reached by less intrusive means")
    note: LongText = Field(description="Why; what was left out")
    by: ShortText = Field(description="Function or staff id of who weighed (not a name)")

    @model_validator(mode="after")
    def _supports_disclosure(self) -> Weighing:
        if not (self.necessary and self.proportionate and self.subsidiarity):
            raise ValueError(
                "weighing does not support disclosure: necessary, proportionate and "
                "subsidiarity must all hold"
            )
        return self


class PersonInput(Person):
    """A person as the reporter knows them: NAW, date of birth, role, V-nummer if known."""

    v_number: VNumber | None = Field(default=None, description="V-nummer, if known")


def _person_fragments(person: PersonInput) -> list[str]:
    """Words of the name, address and place, the date of birth in common digit forms, and
    the V-nummer: what an opaque case ref must not contain."""
    text = f"{person.name} {person.address} {person.place_of_residence}".upper()
    parts = [p for p in re.split(r"[^0-9A-Z]+", text) if len(p) >= 3 and not p.isdigit()]
    parts += [person.date_of_birth.strftime(form)
              for form in ("%Y%m%d", "%d%m%Y", "%m%d%Y", "%y%m%d", "%d%m%y")]
    if person.v_number:
        parts.append(person.v_number)
    return parts


def _reveals(suffix: str, fragment: str) -> bool:
    # "VERZINSEL" reveals the street "VERZINSELLAAN"; short suffix pieces do not count.
    return fragment in suffix or (len(suffix) >= 5 and suffix in fragment)


class CaseStart(BaseModel):
    """Starts a case: the step-1 report of concerns (PROCESS.md §3 step 1).

    Raises (as ``pydantic.ValidationError``, naming the field, never the value):
        case_ref not opaque (it contains part of a person's name, date of birth or
        V-nummer); no child among ``persons``; a reporter that may not report in step 1.
    """

    model_config = PERSONAL

    case_ref: CaseRef = Field(description="Opaque case reference, e.g. KB-2026-7Q4M2X")
    persons: tuple[PersonInput, ...] = Field(min_length=1, max_length=PERSONS_MAX)
    reporter: Party = Field(description="VT, or COA / AVIM / IND for an urgent report")
    relaas: Relaas
    weighing: Weighing = Field(description="The reporter's weighing for its disclosure")
    retention_days: int | None = Field(
        default=None, ge=1, le=3650,
        description="Days the case's personal data is kept after it closes "
                    "(default: kbflow.process.RETENTION_AFTER_CLOSE)")

    @model_validator(mode="after")
    def _check(self) -> CaseStart:
        if self.reporter not in reporters():
            raise ValueError("reporter: only VT, COA, AVIM or IND report in step 1")
        if not any(p.role is Role.CHILD for p in self.persons):
            raise ValueError("persons: a case concerns at least one child")
        identities = {(" ".join(p.name.casefold().split()), p.date_of_birth)
                      for p in self.persons}
        if len(identities) != len(self.persons):
            # The processing log's data-subject id is a keyed hash of name and date of
            # birth: two persons sharing both would be one data subject there.
            raise ValueError("persons: two persons share a name and date of birth; "
                             "list each person once and tell them apart")
        suffix = self.case_ref.split("-", 2)[2]
        if suffix.isdigit():
            raise ValueError("case_ref: must be opaque; digits only could be a V-nummer or a "
                             "date, mix in capitals")
        for person in self.persons:
            if any(_reveals(suffix, fragment) for fragment in _person_fragments(person)):
                raise ValueError(
                    "case_ref: must be opaque; it contains part of a person's name, "
                    "address, place, date of birth or V-nummer"
                )
        return self


class Event(StrEnum):
    """Every event kbflow accepts, by its Temporal update name, in PROCESS.md §3 order.

    What each one may do, when, and what it awaits next is its rule in
    ``kbflow.case.RULES``.
    """

    WEIGHING = "weighing"
    ANNOUNCE_INVESTIGATION = "announce_investigation"
    RESIDENCE_INFORMATION = "residence_information"
    INVESTIGATION_DECISION = "investigation_decision"
    APPLICATION_REJECTED = "application_rejected"
    INVESTIGATION_RESULT = "investigation_result"
    COURT_RULING = "court_ruling"
    ADVICE_AVAILABILITY_REQUEST = "advice_availability_request"
    ADVICE_AVAILABILITY = "advice_availability"
    ADVICE_REQUEST = "advice_request"
    ADVICE = "advice"
    EXTENSION_RULING = "extension_ruling"
    EXTENSION_ADVICE_REQUEST = "extension_advice_request"
    EXTENSION_ADVICE = "extension_advice"
    WARM_HANDOVER = "warm_handover"
    V_NUMBER_CORRECTION = "v_number_correction"


class AgencyEvent(BaseModel):
    """Fields every event has."""

    model_config = PERSONAL

    sender: Party = Field(description="Party code of the sender (PROCESS.md §1)")
    idempotency_key: IdempotencyKey = Field(
        description="Unique per event (8-80 of A-Z a-z 0-9 . _ : -); a repeat is a no-op")
    weighing: Weighing | None = Field(
        default=None, description="The sender's weighing, if not on record yet"
    )

    def item_values(self) -> dict[Item, object]:
        """The §5 items this event carries, by item (unset fields left out)."""
        names = {item.value for item in Item}
        return {
            Item(name): getattr(self, name)
            for name in type(self).model_fields
            if name in names and getattr(self, name) is not None
        }


def body_size_problem(body: bytes | str, what: str = "body") -> str | None:
    """Why a JSON event body or case start is too large, or ``None``.

    ``body`` is the JSON as sent; the limit is ``kbflow.items.BODY_MAX_BYTES``.
    """
    size = len(body.encode() if isinstance(body, str) else body)
    if size <= BODY_MAX_BYTES:
        return None
    return (f"{what}: {size} bytes of JSON, over the limit of {BODY_MAX_BYTES} bytes "
            "(128 KiB) for one event body; send long documents by reference")


class RecordWeighing(AgencyEvent):
    """A party records its weighing ahead of its first disclosure (PROCESS.md §2, §4)."""

    weighing: Weighing = Field(description="The weighing to record")


class AnnounceInvestigation(AgencyEvent):
    """Step 2: the RvdK announces its investigation to IND and DT&V."""


class ResidenceInformation(AgencyEvent):
    """Step 3: IND (residence situation) or DT&V (departure procedure) informs the RvdK.

    A sender that does not know the family sends ``known_to_sender: false`` and nothing else.
    """

    known_to_sender: Flag = Field(description="Whether the child / family is known to the sender")
    v_number: VNumbers | None = Field(default=None, description="V-nummers the sender knows")
    residence_status: ShortText | None = Field(default=None, description="IND: verblijfsstatus")
    procedure_history: LongText | None = Field(
        default=None, description="IND: proceduregeschiedenis")
    removal_date: dt.date | None = Field(default=None, description="IND: uitzetdatum")
    departure_procedure: DepartureProcedure | None = Field(
        default=None, description="DT&V: state of the departure procedure")

    @model_validator(mode="after")
    def _unknown_sends_nothing(self) -> ResidenceInformation:
        if not self.known_to_sender and set(self.item_values()) != {Item.KNOWN_TO_SENDER}:
            raise ValueError("known_to_sender is false: send no other item (PROCESS.md §5)")
        return self


class InvestigationDecision(AgencyEvent):
    """The RvdK decides, after step 3, whether to investigate (no: the case closes)."""

    investigate: Flag = Field(description="true: investigate; false: the case closes")


class ApplicationRejected(AgencyEvent):
    """Step 4: IND informs DT&V that an application was rejected or a right withdrawn."""

    decision: Literal["rejection", "withdrawal"] = Field(
        description="rejection of an application, or withdrawal of a residence right")
    procedure_history: LongText = Field(description="The procedure history")
    dossier_documents: DossierDocuments = Field(
        description="References of the overdrachtsdossier's documents")


class InvestigationResult(AgencyEvent):
    """Step 5: the RvdK reports its result and which measure it asks the court for."""

    court_request: CourtRequest = Field(description="The measure asked for, or none")
    goals: Goals | None = Field(default=None, description="Goals; required with a request")
    means: Goals | None = Field(default=None, description="Means; required with a request")

    @model_validator(mode="after")
    def _goals_with_request(self) -> InvestigationResult:
        if self.court_request is not CourtRequest.NONE and not (self.goals and self.means):
            raise ValueError("goals and means: required when a measure is requested")
        return self


OtsMonths = Annotated[Count, Field(ge=1, le=OTS_MAX_MONTHS)]


class CourtRulingEvent(AgencyEvent):
    """Step 6: the RvdK passes on the court's ruling on the requested measure.

    An OTS needs the GI and its length in months (at most 12, BW 1:260), counted from the
    ruling's date ``ruled_on``.
    """

    measure: Measure = Field(description="What the court ordered")
    ruled_on: dt.date | None = Field(
        default=None, description="Date of the ruling (required; not in the future, not "
                                  "before the case's report); the OTS runs from it")
    summary: LongText = Field(description="The ruling's operative part")
    gi: GiDetails | None = Field(default=None, description="The GI; required for an OTS")
    goals: Goals | None = Field(default=None, description="Goals in the order (OTS)")
    means: Goals | None = Field(default=None, description="Means in the order (OTS)")
    ots_months: OtsMonths | None = Field(default=None, description="OTS length, 1-12 months")

    @model_validator(mode="after")
    def _ots_needs(self) -> CourtRulingEvent:
        if self.measure is Measure.OTS and (self.gi is None or self.ots_months is None):
            raise ValueError("gi and ots_months: required for an OTS")
        if self.measure is not Measure.OTS and self.ots_months is not None:
            raise ValueError("ots_months: only an OTS has a length")
        return self


class ExtensionRuling(AgencyEvent):
    """Step 6 again: the RvdK passes on the judge's ruling on extending the OTS."""

    extended: Flag = Field(description="Whether the judge extended the OTS")
    ruled_on: dt.date | None = Field(
        default=None, description="Date of the ruling (required; not in the future, not "
                                  "before the case's report)")
    summary: LongText = Field(description="The ruling's operative part")
    goals: Goals | None = Field(default=None, description="Goals in the order")
    means: Goals | None = Field(default=None, description="Means in the order")
    ots_months: OtsMonths | None = Field(
        default=None, description="Extension, 1-12 months from the current end date")

    @model_validator(mode="after")
    def _months_when_extended(self) -> ExtensionRuling:
        if self.extended != (self.ots_months is not None):
            raise ValueError("ots_months: required exactly when the OTS is extended")
        return self


class AdviceAvailabilityRequest(AgencyEvent):
    """Step 7, question: a VV application is filed; IND asks DT&V whether an advice exists."""


class AdviceAvailability(AgencyEvent):
    """Step 7, answer: DT&V tells IND whether an advice is available."""

    advice_available: Flag = Field(description="Whether a DT&V advice exists")


class AdviceRequest(AgencyEvent):
    """Step 8: IND asks DT&V for an advice; the court ruling of step 6 goes with it."""

    vv_application: VvApplication = Field(description="Copy of the VV application")
    rvdk_report: LongText = Field(description="The RvdK's report")

    @model_validator(mode="after")
    def _first_application(self) -> AdviceRequest:
        if self.vv_application.kind != "first":
            raise ValueError("vv_application.kind: must be 'first' in step 8")
        return self


class Advice(AgencyEvent):
    """Step 9 and step 11: DT&V's advice to IND."""

    return_perspective: LongText = Field(description="Advice on the perspective on return")
    transferability: LongText = Field(description="Advice on transferability")


class ExtensionAdviceRequest(AgencyEvent):
    """Step 10: after the OTS is extended, IND asks DT&V for a new advice."""

    vv_application: VvApplication = Field(description="Copy of the application to extend")
    gi_report: LongText | None = Field(default=None, description="The GI's report")
    rvdk_report: LongText | None = Field(default=None, description="The RvdK's report")

    @model_validator(mode="after")
    def _a_report(self) -> ExtensionAdviceRequest:
        if self.gi_report is None and self.rvdk_report is None:
            raise ValueError("gi_report or rvdk_report: at least one is required")
        if self.vv_application.kind != "extension":
            raise ValueError("vv_application.kind: must be 'extension' in step 10")
        return self


class WarmHandover(AgencyEvent):
    """Step 12: DT&V starts the warm handover (no VV, transferable, no custody termination)."""

    handover_progress: LongText = Field(description="Progress of the handover")


class VNumberCorrection(AgencyEvent):
    """IND or DT&V corrects a V-nummer on record (kbflow choice, README "V-nummers").

    The aliens chain keeps the V-nummers, so only its parties correct one. The corrected
    number replaces the one on record for that person, with the sender as its source; it
    is disclosed only through the table's own flows afterwards (it travels in no packet
    of its own: the process table has no such flow).
    """

    v_number: VNumbers = Field(min_length=1, description="The correct V-nummers")


class ErasureReason(StrEnum):
    """Why a case is erased: a fixed list, so that no free text (a name, a date of birth)
    lands in the erasure record, which outlives the case."""

    ART_17_REQUEST = "art-17-request"  # the data subject's right to erasure
    ART_21_OBJECTION = "art-21-objection"  # a successful objection
    UNLAWFUL_PROCESSING = "unlawful-processing"  # art. 17(1)(d)
    COURT_ORDER = "court-order"
    RETENTION_ENDED = "retention-ended"  # the retention timer


class ErasureRequest(BaseModel):
    """An operator's request to erase a case now (GDPR art. 17 and others).

    Not an agency event: it discloses nothing and is accepted in any phase.
    """

    model_config = PERSONAL

    requested_by: StaffId = Field(description="Function or staff id, no spaces (not a name)")
    reason: ErasureReason = Field(description="Why, from a fixed list")
