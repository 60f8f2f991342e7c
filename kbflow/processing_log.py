"""The processing log: one entry per data subject per disclosure, in the record form of
Logius' Logboek Dataverwerkingen 1.0 (LDV, REFERENCES.md).

Each entry (``ProcessingLogEntry``) is one LDV record: ``trace_id`` (32 hex),
``span_id`` (16 hex, the entry's own span), ``parent_span_id`` (the span that asked for
the disclosure: the API's span of the request, the CLI's of its command, or, without a
trace from outside — a timer, a retention run, a client without trace context — the
delivery's own span in a trace it starts), ``name`` (``disclose step-06 RVDK to IND``),
``start_time`` (when the packet was made) and ``end_time`` (when it was delivered to the
outbox), both in milliseconds since the Unix epoch as LDV's uint64 says, ``status``
(``Ok``: an entry is written only with its delivered packet), ``resource.attributes``
(``service.name``: ``kbflow``) and ``attributes``:
``dpl.core.processing_activity_id``, ``dpl.core.data_subject_id`` (a pseudonym, keyed
hash: ``activities/pseudonyms.py``), ``dpl.core.data_subject_id_type``, and kbflow's own
routing attributes ``kbflow.packet_id``, ``kbflow.case_ref``, ``kbflow.step``,
``kbflow.sender``, ``kbflow.recipient``, ``kbflow.items`` (item *names*, never values)
and, for a call through an FSC Inway, ``fsc.transaction_id``.

Purpose and legal basis are **not** in the entry (LDV: what the register holds is not
repeated): ``processing_activity_id`` points into the register (``kbflow.register``),
where ``kbflow disclosures`` looks them up.

The log is append-only and never rewritten, so lines written before this form
(``LegacyProcessingLogEntry``: flat, with ``purpose``, ``legal_basis`` and ``at``) stay as
they are; ``parse_entry`` reads either. Both offer the same read-only names
(``packet_id``, ``case_ref``, ``step``, ``sender``, ``recipient``, ``items``,
``processing_activity_id``, ``data_subject_id``, ``at``, ``trace_id``).

Pure but for the random span ids (``kbflow.trace``).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kbflow import trace
from kbflow.items import Person
from kbflow.packets import Packet
from kbflow.process import Party, Step

#: Maps a person to their pseudonymous data-subject id.
Pseudonymise = Callable[[Person], str]
#: ``dpl.core.data_subject_id_type`` of kbflow's pseudonyms.
SUBJECT_ID_TYPE = "kbflow-pseudonym"

TraceId = Annotated[str, StringConstraints(pattern=trace.TRACE_ID_PATTERN)]
SpanId = Annotated[str, StringConstraints(pattern=trace.SPAN_ID_PATTERN)]


class Status(enum.StrEnum):
    """LDV's (OpenTelemetry's) span status."""

    UNSET = "Unset"
    OK = "Ok"
    ERROR = "Error"


class EntryAttributes(BaseModel):
    """An entry's attributes, by their dotted LDV / kbflow names in JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    processing_activity_id: str = Field(alias="dpl.core.processing_activity_id",
                                        description="The register entry (a URN, versioned)")
    data_subject_id: str = Field(alias="dpl.core.data_subject_id",
                                 description="The data subject's pseudonym")
    data_subject_id_type: str = Field(default=SUBJECT_ID_TYPE,
                                      alias="dpl.core.data_subject_id_type")
    packet_id: str = Field(alias="kbflow.packet_id")
    case_ref: str = Field(alias="kbflow.case_ref")
    step: Step = Field(alias="kbflow.step")
    sender: Party = Field(alias="kbflow.sender")
    recipient: Party = Field(alias="kbflow.recipient")
    items: tuple[str, ...] = Field(alias="kbflow.items",
                                   description="Item names disclosed, persons included")
    fsc_transaction_id: str | None = Field(
        default=None, alias="fsc.transaction_id",
        description="The Fsc-Transaction-Id of the call that caused it (FSC only)")


#: ``resource.attributes`` of every entry: the application that logs (OpenTelemetry's
#: ``service.name``).
SERVICE_NAME = "kbflow"


class ResourceAttributes(BaseModel):
    """The logging application, by OpenTelemetry's dotted names in JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    service_name: str = Field(default=SERVICE_NAME, alias="service.name")


class Resource(BaseModel):
    """LDV's ``resource``: who wrote the record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attributes: ResourceAttributes = ResourceAttributes()


def epoch_ms(at: dt.datetime) -> int:
    """``at`` (timezone-aware) in milliseconds since the Unix epoch."""
    return int(at.timestamp() * 1000)


