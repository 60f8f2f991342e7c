"""``/v1/inbox``: the caller's packets, sealed to its own key, and their receipts.

- ``GET /v1/inbox``: the caller's packets in the order they were delivered, a page at a
  time (``limit`` 1-100, default 20; ``next`` in the body and a ``Link: <…>; rel="next"``
  header hold the opaque cursor of the next page), optionally of one case (``caseRef``)
  and only (un)acknowledged ones (``acknowledged=true|false``).
- ``GET /v1/inbox/{packetId}``: one packet.
- ``POST /v1/inbox/{packetId}/acknowledgement``: its receipt, recorded once (the time and
  the caller's OIN); a repeat answers the first record. An acknowledged packet can still
  be read.

Each packet is its envelope (routing fields, no personal data) plus ``sealed_packet``:
the packet sealed to the recipient's public key (libsodium sealed box,
``encryption.sealed``), base64. The API removes only the layer of the case's data key; it
never holds a party's private key, so only the caller can open it
(``encryption.sealed.PartyKeys(folder).unseal(party, sealed)``). A GI sees only packets
of cases where it is the GI the ruling named (``api.authorisation``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import re
from typing import Annotated, Literal
from urllib.parse import urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api import PREFIX, authorisation
from api.bodies import invalid, plain_query
from api.context import ApiContext, ContextDep
from api.identity import Caller, CallerDep
from api.problems import ApiProblem, InvalidParam, ProblemType, responses
from encryption.keys import KeyUnavailable
from kbflow.case_refs import MODEL_PATTERN
from kbflow.process import Party, Step, processing_activity_id
from store.interface import AcknowledgementRow, InboxRow

router = APIRouter(tags=["inbox"])

#: A packet id as kbflow makes them (a UUID, or a test's short id): no personal data.
PACKET_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,80}$"
_CURSOR = re.compile(r"^c([0-9]{1,18})$")


class Acknowledgement(BaseModel):
    """A packet's receipt on record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_id: str
    acknowledged_at: dt.datetime = Field(description="When it was first acknowledged (UTC)")
    oin: str = Field(description="The OIN of the recipient that acknowledged it")


class InboxPacket(BaseModel):
    """One packet: its envelope (no personal data) and the packet sealed to the
    caller's key."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    packet_id: str
    case_ref: str
    step: int = Field(description="The step of PROCESS.md §3 it discloses in")
    sender: Party
    recipient: Party
    created_at: dt.datetime = Field(description="When it was made (UTC)")
    processing_activity_id: str = Field(description="Its processing activity in the "
                                                    "register (LDV)")
    acknowledged_at: dt.datetime | None = Field(
        default=None,
        description="When the recipient acknowledged it (UTC); null: not yet")
    sealed_packet: str = Field(
        description="The packet (JSON) sealed to the recipient's public key (libsodium "
                    "sealed box), base64; only the recipient's private key opens it")


class InboxPage(BaseModel):
    """One page of the caller's inbox."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packets: tuple[InboxPacket, ...]
    next: str | None = Field(description="The URL of the next page, or null at the end")


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def _sealed(api: ApiContext, row: InboxRow) -> str:
    """The packet's sealed box (the case key's layer removed), base64.

    Raises:
        ApiProblem: 409 when the case's key is destroyed (erased).
    """
    packet = row.packet
    try:
        key = api.keys.key(packet.key_id)
        sealed = AESGCM(key).decrypt(packet.ciphertext[:12], packet.ciphertext[12:],
                                     packet.packet_id.encode())
    except KeyUnavailable:
        raise ApiProblem(ProblemType.CONFLICT, f"packet {packet.packet_id}: its case is "
                         "erased; it can no longer be read") from None
    except InvalidTag:
        raise ApiProblem(ProblemType.INTERNAL, f"packet {packet.packet_id}: its "
                         "encryption does not authenticate") from None
    return base64.b64encode(sealed).decode()


def _shown(api: ApiContext, row: InboxRow) -> InboxPacket:
    packet = row.packet
    return InboxPacket(
        packet_id=packet.packet_id, case_ref=packet.case_ref, step=packet.step,
        sender=Party(packet.sender), recipient=Party(packet.recipient),
        created_at=_utc(packet.created_at),
        processing_activity_id=processing_activity_id(Step(packet.step),
                                                      Party(packet.sender)),
        acknowledged_at=None if row.acknowledgement is None else _utc(
            row.acknowledgement.acknowledged_at),
        sealed_packet=_sealed(api, row))


