"""Versioned schema migrations: the SQL files under ``store/migrations/``.

Each backend keeps a ``schema_version`` table (version, name, applied_at) and applies the
migrations it lacks, in order, each once, in one transaction with the version's row.
Migration files are named ``NNNN_what.sql``; a migration is never edited once released,
a change is a new file. SQLite has one folder per file of the data dir
(``sqlite/outbox``, ``sqlite/keys``, ``sqlite/operators``); PostgreSQL one folder for its
one database (``postgres``).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema step: its version number, name and SQL text."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The SQL split into complete statements (SQLite runs one at a time)."""
        done: list[str] = []
        buffer = ""
        for line in self.sql.splitlines(keepends=True):
            if not buffer and (not line.strip() or line.lstrip().startswith("--")):
                continue
            buffer += line
            if sqlite3.complete_statement(buffer):
                done.append(buffer.strip())
                buffer = ""
        if buffer.strip():
            done.append(buffer.strip())
        return done


@cache
def migrations(kind: str) -> tuple[Migration, ...]:
    """The migrations of ``kind`` (``postgres``, ``sqlite/outbox``, …), oldest first.

    Raises:
        ValueError: a file in the folder is not named ``NNNN_name.sql``, or two share a
            version.
    """
    folder = resources.files("store").joinpath("migrations", *kind.split("/"))
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise ValueError(f"migration {kind}/{entry.name}: not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"migration {kind}/{entry.name}: version {version} twice")
        found[version] = Migration(version, match.group(2), entry.read_text())
    return tuple(found[version] for version in sorted(found))


def latest_version(kind: str) -> int:
    """The newest migration's version of ``kind`` (0 if none)."""
    known = migrations(kind)
    return known[-1].version if known else 0
