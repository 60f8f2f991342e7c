"""Value models for the packet vocabulary of PROCESS.md §5.

Every model here may carry personal data, so every model hides input values from its
validation errors (``hide_input_in_errors``): an error names the field and the reason,
never the value.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    Tag,
)
from pydantic_core import PydanticCustomError

from kbflow.process import Item

#: Frozen, closed, and silent about input values in errors.
PERSONAL = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

# ---- limits -------------------------------------------------------------------------------
# Every text and list has a maximum, and every event body a total size limit, so that the
# largest valid event and the largest valid case stay far inside Temporal's limits (2 MB per
# payload, 4 MB per gRPC message; README "Limits" shows the arithmetic and
# tests/test_limits.py runs the largest of each on the test server).

#: Characters of a short text (a name, an address, a status, a document reference).
SHORT_TEXT_MAX = 200
#: Characters of a long text (an account, a goal, a report, an advice).
LONG_TEXT_MAX = 4000
#: Persons in one case (the child, parents, carers, siblings).
PERSONS_MAX = 20
#: Goals, and means, of one investigation result or ruling.
GOALS_MAX = 30
#: Dossier documents listed in one overdrachtsdossier (references, not the documents).
DOSSIER_DOCUMENTS_MAX = 200
#: Bytes of one event body or case start as JSON (UTF-8): 128 KiB.
BODY_MAX_BYTES = 128 * 1024
#: Bytes of one document (``DocumentRef``), uploaded once and stored outside Temporal's
#: history: 32 MiB. Events and packets carry only its reference.
DOCUMENT_MAX_BYTES = 32 * 1024 * 1024
#: The media types a document may have: PDF, PNG, JPEG, plain text, XML, and the office
#: formats of OOXML (Word, Excel, PowerPoint) and ODF (text, spreadsheet, presentation).
DOCUMENT_MEDIA_TYPES: tuple[str, ...] = (
    "application/pdf",
    "image/png",
    "image/jpeg",
    "text/plain",
    "application/xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
)
#: A document id as kbflow makes it: ``doc-`` and 32 lower-case hex digits (random; it
#: says nothing about the case or the document).
DOCUMENT_ID_PATTERN = r"^doc-[0-9a-f]{32}$"

#: Control characters other than tab, newline and carriage return (C0, DEL, C1): refused in
#: texts (they carry no meaning in a report and would inflate its JSON sixfold).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _normal_text(text: object) -> object:
    """Texts are normalised to Unicode NFC at the edge, so that a name typed in NFD (macOS,
    some web forms) is the same name. This runs before the length is checked: NFC can make
    a text longer (U+1D160 becomes three characters), and the CLI, the workflow and every
    replay must count the same characters. A value that is not a string is left to the
    type check."""
    if not isinstance(text, str):
        return text
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters (other than tab and line breaks)")
    return unicodedata.normalize("NFC", text)


ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SHORT_TEXT_MAX),
    BeforeValidator(_normal_text),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=LONG_TEXT_MAX),
    BeforeValidator(_normal_text),
]
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _date_only(value: object) -> object:
    """A date in JSON is ``YYYY-MM-DD`` and nothing else: pydantic would also take a
    date-time at midnight (``2026-12-01T00:00:00Z``) or a number of seconds for a date;
    JSON input is strict. A value that is not a string is left to the type check."""
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise PydanticCustomError("date_parsing", "must be a date YYYY-MM-DD")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("date_type", "must be a date YYYY-MM-DD")
    return value


#: A calendar date, as JSON gives it: ``YYYY-MM-DD`` only.
Date = Annotated[dt.date, BeforeValidator(_date_only)]
#: A V-nummer is the ten-digit aliens-chain person number.
VNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]
#: JSON input is strict: ``"yes"`` is not a boolean and ``"3"`` is not an integer.
Flag = StrictBool
Count = StrictInt


class Role(StrEnum):
    """A person's role in the case."""

    CHILD = "child"
    PARENT = "parent"
    CARER = "carer"


class Person(BaseModel):
    """NAW + date of birth + role: the base data of every packet (PROCESS.md §2, §5 ``persons``)."""

    model_config = PERSONAL

    name: ShortText = Field(description="Full name")
    address: ShortText = Field(description="Street address")
    place_of_residence: ShortText = Field(description="Woonplaats")
    date_of_birth: Date = Field(description="Date of birth")
    role: Role = Field(description="Role in the case: child, parent or carer")


class PersonVNumber(BaseModel):
    """One person's V-nummer (§5 ``v_number``); ``person`` indexes the packet's ``persons``."""

    model_config = PERSONAL

    person: Count = Field(ge=0, lt=PERSONS_MAX,
                          description="Index into the case's persons list (0 is the first)")
    v_number: VNumber = Field(description="V-nummer, ten digits")


class Relaas(BaseModel):
    """The reporter's account (§5 ``relaas``, step 1)."""

    model_config = PERSONAL

    concerns: LongText = Field(description="Description of the concerns")
    history: LongText = Field(description="Voorgeschiedenis")
    assistance: LongText = Field(description="Hulpverlening so far")


class DepartureProcedure(BaseModel):
    """State of the departure procedure (§5 ``departure_procedure``, step 3 DT&V)."""

    model_config = PERSONAL

    travel_documents: Flag = Field(description="Are there travel documents")
    departure_feasible_short_term: Flag = Field(description="Can departure happen soon")


class CourtRequest(StrEnum):
    """Which measure the RvdK asks the court for (§5 ``court_request``, step 5)."""

    OTS = "ots"
    CUSTODY_TERMINATION = "custody_termination"
    NONE = "none"


