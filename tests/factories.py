"""Fictional people, event builders and the case branches of PROCESS.md §3, for the tests.

Every person, address, place, date and V-nummer here is made up ("Fictief",
"Fantasiestad", V-nummers 00000000xx). ``PERSONAL_VALUES`` lists every personal value a
test case can carry, so that tests can assert none of them leaks into logs, errors,
timelines or processing-log entries.

The expected deliveries of each branch (``Branch.deliveries``) are written out by hand
from PROCESS.md §3's "Flow" lines: they are the independent reading the code is checked
against, not a copy of ``kbflow.process``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field

from kbflow import case_refs
from kbflow.case import EndState, Phase
from kbflow.events import (
    Advice,
    AdviceAvailability,
    AdviceAvailabilityRequest,
    AdviceRequest,
    AgencyEvent,
    AnnounceInvestigation,
    ApplicationRejected,
    CaseStart,
    CourtRulingEvent,
    ExtensionAdviceRequest,
    ExtensionRuling,
    InvestigationDecision,
    InvestigationResult,
    PersonInput,
    RecordWeighing,
    ResidenceInformation,
    WarmHandover,
    Weighing,
)
from kbflow.items import (
    CourtRequest,
    CourtRuling,
    DepartureProcedure,
    GiDetails,
    Measure,
    PersonVNumber,
    Relaas,
    Role,
    VvApplication,
)
from kbflow.process import Party, Step
from kbflow.record import CaseRecord, VNumberOnRecord

# ---- fictional people ------------------------------------------------------------------

CHILD = PersonInput(
    name="Fenna Fictief",
    address="Verzinsellaan 3",
    place_of_residence="Fantasiestad",
    date_of_birth=dt.date(2017, 6, 14),
    role=Role.CHILD,
)
PARENT = PersonInput(
    name="Gerrit Fictief",
    address="Verzinsellaan 3",
    place_of_residence="Fantasiestad",
    date_of_birth=dt.date(1988, 2, 2),
    role=Role.PARENT,
)
SIBLING = PersonInput(
    name="Pim Verzonnen-Fictief",
    address="Droomdijk 17",
    place_of_residence="Nergenshuizen",
    date_of_birth=dt.date(2019, 9, 21),
    role=Role.CHILD,
)
PERSONS = (CHILD, PARENT)
#: V-nummers of the fictional persons, by index into ``PERSONS`` (ten digits, 00000000xx).
V_NUMBERS = ("0000000011", "0000000012", "0000000013")

RELAAS = Relaas(
    concerns="Fenna verzuimt al weken school; vader Gerrit zegt overbelast te zijn.",
    history="Twee eerdere meldingen bij Veilig Thuis over het gezin Fictief.",
    assistance="Vrijwillige gezinscoaching in Fantasiestad, na twee maanden gestopt.",
)
RESIDENCE_STATUS = "asielaanvraag Fictief in behandeling"
PROCEDURE_HISTORY = "Eerste asielaanvraag gezin Fictief 2023, beroep loopt."
REMOVAL_DATE = dt.date(2027, 1, 31)
DOSSIER_DOCUMENTS = ("beschikking-fictief-001.pdf", "gehoor-fictief-002.pdf")
GOALS = ("Fenna gaat elke week naar school.",)
MEANS = ("Wekelijks bezoek van een gezinscoach aan Verzinsellaan 3.",)
GI_DETAILS = GiDetails(name="GI Fantasiestad Jeugdbescherming", contact="GI Fictief frontoffice")
RULING_SUMMARY = "Fenna Fictief wordt voor twaalf maanden onder toezicht gesteld."
VV_DOCUMENT = "VV-aanvraag Fenna Fictief onder het beleidskader KB-maatregel."
RVDK_REPORT = "Raadsrapport Fictief: OTS gevraagd; schoolgang en coaching."
GI_REPORT = "GI-rapport Fictief: doelen half gehaald, verlenging nodig."
RETURN_PERSPECTIVE = "Geen terugkeerperspectief Fictief op korte termijn: geen reisdocumenten."
TRANSFERABILITY = "Coaching van Fenna niet overdraagbaar naar land van herkomst."
HANDOVER_PROGRESS = "Overdracht hulpverlening gezin Fictief aan partner in land van herkomst."

#: Every personal value a test case can carry, as it could appear in text.
PERSONAL_VALUES: tuple[str, ...] = (
    *(p.name for p in (CHILD, PARENT, SIBLING)),
    *(p.address for p in (CHILD, PARENT, SIBLING)),
    *(p.place_of_residence for p in (CHILD, PARENT, SIBLING)),
    *(p.date_of_birth.isoformat() for p in (CHILD, PARENT, SIBLING)),
    *V_NUMBERS,
    "Fictief",
    RELAAS.concerns,
    RELAAS.history,
    RELAAS.assistance,
    RESIDENCE_STATUS,
    PROCEDURE_HISTORY,
    *DOSSIER_DOCUMENTS,
    *GOALS,
    *MEANS,
    RULING_SUMMARY,
    VV_DOCUMENT,
    RVDK_REPORT,
    GI_REPORT,
    RETURN_PERSPECTIVE,
    TRANSFERABILITY,
    HANDOVER_PROGRESS,
)


def leaked(text: str) -> list[str]:
    """The personal values of ``PERSONAL_VALUES`` that occur in ``text``."""
    return [value for value in PERSONAL_VALUES if value in text]


# ---- ids ----------------------------------------------------------------------------------

_keys = itertools.count(1)


def new_key(prefix: str = "evt") -> str:
    """A fresh idempotency key (unique within the test session)."""
    return f"{prefix}-{next(_keys):06d}-{uuid.uuid4().hex[:6]}"


def new_case_ref() -> str:
    """A fresh case ref as kbflow makes them (``kbflow.case_refs``), of 2026."""
    return case_refs.new_case_ref(dt.date(2026, 3, 2))


class Ids:
    """A deterministic ``new_id`` for ``CaseState``: id-0001, id-0002, ..."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"id-{self.count:04d}"


