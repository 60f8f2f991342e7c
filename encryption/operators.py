"""Operators and their codec tokens (``kbflow operator issue|list|revoke``).

An operator is a person who may read cases through the codec server; each has a token of
their own, so that every decode is on record under who made it (``kbflow.processing_log``,
``DecodeEntry``). An operator is named by a staff or function id (as an erasure's
requester, ``kbflow.events.StaffId``), never by their name.

A token is 256 random bits (``secrets.token_urlsafe(32)``) behind the prefix ``kbop_``,
shown once when issued. The store keeps only its SHA-256 digest, in SQLite
(``Settings.operators_path``): whoever reads the file (a backup, a read-only mount) holds
no token. A fast, unsalted hash suffices because the token is random: 2**256 guesses
are out of reach, so the slow, salted hashes made for guessable passwords (bcrypt,
argon2) would add cost on every request and no protection; and a plain digest lets the
codec server find the token by an index lookup. An operator has at most one live token
(a unique index); revoking keeps the row, so ``list`` shows when each token was issued
and revoked.

The codec server reads the store on every request (no cache), so a revoked token is
refused from the moment ``revoke`` returns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from encryption.storage import connect, create_schema
from kbflow.events import StaffId
from kbflow.settings import Settings

#: What every operator token starts with: tells it apart from the services' codec token
#: (``KBFLOW_CODEC_TOKEN``) and lets secret scanners find a leaked one.
TOKEN_PREFIX = "kbop_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operator_tokens (
    token_sha256 TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_token_per_operator
    ON operator_tokens (operator_id) WHERE revoked_at IS NULL;
"""

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
    """The operators' tokens in a SQLite file.

    Args:
        path: the SQLite file (``Settings.operators_path``).
        read_only: only read (``list``, the codec server): create no file or table; a
            missing file holds no operators.

    Raises:
        StorageError: the file cannot be created, opened, read or written (here and in
            every method).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if not read_only:
            create_schema(path, _SCHEMA)

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> OperatorStore:
        """The store in ``settings.operators_path``."""
        return cls(settings.operators_path, read_only=read_only)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with connect(self.path, read_only=self.read_only) as db:
            yield db

    def _exists(self) -> bool:
        return not self.read_only or self.path.is_file()

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
        with self._connect() as db:
            live = db.execute("SELECT issued_at FROM operator_tokens WHERE operator_id = ? "
                              "AND revoked_at IS NULL", (operator,)).fetchone()
            if live is not None:
                raise OperatorError(f"operator {operator} has a live token (issued "
                                    f"{live[0][:16].replace('T', ' ')} UTC); revoke it "
                                    "first: kbflow operator revoke " + operator)
            db.execute("INSERT INTO operator_tokens VALUES (?, ?, ?, NULL)",
                       (token_digest(token), operator, (at or _now()).isoformat()))
        return token

    def tokens(self) -> list[OperatorToken]:
        """Every token ever issued, oldest first (ids and times, never a token)."""
        if not self._exists():
            return []
        with self._connect() as db:
            rows = db.execute("SELECT operator_id, issued_at, revoked_at FROM operator_tokens "
                              "ORDER BY issued_at, rowid").fetchall()
        return [OperatorToken(operator_id=o, issued_at=dt.datetime.fromisoformat(i),
                              revoked_at=dt.datetime.fromisoformat(r) if r else None)
                for o, i, r in rows]

    def revoke(self, operator: str, *, at: dt.datetime | None = None) -> OperatorToken:
        """Revoke ``operator``'s live token; the codec server refuses it from now on.

        Returns:
            The token's record as revoked now, or (revoked already) as revoked before.

        Raises:
            OperatorError: the id is malformed, or no token was ever issued to it.
        """
        operator = operator_id(operator)
        when = (at or _now()).isoformat()
        with self._connect() as db:
            db.execute("UPDATE operator_tokens SET revoked_at = ? WHERE operator_id = ? "
                       "AND revoked_at IS NULL", (when, operator))
            row = db.execute("SELECT issued_at, revoked_at FROM operator_tokens "
                             "WHERE operator_id = ? ORDER BY revoked_at DESC, rowid DESC",
                             (operator,)).fetchone()
        if row is None:
            raise OperatorError(f"operator {operator}: no token was ever issued")
        return OperatorToken(operator_id=operator, issued_at=dt.datetime.fromisoformat(row[0]),
                             revoked_at=dt.datetime.fromisoformat(row[1]))

    def authenticate(self, token: str) -> str | None:
        """The operator whose live token ``token`` is; ``None`` for an unknown, malformed
        or revoked token (or no store yet)."""
        if not token.startswith(TOKEN_PREFIX) or not self._exists():
            return None
        with self._connect() as db:
            row = db.execute("SELECT operator_id FROM operator_tokens WHERE token_sha256 = ? "
                             "AND revoked_at IS NULL", (token_digest(token),)).fetchone()
        return None if row is None else str(row[0])
