"""The process table of PROCESS.md §3, in code, in exactly one place.

Every other part of kbflow reads this module: the workflow (which flows a step has,
who may send it, how long a reply may take), the packet builder (which items a body may
hold), the register of processing activities, the docs and the tests. Nothing restates it.

Source: ``../shared/PROCESS.md`` §1 (parties), §2 (legal basis), §3 (steps), §4 (our
choices where the seed is silent, marked "kbflow choice"), §5 (packet vocabulary).
This module imports nothing from Temporal and does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum, StrEnum


class Party(StrEnum):
    """The parties of PROCESS.md §1, by their code. The court is not a party: its rulings
    reach the process through the RvdK (step 6)."""

    RVDK = "RVDK"
    IND = "IND"
    DTV = "DTV"
    VT = "VT"
    COA = "COA"
    AVIM = "AVIM"
    GI = "GI"


#: Full names of the parties (PROCESS.md §1), for the register and art. 15 answers.
PARTY_NAMES: dict[Party, str] = {
    Party.RVDK: "Raad voor de Kinderbescherming",
    Party.IND: "Immigratie- en Naturalisatiedienst",
    Party.DTV: "Dienst Terugkeer en Vertrek",
    Party.VT: "Veilig Thuis",
    Party.COA: "Centraal Orgaan opvang asielzoekers",
    Party.AVIM: "Afdeling Vreemdelingenpolitie, Identificatie en Mensenhandel",
    Party.GI: "Gecertificeerde Instelling",
}


class System(StrEnum):
    """Systems named in the seed's SYSTEEM column (PROCESS.md §1)."""

    KBPS = "KBPS"
    INDIGO = "INDIGO"
    ISTV = "ISTV"
    KETENSYSTEEM = "Ketensysteem"


class Channel(StrEnum):
    """How a flow travels (PROCESS.md §3 'Flow'). Every channel is a secure one (§2)."""

    MAIL_OR_POST = "secure mail or post"
    SECURE_MAIL = "secure mail"
    KETENSYSTEEM = "Ketensysteem overdrachtsdossier"


class Item(StrEnum):
    """The packet vocabulary of PROCESS.md §5: what a body may hold besides ``persons``."""

    RELAAS = "relaas"
    V_NUMBER = "v_number"
    KNOWN_TO_SENDER = "known_to_sender"
    RESIDENCE_STATUS = "residence_status"
    PROCEDURE_HISTORY = "procedure_history"
    REMOVAL_DATE = "removal_date"
    DEPARTURE_PROCEDURE = "departure_procedure"
    DOSSIER_DOCUMENTS = "dossier_documents"
    COURT_REQUEST = "court_request"
    GOALS = "goals"
    MEANS = "means"
    GI = "gi"
    COURT_RULING = "court_ruling"
    ADVICE_AVAILABLE = "advice_available"
    VV_APPLICATION = "vv_application"
    RVDK_REPORT = "rvdk_report"
    GI_REPORT = "gi_report"
    RETURN_PERSPECTIVE = "return_perspective"
    TRANSFERABILITY = "transferability"
    HANDOVER_PROGRESS = "handover_progress"