def from_epoch_ms(ms: int) -> dt.datetime:
    """Milliseconds since the Unix epoch as a UTC datetime."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


class ProcessingLogEntry(BaseModel):
    """One disclosure of one data subject's data to one recipient: an LDV record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trace_id: TraceId
    span_id: SpanId
    parent_span_id: SpanId | None
    name: str = Field(description="e.g. 'disclose step-06 RVDK to IND'")
    start_time: int = Field(ge=0, description="When the packet was made, ms since epoch")
    end_time: int = Field(ge=0, description="When it was delivered, ms since epoch")
    status: Status
    resource: Resource = Resource()
    attributes: EntryAttributes

    # ---- the names both shapes answer ------------------------------------------------
    @property
    def packet_id(self) -> str:
        return self.attributes.packet_id

    @property
    def case_ref(self) -> str:
        return self.attributes.case_ref

    @property
    def step(self) -> Step:
        return self.attributes.step

    @property
    def sender(self) -> Party:
        return self.attributes.sender

    @property
    def recipient(self) -> Party:
        return self.attributes.recipient

    @property
    def items(self) -> tuple[str, ...]:
        return self.attributes.items

    @property
    def processing_activity_id(self) -> str:
        return self.attributes.processing_activity_id

    @property
    def data_subject_id(self) -> str:
        return self.attributes.data_subject_id

    @property
    def at(self) -> dt.datetime:
        """When the disclosure was made (``start_time``), UTC."""
        return from_epoch_ms(self.start_time)


class LegacyProcessingLogEntry(BaseModel):
    """An entry as written before the LDV record form (read only, never written)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_id: str
    case_ref: str
    step: Step
    sender: Party
    recipient: Party
    processing_activity_id: str = Field(description="dpl.core.processing_activity_id")
    data_subject_id: str = Field(description="dpl.core.data_subject_id (pseudonym)")
    data_subject_id_type: str = Field(default=SUBJECT_ID_TYPE)
    purpose: str
    legal_basis: str
    items: tuple[str, ...] = Field(description="Item names disclosed, persons included")
    at: dt.datetime

    @property
    def trace_id(self) -> None:
        """Lines of this shape belong to no trace."""
        return None


#: A line of the processing log, in either shape.
LogEntry = ProcessingLogEntry | LegacyProcessingLogEntry


def parse_entry(line: str) -> LogEntry:
    """A stored line as the entry it is: an LDV record (it has ``trace_id``), or a line
    of the earlier flat shape.

    Raises:
        pydantic.ValidationError: the line is neither (its values are not echoed).
    """
    try:
        document = json.loads(line)
    except ValueError:
        document = None
    if isinstance(document, dict) and "trace_id" in document:
        return ProcessingLogEntry.model_validate(document)
    return LegacyProcessingLogEntry.model_validate_json(line)


def disclosure_name(packet: Packet) -> str:
    """The entry's LDV ``name``: ``disclose step-06 RVDK to IND``."""
    return (f"disclose step-{int(packet.step):02d} {packet.sender.value} to "
            f"{packet.recipient.value}")


def entries_for(packet: Packet, pseudonymise: Pseudonymise,
                context: trace.TraceContext | None = None, *,
                delivered_at: dt.datetime | None = None,
                new_span_id: Callable[[], str] = trace.new_span_id
                ) -> list[ProcessingLogEntry]:
    """The log entries a delivered packet owes: one per data subject in its body (LDV),
    each a span of its own under ``context``'s span (the API's or the CLI's) in its
    trace; without ``context``, under a new delivery span in a new trace.

    ``delivered_at`` is the ``end_time`` (default now; never before the packet was
    made). Persons with the same pseudonym (listed twice, or same name and date of
    birth) are one data subject and get one entry.
    """
    if context is None:
        context = trace.TraceContext.start()  # the delivery's own span, a new trace
    items = tuple(sorted(packet.body))
    subjects = dict.fromkeys(pseudonymise(person) for person in packet.persons)
    start = epoch_ms(packet.created_at)
    end = max(start, epoch_ms(delivered_at or dt.datetime.now(dt.UTC)))
    return [
        ProcessingLogEntry(
            trace_id=context.trace_id,
            span_id=new_span_id(),
            parent_span_id=context.span_id,
            name=disclosure_name(packet),
            start_time=start,
            end_time=end,
            status=Status.OK,
            attributes=EntryAttributes(
                processing_activity_id=packet.processing_activity_id,
                data_subject_id=subject_id,
                packet_id=packet.packet_id,
                case_ref=packet.case_ref,
                step=packet.step,
                sender=packet.sender,
                recipient=packet.recipient,
                items=items,
                fsc_transaction_id=context.fsc_transaction_id,
            ),
        )
        for subject_id in subjects
    ]


class DecodeEntry(BaseModel):
    """One operator's look at one case: the codec server decoded ``payload_count`` of the
    case's encrypted payloads for ``operator_id`` in one request (issue 7, governed
    decoding). One entry per case per request; ``kbflow disclosures`` shows them to the
    case's data subjects (GDPR art. 15).

    The decoded values are not logged, nor who the payloads are about: a case's data
    subjects are those of its packets' entries (``ProcessingLogEntry.case_ref``).
    (Decode entries keep their own shape: they are operators' reads through the codec
    server, not disclosures, and carry no trace: the Temporal UI sends none.)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(description="The codec request, shared by its entries")
    operator_id: str = Field(description="Staff id of the operator whose token was used")
    case_ref: str | None = Field(description="The case; null for payloads of no case "
                                             "(encrypted under the system key)")
    scope: str = Field(description="The data key's scope: the case's workflow id, or "
                                   "kbflow-system")
    payload_count: int = Field(ge=1, description="Encrypted payloads decoded")
    at: dt.datetime = Field(description="When they were decoded (UTC)")