class Measure(StrEnum):
    """What the court ordered (§5 ``court_ruling``, step 6)."""

    OTS = "ots"
    CUSTODY_TERMINATION = "custody_termination"
    REFUSED = "refused"


#: An organisation's OIN (Organisatie-identificatienummer): 20 digits.
Oin = Annotated[str, StringConstraints(pattern=r"^[0-9]{20}$")]


class GiDetails(BaseModel):
    """The certified institution that carries out the measure (§5 ``gi``, step 6)."""

    model_config = PERSONAL

    name: ShortText = Field(description="Name of the GI")
    contact: ShortText = Field(description="The GI's functional contact point")
    # Optional, and left out of the JSON when unset, so that rulings recorded before it
    # decode and digest (kbflow.case.event_digest) as they did.
    oin: Oin | None = Field(
        default=None, exclude_if=lambda value: value is None,
        description="The GI's OIN (20 digits): several GIs exist; the API requires it in "
                    "an OTS ruling and shows that GI the case")


class DocumentRef(BaseModel):
    """A document by reference: stored once, encrypted under its case's key, outside
    Temporal's history (``activities.documents``); only this travels in events and
    packets. No personal data: an id kbflow made, the media type, the size and the
    SHA-256 of the bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document_id: Annotated[str, StringConstraints(pattern=DOCUMENT_ID_PATTERN)] = Field(
        description="The document's id (from its upload), e.g. "
                    "doc-0123456789abcdef0123456789abcdef")
    media_type: Literal[DOCUMENT_MEDIA_TYPES] = Field(  # type: ignore[valid-type]
        description="The document's media type")
    size: Count = Field(ge=1, le=DOCUMENT_MAX_BYTES, description="Bytes")
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="SHA-256 of the bytes, 64 lower-case hex digits")


def _document_or_text(value: object) -> str:
    """A JSON object is a ``DocumentRef``, anything else a text (so that an error names
    the field of the kind that was given, never both)."""
    return "as-document" if isinstance(value, dict | DocumentRef) else "as-text"


#: A document's short text reference (as before documents were uploaded) or the
#: document itself, by reference. (The union's tags are no identifiers, so error paths
#: leave them out: ``dossier_documents[0].size``.)
DocumentOrReference = Annotated[
    Annotated[ShortText, Tag("as-text")] | Annotated[DocumentRef, Tag("as-document")],
    Discriminator(_document_or_text)]
#: A long text (a report, an application), or the document by reference.
DocumentOrText = Annotated[
    Annotated[LongText, Tag("as-text")] | Annotated[DocumentRef, Tag("as-document")],
    Discriminator(_document_or_text)]


class CourtRuling(BaseModel):
    """The court's ruling on the measure (§5 ``court_ruling``, steps 6, 8, 10)."""

    model_config = PERSONAL

    measure: Measure = Field(description="What the court ordered")
    ruled_on: Date = Field(description="Date of the ruling")
    extension: Flag = Field(default=False, description="Whether this ruling extends an OTS")
    ots_ends_on: Date | None = Field(default=None, description="End of the OTS, if one runs")
    summary: LongText = Field(description="The ruling's operative part (dictum)")
    document: DocumentRef | None = Field(default=None,
                                         description="The ruling itself, by reference")


class VvApplication(BaseModel):
    """Copy of a residence-permit application (§5 ``vv_application``, steps 8 and 10)."""

    model_config = PERSONAL

    kind: str = Field(pattern=r"^(first|extension)$", description="first or extension")
    filed_on: Date = Field(description="Date the application was filed")
    document: DocumentOrText = Field(
        description="The application, or its reference in INDIGO, as text; or the "
                    "document by reference (an object)")


#: V-nummers of a case's persons: at most one per person.
VNumbers = Annotated[tuple[PersonVNumber, ...], Field(max_length=PERSONS_MAX)]
#: Goals (or means): 1 to ``GOALS_MAX`` long texts.
Goals = Annotated[tuple[LongText, ...], Field(min_length=1, max_length=GOALS_MAX)]
#: An overdrachtsdossier's documents, 1 to ``DOSSIER_DOCUMENTS_MAX``: each a short text
#: reference or the document by reference.
DossierDocuments = Annotated[tuple[DocumentOrReference, ...],
                             Field(min_length=1, max_length=DOSSIER_DOCUMENTS_MAX)]


#: The value type of each item, read by the packet builder (kbflow/packets.py).
ITEM_TYPES: dict[Item, Any] = {
    Item.RELAAS: Relaas,
    Item.V_NUMBER: VNumbers,
    Item.KNOWN_TO_SENDER: Flag,
    Item.RESIDENCE_STATUS: ShortText,
    Item.PROCEDURE_HISTORY: LongText,
    Item.REMOVAL_DATE: Date,
    Item.DEPARTURE_PROCEDURE: DepartureProcedure,
    Item.DOSSIER_DOCUMENTS: DossierDocuments,
    Item.COURT_REQUEST: CourtRequest,
    Item.GOALS: Goals,
    Item.MEANS: Goals,
    Item.GI: GiDetails,
    Item.COURT_RULING: CourtRuling,
    Item.ADVICE_AVAILABLE: Flag,
    Item.VV_APPLICATION: VvApplication,
    Item.RVDK_REPORT: DocumentOrText,
    Item.GI_REPORT: DocumentOrText,
    Item.RETURN_PERSPECTIVE: LongText,
    Item.TRANSFERABILITY: LongText,
    Item.HANDOVER_PROGRESS: LongText,
}