#: What each item means (PROCESS.md §5, seed wording), for the register and the docs.
ITEM_MEANINGS: dict[Item, str] = {
    Item.RELAAS: "reporter's account: concerns, history, assistance so far",
    Item.V_NUMBER: "V-nummer of each person where known",
    Item.KNOWN_TO_SENDER: "whether the child / family is known to the sender",
    Item.RESIDENCE_STATUS: "residence status (verblijfsstatus)",
    Item.PROCEDURE_HISTORY: "procedure history (with its dossier documents in step 4)",
    Item.REMOVAL_DATE: "removal date (uitzetdatum)",
    Item.DEPARTURE_PROCEDURE: "state of the departure procedure: travel documents, feasibility",
    Item.DOSSIER_DOCUMENTS: "documents of the overdrachtsdossier",
    Item.COURT_REQUEST: "which measure the RvdK asks the court for",
    Item.GOALS: "goals to remove the threat to the child's development",
    Item.MEANS: "means designated for those goals",
    Item.GI: "the GI that carries out the measure",
    Item.COURT_RULING: "the court's ruling on the measure",
    Item.ADVICE_AVAILABLE: "whether a DT&V advice exists",
    Item.VV_APPLICATION: "copy of the (extension) application for a residence permit",
    Item.RVDK_REPORT: "report of the RvdK",
    Item.GI_REPORT: "report of the GI",
    Item.RETURN_PERSPECTIVE: "advice on the perspective on return",
    Item.TRANSFERABILITY: "advice on the transferability of the measure / assistance",
    Item.HANDOVER_PROGRESS: "progress in handing assistance over to the country of origin",
}


class Step(IntEnum):
    """The twelve steps of PROCESS.md §3, by number."""

    REPORT = 1
    ANNOUNCE_INVESTIGATION = 2
    RESIDENCE_INFORMATION = 3
    REJECTION_OR_WITHDRAWAL = 4
    INVESTIGATION_RESULT = 5
    COURT_RULING = 6
    ADVICE_AVAILABILITY = 7
    ADVICE_REQUEST = 8
    ADVICE = 9
    EXTENSION_ADVICE_REQUEST = 10
    EXTENSION_ADVICE = 11
    WARM_HANDOVER = 12


class LegalBasis(StrEnum):
    """GDPR art. 6(1) grounds with the national law each party acts under (PROCESS.md §2)."""

    RVDK = (
        "GDPR art. 6(1)(c) legal obligation, else 6(1)(e) public task; "
        "child protection, Burgerlijk Wetboek Boek 1"
    )
    ALIENS_CHAIN = (
        "GDPR art. 6(1)(c) legal obligation, else 6(1)(e) public task; "
        "Vreemdelingenwet art. 107 paras 7 and 8; Vb art. 3.48(2)(b), 3.6b, 3.51(3)"
    )
    REPORTER = (
        "GDPR art. 6(1)(c) legal obligation, else 6(1)(e) public task; "
        "report of concerns to the RvdK, Burgerlijk Wetboek Boek 1"
    )


def legal_basis_of(sender: Party) -> LegalBasis:
    """The legal basis a sender discloses under (PROCESS.md §2).

    RvdK acts under BW Boek 1; IND and DT&V under Vw art. 107(7)(8); the reporters of
    step 1 (VT, COA, AVIM) report concerns to the RvdK under BW Boek 1.
    """
    if sender is Party.RVDK:
        return LegalBasis.RVDK
    if sender in (Party.IND, Party.DTV):
        return LegalBasis.ALIENS_CHAIN
    return LegalBasis.REPORTER


@dataclass(frozen=True)
class Flow:
    """One sender's disclosure within a step: to whom, which items, by which channel.

    ``items`` never includes ``persons``: NAW + date of birth travel in every packet
    (PROCESS.md §2 "Base data in every step").
    """

    sender: Party
    recipients: tuple[Party, ...]
    items: frozenset[Item]
    channel: Channel
    note: str = ""