def _recorded_oin(caller: Caller) -> str | None:
    """A GI sees only the cases it is recorded for, by its OIN."""
    return caller.oin if caller.party is Party.GI else None


def _after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    match = _CURSOR.match(decoded)
    if match is None:
        raise invalid([InvalidParam(name="cursor", reason="not a cursor of this API (use "
                                    "the next link of a page as given)")], "query")
    return int(match.group(1))


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"c{seq}".encode()).decode().rstrip("=")


@router.get("/inbox", response_model=InboxPage, response_model_by_alias=True,
            responses=responses(ProblemType.CONFLICT), dependencies=[
                Depends(plain_query("cursor", "limit", "caseRef", "acknowledged"))])
async def inbox(
    request: Request, response: Response, caller: CallerDep, api: ContextDep,
    cursor: Annotated[str | None, Query(max_length=40, description="From a page's next "
                                        "link (opaque)")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Packets per page")] = 20,
    case_ref: Annotated[str | None, Query(alias="caseRef", pattern=MODEL_PATTERN,
                                          description="Only this case's packets")] = None,
    acknowledged: Annotated[Literal["true", "false"] | None, Query(
        description="true: only acknowledged packets; false: only those not yet")] = None,
) -> InboxPage:
    """The caller's packets, in the order they were delivered, a page at a time."""
    after = _after(cursor)
    rows = await asyncio.to_thread(
        authorisation.records(api).inbox_page, caller.party.value, after=after,
        limit=limit + 1, case_ref=case_ref,
        acknowledged=None if acknowledged is None else acknowledged == "true",
        recorded_oin=_recorded_oin(caller))
    more = len(rows) > limit
    rows = rows[:limit]
    shown = tuple(_shown(api, row) for row in rows)
    next_url = None
    if more:
        query = {key: value for key, value in request.query_params.items() if key != "cursor"}
        query["cursor"] = _cursor(rows[-1].seq)
        next_url = f"{PREFIX}/inbox?{urlencode(query)}"
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return InboxPage(packets=shown, next=next_url)


PacketIdPath = Annotated[str, Path(alias="packetId", pattern=PACKET_ID_PATTERN,
                                   description="The packet's id")]


async def _own_packet(api: ApiContext, caller: Caller, packet_id: str) -> InboxRow:
    """The caller's packet ``packet_id``.

    Raises:
        ApiProblem: 404 when there is none, or it is addressed to another party (or, for
            a GI, to another GI's case): a party learns nothing of others' packets.
    """
    records = authorisation.records(api)
    row = await asyncio.to_thread(records.inbox_packet, packet_id)
    mine = row is not None and row.packet.recipient == caller.party.value
    if mine and row is not None and caller.party is Party.GI:
        parties = await asyncio.to_thread(records.case_parties, row.packet.case_ref)
        mine = any(p.party == Party.GI.value and p.oin == caller.oin for p in parties)
    if row is None or not mine:
        # the id as typed is not repeated: a caller may have put anything in the path
        raise ApiProblem(ProblemType.NOT_FOUND, "packetId: no packet of this id is in the "
                         f"inbox of {caller.party.value}")
    return row


@router.get("/inbox/{packetId}", response_model=InboxPacket, response_model_by_alias=True,
            responses=responses(ProblemType.NOT_FOUND, ProblemType.CONFLICT),
            dependencies=[Depends(plain_query())])
async def inbox_packet(packet_id: PacketIdPath, caller: CallerDep,
                       api: ContextDep) -> InboxPacket:
    """One of the caller's packets (acknowledged or not)."""
    return _shown(api, await _own_packet(api, caller, packet_id))


@router.post("/inbox/{packetId}/acknowledgement", response_model=Acknowledgement,
             responses=responses(ProblemType.NOT_FOUND), dependencies=[Depends(plain_query())])
async def acknowledge(packet_id: PacketIdPath, caller: CallerDep,
                      api: ContextDep) -> Acknowledgement:
    """Record the packet's receipt, once: the time and the caller's OIN. A repeat
    answers the first record."""
    row = await _own_packet(api, caller, packet_id)
    stored: AcknowledgementRow = await asyncio.to_thread(
        authorisation.records(api).acknowledge, AcknowledgementRow(
            packet_id, row.packet.recipient, caller.oin,
            dt.datetime.now(dt.UTC).isoformat()))
    return Acknowledgement(packet_id=stored.packet_id,
                           acknowledged_at=_utc(stored.acknowledged_at), oin=stored.oin)