# ---- builders -----------------------------------------------------------------------------


def weighing(party: Party) -> Weighing:
    return Weighing(
        necessary=True,
        proportionate=True,
        subsidiarity=True,
        note="Alleen wat het onderzoek nodig heeft wordt gedeeld.",
        by=f"{party.value}-functie-07",
    )


def case_start(
    case_ref: str | None = None,
    reporter: Party = Party.VT,
    persons: tuple[PersonInput, ...] = PERSONS,
    idempotency_key: str | None = None,
) -> CaseStart:
    return CaseStart(
        case_ref=case_ref or new_case_ref(),
        idempotency_key=idempotency_key,
        persons=persons,
        reporter=reporter,
        relaas=RELAAS,
        weighing=weighing(reporter),
    )


@dataclass(frozen=True)
class Ev:
    """One agency event: its update name (a key of ``kbflow.events.EVENTS``) and body."""

    name: str
    event: AgencyEvent


def _w(party: Party, weigh: bool) -> Weighing | None:
    return weighing(party) if weigh else None


def record_weighing(sender: Party, key: str | None = None) -> Ev:
    return Ev("weighing", RecordWeighing(sender=sender, idempotency_key=key or new_key("weigh"),
                                         weighing=weighing(sender)))


def announce(sender: Party = Party.RVDK, weigh: bool = True, key: str | None = None) -> Ev:
    return Ev("announce_investigation", AnnounceInvestigation(
        sender=sender, idempotency_key=key or new_key("announce"), weighing=_w(sender, weigh)))


def residence_ind(
    known: bool = True,
    v_numbers: tuple[tuple[int, str], ...] = ((0, V_NUMBERS[0]), (1, V_NUMBERS[1])),
    weigh: bool = True,
    key: str | None = None,
    sender: Party = Party.IND,
    **extra: object,
) -> Ev:
    """IND's step-3 reply; ``known=False`` sends only ``known_to_sender``."""
    fields: dict[str, object] = {}
    if known:
        fields = {
            "v_number": tuple(PersonVNumber(person=i, v_number=v) for i, v in v_numbers),
            "residence_status": RESIDENCE_STATUS,
            "procedure_history": PROCEDURE_HISTORY,
            "removal_date": REMOVAL_DATE,
        }
    fields.update(extra)
    return Ev("residence_information", ResidenceInformation(
        sender=sender, idempotency_key=key or new_key("ind-res"), weighing=_w(sender, weigh),
        known_to_sender=known, **fields))