@dataclass(frozen=True)
class StepSpec:
    """One row of the process table (PROCESS.md §3).

    Attributes:
        step: the step number (1-12).
        seed_name: the row's heading in the Dutch seed.
        title: the heading in English.
        flows: one ``Flow`` per sender; step 1 has one per possible reporter, step 3 one for
            IND and one for DT&V, step 7 the question (IND) and the answer (DT&V).
        purpose: the DOEL column, in English.
        systems: the SYSTEEM column.
        reply_due: for a step that answers a request, how long the answering party has
            (kbflow choice, PROCESS.md §4); ``None`` where nobody is waited on.
        version: bumped whenever this row changes in a way that matters to the register of
            processing activities (LDV: a relevant change gets a new activity id).
    """

    step: Step
    seed_name: str
    title: str
    flows: tuple[Flow, ...]
    purpose: str
    systems: tuple[System, ...]
    reply_due: timedelta | None = None
    version: int = 1

    def flow_of(self, sender: Party) -> Flow:
        """The flow ``sender`` discloses in this step.

        Raises:
            KeyError: ``sender`` does not disclose in this step.
        """
        for flow in self.flows:
            if flow.sender is sender:
                return flow
        raise KeyError(f"step {int(self.step)} has no flow from {sender.value}")

    @property
    def senders(self) -> tuple[Party, ...]:
        """Every party that may disclose in this step."""
        return tuple(flow.sender for flow in self.flows)

    @property
    def items(self) -> frozenset[Item]:
        """Every item any flow of this step may carry."""
        return frozenset().union(*(flow.items for flow in self.flows))


def processing_activity_id(step: Step, sender: Party) -> str:
    """The register id of the processing activity "``sender`` discloses in ``step``".

    Shape: ``urn:kbflow:processing-activity:step-06:RVDK:v1`` (LDV
    ``dpl.core.processing_activity_id``; versioned by ``StepSpec.version``).
    """
    spec = PROCESS_TABLE[step]
    return f"urn:kbflow:processing-activity:step-{int(step):02d}:{sender.value}:v{spec.version}"


_I = Item
_REPORT_ITEMS = frozenset({_I.RELAAS})
_IND_RESIDENCE = frozenset(
    {_I.V_NUMBER, _I.KNOWN_TO_SENDER, _I.RESIDENCE_STATUS, _I.PROCEDURE_HISTORY, _I.REMOVAL_DATE}
)
_DTV_RESIDENCE = frozenset({_I.V_NUMBER, _I.KNOWN_TO_SENDER, _I.DEPARTURE_PROCEDURE})
_ADVICE = frozenset({_I.RETURN_PERSPECTIVE, _I.TRANSFERABILITY})
_ALIENS_CHAIN = (Party.IND, Party.DTV)

