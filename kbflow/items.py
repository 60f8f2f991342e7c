"""Value models for the packet vocabulary of PROCESS.md §5.

Every model here may carry personal data, so every model hides input values from its
validation errors (``hide_input_in_errors``): an error names the field and the reason,
never the value.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kbflow.process import Item

#: Frozen, closed, and silent about input values in errors.
PERSONAL = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
#: A V-nummer is the ten-digit aliens-chain person number.
VNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]


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
    date_of_birth: dt.date = Field(description="Date of birth")
    role: Role = Field(description="Role in the case: child, parent or carer")


class PersonVNumber(BaseModel):
    """One person's V-nummer (§5 ``v_number``); ``person`` indexes the packet's ``persons``."""

    model_config = PERSONAL

    person: int = Field(ge=0, description="Index into the packet's persons list")
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

    travel_documents: bool = Field(description="Are there travel documents")
    departure_feasible_short_term: bool = Field(description="Can departure happen soon")


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


class GiDetails(BaseModel):
    """The certified institution that carries out the measure (§5 ``gi``, step 6)."""

    model_config = PERSONAL

    name: ShortText = Field(description="Name of the GI")
    contact: ShortText = Field(description="The GI's functional contact point")


class CourtRuling(BaseModel):
    """The court's ruling on the measure (§5 ``court_ruling``, steps 6, 8, 10)."""

    model_config = PERSONAL

    measure: Measure = Field(description="What the court ordered")
    ruled_on: dt.date = Field(description="Date of the ruling")
    extension: bool = Field(default=False, description="Whether this ruling extends an OTS")
    ots_ends_on: dt.date | None = Field(default=None, description="End of the OTS, if one runs")
    summary: LongText = Field(description="The ruling's operative part (dictum)")


class VvApplication(BaseModel):
    """Copy of a residence-permit application (§5 ``vv_application``, steps 8 and 10)."""

    model_config = PERSONAL

    kind: str = Field(pattern=r"^(first|extension)$", description="first or extension")
    filed_on: dt.date = Field(description="Date the application was filed")
    document: LongText = Field(description="The application, or its reference in INDIGO")


#: The value type of each item, read by the packet builder (kbflow/packets.py).
ITEM_TYPES: dict[Item, Any] = {
    Item.RELAAS: Relaas,
    Item.V_NUMBER: tuple[PersonVNumber, ...],
    Item.KNOWN_TO_SENDER: bool,
    Item.RESIDENCE_STATUS: ShortText,
    Item.PROCEDURE_HISTORY: LongText,
    Item.REMOVAL_DATE: dt.date,
    Item.DEPARTURE_PROCEDURE: DepartureProcedure,
    Item.DOSSIER_DOCUMENTS: tuple[ShortText, ...],
    Item.COURT_REQUEST: CourtRequest,
    Item.GOALS: tuple[LongText, ...],
    Item.MEANS: tuple[LongText, ...],
    Item.GI: GiDetails,
    Item.COURT_RULING: CourtRuling,
    Item.ADVICE_AVAILABLE: bool,
    Item.VV_APPLICATION: VvApplication,
    Item.RVDK_REPORT: LongText,
    Item.GI_REPORT: LongText,
    Item.RETURN_PERSPECTIVE: LongText,
    Item.TRANSFERABILITY: LongText,
    Item.HANDOVER_PROGRESS: LongText,
}