def residence_dtv(known: bool = True, weigh: bool = True, key: str | None = None,
                  **extra: object) -> Ev:
    """DT&V's step-3 reply; ``known=False`` sends only ``known_to_sender``."""
    fields: dict[str, object] = {}
    if known:
        fields = {"departure_procedure": DepartureProcedure(
            travel_documents=False, departure_feasible_short_term=False)}
    fields.update(extra)
    return Ev("residence_information", ResidenceInformation(
        sender=Party.DTV, idempotency_key=key or new_key("dtv-res"),
        weighing=_w(Party.DTV, weigh), known_to_sender=known, **fields))


def decision(investigate: bool = True, key: str | None = None) -> Ev:
    return Ev("investigation_decision", InvestigationDecision(
        sender=Party.RVDK, idempotency_key=key or new_key("decision"), investigate=investigate))


def rejection(weigh: bool = True, key: str | None = None) -> Ev:
    return Ev("application_rejected", ApplicationRejected(
        sender=Party.IND, idempotency_key=key or new_key("rejection"),
        weighing=_w(Party.IND, weigh), decision="rejection",
        procedure_history=PROCEDURE_HISTORY, dossier_documents=DOSSIER_DOCUMENTS))


def result(request: CourtRequest = CourtRequest.OTS, key: str | None = None) -> Ev:
    with_goals = request is not CourtRequest.NONE
    return Ev("investigation_result", InvestigationResult(
        sender=Party.RVDK, idempotency_key=key or new_key("result"), court_request=request,
        goals=GOALS if with_goals else None, means=MEANS if with_goals else None))


def today() -> dt.date:
    """Today in UTC: the date of a ruling sent now (never in the future of case time)."""
    return dt.datetime.now(dt.UTC).date()


def ruling(measure: Measure = Measure.OTS, months: int | None = 12, key: str | None = None,
           sender: Party = Party.RVDK, ruled_on: dt.date | None = None) -> Ev:
    ots = measure is Measure.OTS
    return Ev("court_ruling", CourtRulingEvent(
        sender=sender, idempotency_key=key or new_key("ruling"), measure=measure,
        ruled_on=ruled_on or today(), summary=RULING_SUMMARY, gi=GI_DETAILS if ots else None,
        goals=GOALS if ots else None, means=MEANS if ots else None,
        ots_months=months if ots else None))


def extension(extended: bool = True, months: int = 12, key: str | None = None,
              ruled_on: dt.date | None = None) -> Ev:
    return Ev("extension_ruling", ExtensionRuling(
        sender=Party.RVDK, idempotency_key=key or new_key("extension"), extended=extended,
        ruled_on=ruled_on or today(), summary=RULING_SUMMARY,
        ots_months=months if extended else None))


def availability_request(key: str | None = None) -> Ev:
    return Ev("advice_availability_request", AdviceAvailabilityRequest(
        sender=Party.IND, idempotency_key=key or new_key("avail-q")))


def availability(available: bool, weigh: bool = True, key: str | None = None) -> Ev:
    return Ev("advice_availability", AdviceAvailability(
        sender=Party.DTV, idempotency_key=key or new_key("avail-a"),
        weighing=_w(Party.DTV, weigh), advice_available=available))


def advice_request(key: str | None = None) -> Ev:
    return Ev("advice_request", AdviceRequest(
        sender=Party.IND, idempotency_key=key or new_key("advice-q"),
        vv_application=VvApplication(kind="first", filed_on=dt.date(2026, 10, 1),
                                     document=VV_DOCUMENT),
        rvdk_report=RVDK_REPORT))


def advice(key: str | None = None) -> Ev:
    return Ev("advice", Advice(
        sender=Party.DTV, idempotency_key=key or new_key("advice"),
        return_perspective=RETURN_PERSPECTIVE, transferability=TRANSFERABILITY))


