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
import unicodedata
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from kbflow.case_refs import MODEL_PATTERN
from kbflow.items import (
    BODY_MAX_BYTES,
    PERSONAL,
    PERSONS_MAX,
    Count,
    CourtRequest,
    Date,
    DepartureProcedure,
    DocumentOrText,
    DocumentRef,
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

#: A case reference as the workflow's input carries it: ``KB-<year>-<8>-<check>``
#: (``kbflow.case_refs``, made by kbflow, never chosen by a person) or a ref of a case
#: started before that (``KB-<year>-<6 to 12 capitals or digits>``), which running cases
#: and recorded histories hold. The check character is checked where refs are made and
#: read (the CLI), not here: replay must decode every ref a history holds.
CaseRef = Annotated[str, StringConstraints(pattern=MODEL_PATTERN)]
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,80}$")]
#: A function or staff id such as ``RvdK-privacy-01``: no spaces, so not a full name.
StaffId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{2,40}$")]
#: Age from which a person is no longer a child (BW 1:233).
ADULT_AGE = 18


def subject_name(name: str) -> str:
    """The form of a name that identifies a data subject: Unicode NFC, case-folded, NFC
    again (case folding can decompose), whitespace runs collapsed to one space.

    A name typed in NFD (macOS, some web forms) and the same name in NFC give the same
    form, and so the same pseudonym (``activities.pseudonyms``); a name that is NFC
    already gives what ``" ".join(name.casefold().split())`` gave before.
    """
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return " ".join(folded.split())


def _adult_on(date_of_birth: dt.date) -> dt.date:
    """The day a person born on ``date_of_birth`` turns 18 (born 29 February: 1 March)."""
    year = date_of_birth.year + ADULT_AGE
    try:
        return date_of_birth.replace(year=year)
    except ValueError:  # 29 February in a year that has none
        return dt.date(year, 3, 1)


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


class CaseStart(BaseModel):
    """Starts a case: the step-1 report of concerns (PROCESS.md §3 step 1).

    Raises (as ``pydantic.ValidationError``, naming the field, never the value):
        no child among ``persons``; two persons with the same name and date of birth; a
        reporter that may not report in step 1; ``retention_days`` not a JSON integer.

    Nothing here depends on today's date (replaying an old history must decode its start
    as it did then); whether the start is plausible on its report date is
    ``implausibility``.
    """

    model_config = PERSONAL

    case_ref: CaseRef = Field(description="Case reference made by kbflow, e.g. "
                                          "KB-2026-7K4M2XCH-R (kbflow.case_refs)")
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description="Unique per case start; repeating a start with it returns the same case "
                    "(required by `kbflow start`; absent in starts recorded before it)")
    persons: tuple[PersonInput, ...] = Field(min_length=1, max_length=PERSONS_MAX)
    reporter: Party = Field(description="VT, or COA / AVIM / IND for an urgent report")
    relaas: Relaas
    weighing: Weighing = Field(description="The reporter's weighing for its disclosure")
    retention_days: int | None = Field(
        default=None, ge=1, le=3650, strict=True,
        description="Days the case's personal data is kept after it closes "
                    "(default: kbflow.process.RETENTION_AFTER_CLOSE)")

    @model_validator(mode="after")
    def _check(self) -> CaseStart:
        if self.reporter not in reporters():
            raise ValueError("reporter: only VT, COA, AVIM or IND report in step 1")
        if not any(p.role is Role.CHILD for p in self.persons):
            raise ValueError("persons: a case concerns at least one child")
        identities = {(subject_name(p.name), p.date_of_birth) for p in self.persons}
        if len(identities) != len(self.persons):
            # The processing log's data-subject id is a keyed hash of name and date of
            # birth: two persons sharing both would be one data subject there.
            raise ValueError("persons: two persons share a name and date of birth; "
                             "list each person once and tell them apart")
        return self

    def implausibility(self, report_date: dt.date) -> str | None:
        """Why this start cannot be true on ``report_date`` (the day it is reported), in
        one line naming the field and never its value; None if it can.

        A date of birth after the report date is "in the future"; every person with role
        child must be under 18 on the report date; no two persons share a V-nummer.
        Pure: the caller passes the date (the CLI today's, the workflow its start time),
        so that validating the model never depends on the clock.
        """
        for index, person in enumerate(self.persons):
            if person.date_of_birth > report_date:
                return f"persons[{index}].date_of_birth: in the future"
        for index, person in enumerate(self.persons):
            if person.role is Role.CHILD and _adult_on(person.date_of_birth) <= report_date:
                return f"persons[{index}]: a child must be under 18 on the report date"
        given: dict[str, int] = {}
        for index, person in enumerate(self.persons):
            if person.v_number is not None and person.v_number in given:
                return (f"persons[{index}].v_number: the same V-nummer as "
                        f"persons[{given[person.v_number]}]'s; a V-nummer names one person")
            if person.v_number is not None:
                given[person.v_number] = index
        return None


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


