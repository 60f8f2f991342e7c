"""Answering a data subject's access request (GDPR art. 15) from the processing log.

Art. 15(1) asks for the purposes, the categories of data, the recipients — the actual
recipients on request, not only their categories (CJEU C-154/21) — the storage period and
the source. Every processing-log entry of the subject's pseudonym (``ProcessingLogEntry``,
one per data subject per disclosure, or a line of the earlier shape) becomes one
``Disclosure``: which organisation received what, from whom, in which step of which case,
why, on which legal basis, when. Why and on which basis come from the register
(``kbflow.register``) by the entry's ``processing_activity_id``: the log does not repeat
them (LDV).

The log holds item names and a pseudonym, never personal values, so neither does the
answer. A subject is looked up by pseudonym, or by name and date of birth through the
same keyed hash the log was written with (``activities/pseudonyms.py``). The answer also
names every operator who read one of the subject's cases through the codec server
(``OperatorLook``, from the log's ``DecodeEntry`` records). This module is
pure: the caller reads the log and computes the pseudonym.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from kbflow.items import Person, Role
from kbflow.process import (
    ITEM_MEANINGS,
    PARTY_NAMES,
    PROCESS_TABLE,
    RETENTION_AFTER_CLOSE,
    Item,
    Party,
)
from kbflow.processing_log import DecodeEntry, LegacyProcessingLogEntry, LogEntry
from kbflow.register import RegisterEntry, register

#: A pseudonymous data-subject id as the log holds it: ``subj-`` + 32 hex characters.
SUBJECT_ID = re.compile(r"^subj-[0-9a-f]{32}$")
#: What ``persons`` stands for in a packet (PROCESS.md §2 "Base data in every step").
PERSONS_MEANING = "name, address, place of residence (NAW), date of birth and role"
#: Filler for the fields of a ``Person`` that the pseudonym does not read.
_UNUSED = "-"


class Organisation(BaseModel):
    """A party by code and full name (PROCESS.md §1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Party = Field(description="Party code, e.g. IND")
    name: str = Field(description="The organisation's full name")

    @classmethod
    def of(cls, party: Party) -> Organisation:
        return cls(code=party, name=PARTY_NAMES[party])


class Disclosure(BaseModel):
    """One disclosure of the subject's data to one organisation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: dt.datetime = Field(description="When the packet was made")
    case_ref: str = Field(description="The case's opaque reference")
    step: int = Field(description="Step of PROCESS.md §3")
    step_title: str = Field(description="The step's heading")
    recipient: Organisation = Field(description="The organisation that received the data")
    sender: Organisation = Field(description="The organisation that disclosed it (source)")
    purpose: str = Field(description="Purpose of the disclosure")
    legal_basis: str = Field(description="GDPR art. 6(1) ground and national law")
    items: tuple[str, ...] = Field(description="Item names disclosed, persons included")
    data_categories: tuple[str, ...] = Field(description="What each item means, in order")
    processing_activity_id: str = Field(description="Register entry (art. 30)")
    packet_id: str = Field(description="The packet, for the parties' own records")


class OperatorLook(BaseModel):
    """One operator's look at one of the subject's cases through the codec server: they
    read ``payload_count`` of its encrypted payloads (``DecodeEntry``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: dt.datetime = Field(description="When the payloads were decoded")
    case_ref: str = Field(description="The case looked at")
    operator_id: str = Field(description="Staff id of the operator who looked")
    payload_count: int = Field(description="How many encrypted payloads were decoded")


class AccessAnswer(BaseModel):
    """Everything the processing log says about one data subject, oldest first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_subject_id: str = Field(description="The subject's pseudonym in the log")
    disclosures: tuple[Disclosure, ...] = Field(description="Oldest first")
    operator_looks: tuple[OperatorLook, ...] = Field(
        default=(), description="Operators' decodes of the subject's cases, oldest first")
    storage_period: str = Field(description="How long the personal data is kept")

    @property
    def recipients(self) -> tuple[Organisation, ...]:
        """Every organisation that received the subject's data, in order of first receipt."""
        return tuple(dict.fromkeys(disclosure.recipient for disclosure in self.disclosures))


def lookup_person(name: str, date_of_birth: dt.date) -> Person:
    """A ``Person`` carrying only what the pseudonym reads: name and date of birth.

    Raises:
        pydantic.ValidationError: the name is empty or longer than 200 characters (the
            error does not show the name).
    """
    return Person(name=name, address=_UNUSED, place_of_residence=_UNUSED,
                  date_of_birth=date_of_birth, role=Role.CHILD)


def subject_id_of(name: str, date_of_birth: dt.date,
                  pseudonymise: Callable[[Person], str]) -> str:
    """The data-subject id the log uses for the person with this name and date of birth."""
    return pseudonymise(lookup_person(name, date_of_birth))


def item_meaning(name: str) -> str:
    """What a logged item name stands for (``persons`` or a PROCESS.md §5 item)."""
    if name == "persons":
        return PERSONS_MEANING
    try:
        return ITEM_MEANINGS[Item(name)]
    except ValueError:
        return name


def storage_period(retention: timedelta = RETENTION_AFTER_CLOSE) -> str:
    """Art. 15(1)(d): how long the data is kept (``kbflow.process.RETENTION_AFTER_CLOSE``)."""
    return (f"kbflow erases the personal data of a case {retention.days} days after the case "
            "closes (its data key is destroyed); the processing log, which holds no personal "
            "values, is kept. Each recipient keeps what it received under its own retention "
            "rules.")


@functools.cache
def _register_by_id() -> dict[str, RegisterEntry]:
    return {entry.processing_activity_id: entry for entry in register()}


def purpose_and_legal_basis(entry: LogEntry) -> tuple[str, str]:
    """The purpose and legal basis of ``entry``'s disclosure, from the register entry its
    ``processing_activity_id`` names (LDV: the log line does not repeat them).

    A line of the earlier shape carries its own, which it keeps when the register no
    longer lists its activity's version; an LDV entry whose version the register no
    longer lists gets the current activity of its step and sender (the register keeps
    only current versions)."""
    found = _register_by_id().get(entry.processing_activity_id)
    if found is None and isinstance(entry, LegacyProcessingLogEntry):
        return entry.purpose, entry.legal_basis
    if found is None:
        found = next(activity for activity in register()
                     if activity.step == int(entry.step)
                     and activity.controller.startswith(f"{entry.sender.value} ("))
    return found.purpose, found.legal_basis


def access_answer(subject_id: str, log: Iterable[LogEntry],
                  retention: timedelta = RETENTION_AFTER_CLOSE, *,
                  decodes: Iterable[DecodeEntry] = ()) -> AccessAnswer:
    """The art. 15 answer for ``subject_id`` from the processing-log entries ``log`` and
    the codec server's decodes ``decodes``: the subject's cases are those of their
    entries, and every decode of one of those cases is a look at the subject's data."""
    entries = sorted((entry for entry in log if entry.data_subject_id == subject_id),
                     key=lambda entry: (entry.at, int(entry.step), entry.packet_id))
    cases = {entry.case_ref for entry in entries}
    looks = sorted((OperatorLook(at=decode.at, case_ref=decode.case_ref,
                                 operator_id=decode.operator_id,
                                 payload_count=decode.payload_count)
                    for decode in decodes
                    if decode.case_ref is not None and decode.case_ref in cases),
                   key=lambda look: (look.at, look.case_ref, look.operator_id))
    reasons = [purpose_and_legal_basis(entry) for entry in entries]
    return AccessAnswer(
        operator_looks=tuple(looks),
        data_subject_id=subject_id,
        disclosures=tuple(
            Disclosure(
                at=entry.at,
                case_ref=entry.case_ref,
                step=int(entry.step),
                step_title=PROCESS_TABLE[entry.step].title,
                recipient=Organisation.of(entry.recipient),
                sender=Organisation.of(entry.sender),
                purpose=purpose,
                legal_basis=legal_basis,
                items=entry.items,
                data_categories=tuple(item_meaning(item) for item in entry.items),
                processing_activity_id=entry.processing_activity_id,
                packet_id=entry.packet_id,
            )
            for entry, (purpose, legal_basis) in zip(entries, reasons, strict=True)
        ),
        storage_period=storage_period(retention),
    )