def extension_advice_request(key: str | None = None) -> Ev:
    return Ev("extension_advice_request", ExtensionAdviceRequest(
        sender=Party.IND, idempotency_key=key or new_key("ext-q"),
        vv_application=VvApplication(kind="extension", filed_on=dt.date(2027, 9, 1),
                                     document=VV_DOCUMENT),
        gi_report=GI_REPORT, rvdk_report=RVDK_REPORT))


def extension_advice(key: str | None = None) -> Ev:
    return Ev("extension_advice", Advice(
        sender=Party.DTV, idempotency_key=key or new_key("ext-advice"),
        return_perspective=RETURN_PERSPECTIVE, transferability=TRANSFERABILITY))


def handover(key: str | None = None) -> Ev:
    return Ev("warm_handover", WarmHandover(
        sender=Party.DTV, idempotency_key=key or new_key("handover"),
        handover_progress=HANDOVER_PROGRESS))


# ---- paths through the process ----------------------------------------------------------


def to_investigating() -> list[Ev]:
    """Steps 2 and 3 answered by both IND and DT&V; the RvdK decides to investigate."""
    return [announce(), residence_ind(), residence_dtv(), decision(True)]


def to_awaiting_ruling(request: CourtRequest = CourtRequest.OTS) -> list[Ev]:
    return [*to_investigating(), result(request)]


def to_ots(months: int = 12) -> list[Ev]:
    return [*to_awaiting_ruling(CourtRequest.OTS), ruling(Measure.OTS, months)]


# ---- the branches of PROCESS.md §3, with who receives what ------------------------------

Delivery = tuple[int, Party, Party]  # (step, sender, recipient)

R, IND, DTV, VT, GI = Party.RVDK, Party.IND, Party.DTV, Party.VT, Party.GI
#: Who receives what in each step (PROCESS.md §3 "Flow"), read independently of the code.
S1: list[Delivery] = [(1, VT, R)]
S2: list[Delivery] = [(2, R, IND), (2, R, DTV)]
S3: list[Delivery] = [(3, IND, R), (3, DTV, R)]
S4: list[Delivery] = [(4, IND, DTV)]
S5: list[Delivery] = [(5, R, IND), (5, R, DTV)]
S6: list[Delivery] = [(6, R, IND), (6, R, DTV)]
S7: list[Delivery] = [(7, IND, DTV), (7, DTV, IND)]
S8: list[Delivery] = [(8, IND, DTV)]
S9: list[Delivery] = [(9, DTV, IND)]
S10: list[Delivery] = [(10, IND, DTV)]
S11: list[Delivery] = [(11, DTV, IND)]
S12: list[Delivery] = [(12, DTV, GI), (12, DTV, R)]


@dataclass
class Branch:
    """One way through PROCESS.md §3: the events after the step-1 report and the outcome."""

    name: str
    events: list[Ev]
    phase: Phase
    end_state: EndState | None
    steps_done: tuple[int, ...]
    deliveries: list[Delivery] = field(default_factory=list)