def body_size(body: BaseModel) -> int:
    """Bytes of ``body`` as compact JSON (UTF-8) of the fields it gives: what the limit
    ``kbflow.items.BODY_MAX_BYTES`` counts, the same for the CLI and the workflow."""
    return len(body.model_dump_json(exclude_none=True).encode())


def body_size_problem(body: BaseModel, what: str = "body") -> str | None:
    """Why an event body or case start is too large (``body_size`` over
    ``kbflow.items.BODY_MAX_BYTES``), or ``None``."""
    size = body_size(body)
    if size <= BODY_MAX_BYTES:
        return None
    return (f"{what}: {size} bytes as compact JSON, over the limit of {BODY_MAX_BYTES} "
            "bytes (128 KiB) for one event body; send long documents by reference")


#: Fields that a body as sent must give although its model, which also decodes the
#: histories recorded before them, leaves them optional: the CLI requires them and the
#: event reference and ``kbflow schema`` mark them required. The workflow's validator
#: requires ``ruled_on`` itself (``kbflow.case.CaseState.admit``). ``case``: the start.
REQUIRED_WHEN_SENT: dict[str, tuple[str, ...]] = {
    "case": ("idempotency_key",),
    "court_ruling": ("ruled_on",),
    "extension_ruling": ("ruled_on",),
}
#: Fields of a model that a body as sent must not give: kbflow fills them in.
MADE_BY_KBFLOW: dict[str, tuple[str, ...]] = {"case": ("case_ref",)}


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
    removal_date: Date | None = Field(default=None, description="IND: uitzetdatum")
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
    ruled_on: Date | None = Field(
        default=None, description="Date of the ruling (required; not in the future, not "
                                  "before the case's report); the OTS runs from it")
    summary: LongText = Field(description="The ruling's operative part")
    gi: GiDetails | None = Field(default=None, description="The GI; required for an OTS")
    goals: Goals | None = Field(default=None, description="Goals in the order (OTS)")
    means: Goals | None = Field(default=None, description="Means in the order (OTS)")
    ots_months: OtsMonths | None = Field(default=None, description="OTS length, 1-12 months")
    document: DocumentRef | None = Field(
        default=None, description="The ruling itself, by reference (uploaded first)")

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
    ruled_on: Date | None = Field(
        default=None, description="Date of the ruling (required; not in the future, not "
                                  "before the case's report)")
    summary: LongText = Field(description="The ruling's operative part")
    goals: Goals | None = Field(default=None, description="Goals in the order")
    means: Goals | None = Field(default=None, description="Means in the order")
    ots_months: OtsMonths | None = Field(
        default=None, description="Extension, 1-12 months from the current end date")
    document: DocumentRef | None = Field(
        default=None, description="The ruling itself, by reference (uploaded first)")

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
    rvdk_report: DocumentOrText = Field(
        description="The RvdK's report, as text or by reference")

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
    gi_report: DocumentOrText | None = Field(
        default=None, description="The GI's report, as text or by reference")
    rvdk_report: DocumentOrText | None = Field(
        default=None, description="The RvdK's report, as text or by reference")

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