#: The table itself: PROCESS.md §3, one record per step.
PROCESS_TABLE: dict[Step, StepSpec] = {
    spec.step: spec
    for spec in (
        StepSpec(
            step=Step.REPORT,
            seed_name="MELDING",
            title="Report of concerns",
            flows=(
                Flow(Party.VT, (Party.RVDK,), _REPORT_ITEMS, Channel.MAIL_OR_POST,
                     "to the RvdK AT-medewerker and front office"),
                Flow(Party.COA, (Party.RVDK,), _REPORT_ITEMS, Channel.SECURE_MAIL, "urgent"),
                Flow(Party.AVIM, (Party.RVDK,), _REPORT_ITEMS, Channel.SECURE_MAIL, "urgent"),
                Flow(Party.IND, (Party.RVDK,), _REPORT_ITEMS, Channel.SECURE_MAIL, "urgent"),
            ),
            purpose="Report concerns; request an investigation by the RvdK",
            systems=(System.KBPS,),
        ),
        StepSpec(
            step=Step.ANNOUNCE_INVESTIGATION,
            seed_name="RAADSONDERZOEK",
            title="RvdK announces the investigation and asks for residence information",
            flows=(
                Flow(Party.RVDK, _ALIENS_CHAIN, frozenset(), Channel.SECURE_MAIL,
                     "RvdK cp to the 'belang van het kind' mail groups"),
            ),
            purpose=(
                "Inform the aliens chain of the investigation; request data; DT&V decides "
                "whether to suspend return activities; a pending IND application gets priority"
            ),
            systems=(System.KBPS, System.ISTV, System.INDIGO),
        ),
        StepSpec(
            step=Step.RESIDENCE_INFORMATION,
            seed_name="IND en DT&V informeren de RvdK",
            title="IND and DT&V inform the RvdK",
            flows=(
                Flow(Party.IND, (Party.RVDK,), _IND_RESIDENCE, Channel.SECURE_MAIL,
                     "residence situation; forwarded to the case's MDO members"),
                Flow(Party.DTV, (Party.RVDK,), _DTV_RESIDENCE, Channel.SECURE_MAIL,
                     "state of the departure procedure; forwarded to the MDO members"),
            ),
            purpose="Decide whether to start the investigation; inform the investigation",
            systems=(System.KBPS, System.ISTV, System.INDIGO),
            reply_due=timedelta(days=14),
        ),
        StepSpec(
            step=Step.REJECTION_OR_WITHDRAWAL,
            seed_name="Afwijzing of intrekking",
            title="IND informs DT&V of a rejection or withdrawal",
            flows=(
                Flow(Party.IND, (Party.DTV,),
                     frozenset({_I.V_NUMBER, _I.PROCEDURE_HISTORY, _I.DOSSIER_DOCUMENTS}),
                     Channel.KETENSYSTEEM, "overdrachtsdossier"),
            ),
            purpose="Decide whether to start the investigation (as the seed writes it)",
            systems=(System.ISTV, System.INDIGO, System.KETENSYSTEEM),
        ),
        StepSpec(
            step=Step.INVESTIGATION_RESULT,
            seed_name="Resultaat raadsonderzoek",
            title="RvdK reports the investigation's result",
            flows=(
                Flow(Party.RVDK, _ALIENS_CHAIN,
                     frozenset({_I.V_NUMBER, _I.COURT_REQUEST, _I.GOALS, _I.MEANS}),
                     Channel.SECURE_MAIL,
                     "DT&V forwards to the regievoerder and Bijzonder vertrek; IND records it"),
            ),
            purpose=(
                "DT&V can start, on its own initiative, an investigation into return "
                "perspective and transferability"
            ),
            systems=(System.KBPS, System.ISTV, System.INDIGO),
        ),
        StepSpec(
            step=Step.COURT_RULING,
            seed_name="UITSPRAAK RECHTER",
            title="Court ruling",
            flows=(
                Flow(Party.RVDK, _ALIENS_CHAIN,
                     frozenset({_I.GI, _I.COURT_RULING, _I.GOALS, _I.MEANS}),
                     Channel.SECURE_MAIL,
                     "to the DT&V regievoerder and the IND cp; both record it"),
            ),
            purpose=(
                "DT&V examines whether the measure is transferable; IND assesses a right of "
                "residence (a custody-terminating measure ends the KB process); make clear "
                "who the GI is"
            ),
            systems=(System.KBPS, System.ISTV, System.INDIGO),
        ),
        StepSpec(
            step=Step.ADVICE_AVAILABILITY,
            seed_name="VERZOEK AANWEZIG ADVIES",
            title="Is there a DT&V advice? (OTS)",
            flows=(
                Flow(Party.IND, (Party.DTV,), frozenset({_I.V_NUMBER}), Channel.SECURE_MAIL,
                     "the question, IND cp 'belang van het kind' to the DT&V cp"),
                Flow(Party.DTV, (Party.IND,), frozenset({_I.V_NUMBER, _I.ADVICE_AVAILABLE}),
                     Channel.SECURE_MAIL, "the answer; IND records a KCM in INDIGO"),
            ),
            purpose="Establish whether an advice is available",
            systems=(System.ISTV, System.INDIGO),
            reply_due=timedelta(days=7),
        ),
        StepSpec(
            step=Step.ADVICE_REQUEST,
            seed_name="VERZOEK OM ADVIES",
            title="IND requests a DT&V advice (OTS)",
            flows=(
                Flow(Party.IND, (Party.DTV,),
                     frozenset({_I.V_NUMBER, _I.VV_APPLICATION, _I.COURT_RULING,
                                _I.RVDK_REPORT}),
                     Channel.KETENSYSTEEM, "verzoek toets with overdrachtsdossier"),
            ),
            purpose="DT&V tests the transferability of the measure and the return perspective",
            systems=(System.ISTV, System.INDIGO, System.KETENSYSTEEM),
        ),
        StepSpec(
            step=Step.ADVICE,
            seed_name="DT&V TOETST",
            title="DT&V sends its advice to IND (OTS)",
            flows=(Flow(Party.DTV, (Party.IND,), _ADVICE, Channel.SECURE_MAIL,
                        "regievoerder and Bijzonder vertrek to the IND cp"),),
            purpose="Once the advice is in, IND decides on the VV application",
            systems=(System.ISTV, System.INDIGO, System.KETENSYSTEEM),
            reply_due=timedelta(weeks=8),
        ),
        StepSpec(
            step=Step.EXTENSION_ADVICE_REQUEST,
            seed_name="VERZOEK TOETSING",
            title="IND requests a new advice after the OTS is extended",
            flows=(
                Flow(Party.IND, (Party.DTV,),
                     frozenset({_I.V_NUMBER, _I.VV_APPLICATION, _I.COURT_RULING,
                                _I.GI_REPORT, _I.RVDK_REPORT}),
                     Channel.KETENSYSTEEM, "verzoek toets with overdrachtsdossier"),
            ),
            purpose="DT&V tests the transferability of the measure and the return perspective",
            systems=(System.ISTV, System.INDIGO, System.KETENSYSTEEM),
        ),
        StepSpec(
            step=Step.EXTENSION_ADVICE,
            seed_name="DT&V TOETST (verlenging)",
            title="DT&V sends its advice on the extension to IND (OTS)",
            flows=(Flow(Party.DTV, (Party.IND,), _ADVICE, Channel.SECURE_MAIL,
                        "regievoerder and Bijzonder vertrek to the IND cp"),),
            purpose="Once the advice is in, IND decides on the application to extend the VV",
            systems=(System.ISTV, System.INDIGO, System.KETENSYSTEEM),
            reply_due=timedelta(weeks=8),
        ),
        StepSpec(
            step=Step.WARM_HANDOVER,
            seed_name="WARME OVERDRACHT BIJ GEEN VV",
            title="Warm handover when there is no residence permit",
            flows=(
                # kbflow choice: "the other parties involved" are the GI that carries out
                # the OTS and the RvdK that asked for it; IND has decided already.
                Flow(Party.DTV, (Party.GI, Party.RVDK), frozenset({_I.HANDOVER_PROGRESS}),
                     Channel.SECURE_MAIL, "DT&V describes the state of the departure procedure"),
            ),
            purpose="Hand the case over so that assistance can start in the country of origin",
            systems=(System.ISTV,),
        ),
    )
}