def branches() -> list[Branch]:
    """Fresh events for every branch (fresh idempotency keys on every call)."""
    return [
        Branch("custody_termination",
               [*to_awaiting_ruling(CourtRequest.CUSTODY_TERMINATION),
                ruling(Measure.CUSTODY_TERMINATION)],
               Phase.CLOSED, EndState.CUSTODY_TERMINATED, (1, 2, 3, 5, 6),
               S1 + S2 + S3 + S5 + S6),
        Branch("ots_advice_available",
               [*to_ots(), availability_request(), availability(True)],
               Phase.OTS, None, (1, 2, 3, 5, 6, 7),
               S1 + S2 + S3 + S5 + S6 + S7),
        Branch("ots_advice_requested",
               [*to_ots(), availability_request(), availability(False), advice_request(),
                advice()],
               Phase.OTS, None, (1, 2, 3, 5, 6, 7, 8, 9),
               S1 + S2 + S3 + S5 + S6 + S7 + S8 + S9),
        Branch("ots_extended",
               [*to_ots(), extension(True), extension_advice_request(), extension_advice()],
               Phase.OTS, None, (1, 2, 3, 5, 6, 10, 11),
               S1 + S2 + S3 + S5 + S6 + S6 + S10 + S11),
        Branch("warm_handover",
               [*to_ots(), handover()],
               Phase.CLOSED, EndState.HANDED_OVER, (1, 2, 3, 5, 6, 12),
               S1 + S2 + S3 + S5 + S6 + S12),
        Branch("warm_handover_after_rejection",
               [*to_ots(), availability_request(), availability(False), advice_request(),
                advice(), rejection(), handover()],
               Phase.CLOSED, EndState.HANDED_OVER, (1, 2, 3, 5, 6, 7, 8, 9, 4, 12),
               S1 + S2 + S3 + S5 + S6 + S7 + S8 + S9 + S4 + S12),
        Branch("family_unknown",
               [announce(), residence_ind(known=False), residence_dtv(known=False),
                decision(False)],
               Phase.CLOSED, EndState.NO_INVESTIGATION, (1, 2, 3),
               S1 + S2 + S3),
        Branch("no_measure",
               [*to_investigating(), result(CourtRequest.NONE)],
               Phase.CLOSED, EndState.NO_MEASURE, (1, 2, 3, 5),
               S1 + S2 + S3 + S5),
        Branch("measure_refused",
               [*to_awaiting_ruling(CourtRequest.OTS), ruling(Measure.REFUSED)],
               Phase.CLOSED, EndState.MEASURE_REFUSED, (1, 2, 3, 5, 6),
               S1 + S2 + S3 + S5 + S6),
        Branch("rejection_during_investigation",
               [*to_investigating(), rejection()],
               Phase.INVESTIGATING, None, (1, 2, 3, 4),
               S1 + S2 + S3 + S4),
    ]


BRANCH_NAMES = [branch.name for branch in branches()]


def branch(name: str) -> Branch:
    return next(b for b in branches() if b.name == name)


# ---- a fully populated case record --------------------------------------------------------


def full_record() -> CaseRecord:
    """A case record with every §5 item known and every person carrying a V-nummer."""
    persons = (CHILD, PARENT, SIBLING)
    return CaseRecord(
        case_ref=new_case_ref(),
        persons=persons,
        relaas=RELAAS,
        v_numbers=tuple(
            VNumberOnRecord(person=index, v_number=V_NUMBERS[index], given_by=Party.IND,
                            known_to=frozenset(Party))
            for index in range(len(persons))),
        known_to={Party.IND: True, Party.DTV: True},
        residence_status=RESIDENCE_STATUS,
        procedure_history=PROCEDURE_HISTORY,
        removal_date=REMOVAL_DATE,
        departure_procedure=DepartureProcedure(travel_documents=True,
                                               departure_feasible_short_term=False),
        dossier_documents=DOSSIER_DOCUMENTS,
        court_request=CourtRequest.OTS,
        goals=GOALS,
        means=MEANS,
        gi=GI_DETAILS,
        court_ruling=CourtRuling(measure=Measure.OTS, ruled_on=dt.date(2026, 5, 1),
                                 ots_ends_on=dt.date(2027, 5, 1), summary=RULING_SUMMARY),
        advice_available=False,
        vv_application=VvApplication(kind="first", filed_on=dt.date(2026, 6, 1),
                                     document=VV_DOCUMENT),
        rvdk_report=RVDK_REPORT,
        gi_report=GI_REPORT,
        return_perspective=RETURN_PERSPECTIVE,
        transferability=TRANSFERABILITY,
        handover_progress=HANDOVER_PROGRESS,
    )


#: Every wait on another party's reply: (id, events up to the question, the asked party,
#: the awaited event, its step). Steps 3, 7, 9 and 11 have a reply deadline.
REPLY_WAITS = [
    ("step-3", lambda: [announce()], Party.DTV, "residence_information",
     Step.RESIDENCE_INFORMATION),
    ("step-7", lambda: [*to_ots(), availability_request()], Party.DTV,
     "advice_availability", Step.ADVICE_AVAILABILITY),
    ("step-9", lambda: [*to_ots(), availability_request(), availability(False),
                        advice_request()], Party.DTV, "advice", Step.ADVICE),
    ("step-11", lambda: [*to_ots(), extension(True), extension_advice_request()],
     Party.DTV, "extension_advice", Step.EXTENSION_ADVICE),
]
