"""The SQL of ``AcknowledgementRecords.inbox_page`` and ``inbox_packet``, built alike
for both backends (``store.sqlite``: ``rowid`` and ``?``; ``store.postgres``: ``seq``
and ``%s``). Column names come from the code, never from input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store.interface import AcknowledgementRow, InboxRow, PacketRow

_COLUMNS = ("p.packet_id, p.case_ref, p.step, p.sender, p.recipient, p.created_at, "
            "p.key_id, p.ciphertext, a.packet_id, a.recipient, a.oin, a.acknowledged_at")


def inbox_page(seq: str, mark: str, recipient: str, *, after: int, limit: int,
               case_ref: str | None, acknowledged: bool | None,
               recorded_oin: str | None) -> tuple[str, list[Any]]:
    """The query of one inbox page and its parameters (see
    ``store.interface.AcknowledgementRecords.inbox_page``)."""
    where = [f"p.recipient = {mark}", f"p.{seq} > {mark}"]
    params: list[Any] = [recipient, after]
    if case_ref is not None:
        where.append(f"p.case_ref = {mark}")
        params.append(case_ref)
    if acknowledged is not None:
        where.append("a.packet_id IS NOT NULL" if acknowledged else "a.packet_id IS NULL")
    if recorded_oin is not None:
        where.append("EXISTS (SELECT 1 FROM case_parties c WHERE c.case_ref = p.case_ref "
                     f"AND c.party = p.recipient AND c.oin = {mark})")
        params.append(recorded_oin)
    params.append(limit)
    return (f"SELECT p.{seq}, {_COLUMNS} FROM packets p LEFT JOIN acknowledgements a "
            f"ON a.packet_id = p.packet_id WHERE {' AND '.join(where)} "
            f"ORDER BY p.{seq} LIMIT {mark}"), params


def inbox_packet(seq: str, mark: str) -> str:
    """The query of one packet with its acknowledgement, by packet id."""
    return (f"SELECT p.{seq}, {_COLUMNS} FROM packets p LEFT JOIN acknowledgements a "
            f"ON a.packet_id = p.packet_id WHERE p.packet_id = {mark}")


def inbox_row(row: Sequence[Any]) -> InboxRow:
    """An ``InboxRow`` from the columns these queries select (the ciphertext as bytes:
    SQLite gives bytes, psycopg a memoryview)."""
    seq, *packet, ack_id, ack_recipient, ack_oin, ack_at = row
    packet[7] = bytes(packet[7])
    acknowledgement = None if ack_id is None else AcknowledgementRow(
        ack_id, ack_recipient, ack_oin, ack_at)
    return InboxRow(int(seq), PacketRow(*packet), acknowledgement)