#: How long after a missed reply deadline the escalation is recorded (kbflow choice, §4).
ESCALATION_GRACE = timedelta(days=7)
#: How long before the OTS ends the extension question is raised (kbflow choice, §4):
#: the GI asks the judge for the extension; eight weeks leaves room for a hearing.
EXTENSION_QUESTION_LEAD = timedelta(weeks=8)
#: Longest OTS per ruling or extension, in months (BW 1:260).
OTS_MAX_MONTHS = 12
#: How long kbflow keeps a closed case's personal data before crypto-shredding it
#: (kbflow choice, PROCESS.md §4; GDPR art. 5(1)(e)). kbflow is a conduit: the parties'
#: own dossiers (KBPS, INDIGO, ISTV) are the record. One year after closing covers
#: objection and appeal terms against decisions taken on the exchanged data (weeks to
#: months) and a yearly audit of the exchange. The processing log, which holds no personal
#: values, is kept beyond it.
RETENTION_AFTER_CLOSE = timedelta(days=365)


def reporters() -> tuple[Party, ...]:
    """The parties that may report in step 1 (VT normally; COA, AVIM, IND when urgent)."""
    return PROCESS_TABLE[Step.REPORT].senders


URGENT_REPORTERS = frozenset({Party.COA, Party.AVIM, Party.IND})
