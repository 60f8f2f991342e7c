"""Operators and their codec tokens (``kbflow operator issue|list|revoke``).

An operator is a person who may read cases through the codec server; each has a token of
their own, so that every decode is on record under who made it (``kbflow.processing_log``,
``DecodeEntry``). An operator is named by a staff or function id (as an erasure's
requester, ``kbflow.events.StaffId``), never by their name.

A token is 256 random bits (``secrets.token_urlsafe(32)``) behind the prefix ``kbop_``,
shown once when issued. The store keeps only its SHA-256 digest, in the state store
(SQLite ``Settings.operators_path``, or PostgreSQL): whoever reads the file (a backup, a
read-only mount) holds no token. A fast, unsalted hash suffices because the token is
random: 2**256 guesses are out of reach, so the slow, salted hashes made for guessable
passwords (bcrypt, argon2) would add cost on every request and no protection; and a plain
digest lets the codec server find the token by an index lookup. An operator has at most
one live token (a unique index); revoking keeps the row, so ``list`` shows when each
token was issued and revoked.

The codec server reads the store on every request (no cache), so a revoked token is
refused from the moment ``revoke`` returns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kbflow.events import StaffId
from kbflow.settings import Settings
from store import open_store
from store.interface import OperatorTokenRecords
from store.sqlite import SqliteOperatorTokens

#: What every operator token starts with: tells it apart from the services' codec token
#: (``KBFLOW_CODEC_TOKEN``) and lets secret scanners find a leaked one.
TOKEN_PREFIX = "kbop_"

_STAFF_ID: TypeAdapter[str] = TypeAdapter(StaffId)


class OperatorError(ValueError):
    """An operator command cannot be carried out; the message is one line and names the
    operator id (a staff id, not personal) and what to do."""


class OperatorToken(BaseModel):
    """One token as ``kbflow operator list`` shows it: never the token itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operator_id: str = Field(description="The operator's staff or function id")
    issued_at: dt.datetime = Field(description="When the token was issued (UTC)")
    revoked_at: dt.datetime | None = Field(description="When it was revoked; null: live")


def operator_id(value: str) -> str:
    """``value`` checked as an operator id: a staff or function id, 2-40 characters of
    ``A-Z a-z 0-9 . _ -`` (so no name with a space fits).

    Raises:
        OperatorError: it is not; the message does not repeat it (it could be a name).
    """
    try:
        return _STAFF_ID.validate_python(value)
    except ValidationError:
        raise OperatorError("OPERATOR_ID: must be a staff or function id, 2-40 characters "
                            "of A-Z a-z 0-9 . _ - (not a name)") from None


def token_digest(token: str) -> str:
    """The SHA-256 hex digest the store keeps of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OperatorStore:
    """The operators' tokens in the state store.

    Args:
        path: the SQLite file (``Settings.operators_path``; used unless ``records`` is
            given).
        read_only: only read (``list``, the codec server): create no file or table; a
            missing file holds no operators.
        records: the rows' backend (``OperatorStore.open``: the configured store).

    Raises:
        StorageError: the store cannot be created, opened, read or written (here and in
            every method).
    """

    def __init__(self, path: Path, *, read_only: bool = False,
                 records: OperatorTokenRecords | None = None) -> None:
        self.path = path
        self.read_only = read_only
        self.records = records or SqliteOperatorTokens(path, read_only=read_only)

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> OperatorStore:
        """The store ``settings`` configures (``store.open_store``:
        ``settings.operators_path``, or ``KBFLOW_STORE_URL``)."""
        return cls(settings.operators_path, read_only=read_only,
                   records=open_store(settings, read_only=read_only).operator_tokens)

    def issue(self, operator: str, *, at: dt.datetime | None = None) -> str:
        """A new token for ``operator``; only its digest is stored.

        Returns:
            The token, to hand to the operator once (it cannot be shown again).

        Raises:
            OperatorError: the id is malformed, or the operator has a live token (revoke
                it first: a token is never replaced silently).
        """
        operator = operator_id(operator)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        live = self.records.issue_operator_token(token_digest(token), operator,
                                                 (at or _now()).isoformat())
        if live is not None:
            raise OperatorError(f"operator {operator} has a live token (issued "
                                f"{live[:16].replace('T', ' ')} UTC); revoke it "
                                "first: kbflow operator revoke " + operator)
        return token

    def tokens(self) -> list[OperatorToken]:
        """Every token ever issued, oldest first (ids and times, never a token)."""
        return [OperatorToken(operator_id=row.operator_id,
                              issued_at=dt.datetime.fromisoformat(row.issued_at),
                              revoked_at=dt.datetime.fromisoformat(row.revoked_at)
                              if row.revoked_at else None)
                for row in self.records.operator_token_rows()]

    def revoke(self, operator: str, *, at: dt.datetime | None = None) -> OperatorToken:
        """Revoke ``operator``'s live token; the codec server refuses it from now on.

        Returns:
            The token's record as revoked now, or (revoked already) as revoked before.

        Raises:
            OperatorError: the id is malformed, or no token was ever issued to it.
        """
        operator = operator_id(operator)
        row = self.records.revoke_operator_token(operator, (at or _now()).isoformat())
        if row is None or row.revoked_at is None:
            raise OperatorError(f"operator {operator}: no token was ever issued")
        return OperatorToken(operator_id=operator,
                             issued_at=dt.datetime.fromisoformat(row.issued_at),
                             revoked_at=dt.datetime.fromisoformat(row.revoked_at))

    def authenticate(self, token: str) -> str | None:
        """The operator whose live token ``token`` is; ``None`` for an unknown, malformed
        or revoked token (or no store yet)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        return self.records.operator_of_token(token_digest(token))
