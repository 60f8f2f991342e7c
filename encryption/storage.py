"""The data dir's SQLite files: opening them for writing or only for reading, and the one
error every storage fault becomes.

The key store (``encryption.keys``) and the outbox store (``activities.outbox_store``)
open their files through ``connect``. A store opened read-only never creates a file or a
table and never changes the journal mode, so commands that only read work on a read-only
data dir (a read-only mount, a file system that went read-only, a backup copy).

Every ``sqlite3.Error`` and ``OSError`` of a store becomes ``StorageError``: one line that
names what could not be read or written, the file (a path, never content) and the reason
(read-only file system, disk full, permission denied, locked, …), so the command line
maps storage faults once (``starter.cli``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

#: How long a connection waits for another process's lock (seconds).
LOCK_TIMEOUT = 30.0

_SQLITE_REASONS = {
    "SQLITE_READONLY": "read-only (file system or file)",
    "SQLITE_READONLY_DBMOVED": "read-only (the file was moved)",
    "SQLITE_FULL": "disk full",
    "SQLITE_IOERR": "input/output error",
    "SQLITE_CANTOPEN": "cannot open the file (missing, permission denied or read-only "
                       "file system)",
    "SQLITE_PERM": "permission denied",
    "SQLITE_AUTH": "permission denied",
    "SQLITE_BUSY": "locked by another process",
    "SQLITE_LOCKED": "locked",
    "SQLITE_CORRUPT": "the file is damaged",
    "SQLITE_NOTADB": "not a database",
}
_MESSAGE_REASONS = (  # for errors without an error name (and for injected test faults)
    ("readonly", "read-only (file system or file)"),
    ("disk is full", "disk full"),
    ("disk i/o", "input/output error"),
    ("unable to open", "cannot open the file (missing, permission denied or read-only "
                       "file system)"),
    ("locked", "locked by another process"),
    ("malformed", "the file is damaged"),
    ("not a database", "not a database"),
)
_ERRNO_REASONS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "no such file or directory",
    errno.EIO: "input/output error",
}


class StorageError(Exception):
    """A file of the data dir cannot be read or written. The message is one line: what,
    where (the file's path) and why (read-only, disk full, permission denied, locked);
    never any content."""

    @classmethod
    def of(cls, error: sqlite3.Error | OSError, path: Path, *, writing: bool) -> StorageError:
        """The storage error for ``error`` on ``path``."""
        verb = "write" if writing else "read"
        said = reason(error)
        if writing and said == "input/output error" and _disk_full(path):
            said = "disk full"  # SQLite says I/O error when a write into a full disk fails
        return cls(f"cannot {verb} {path}: {said}")


def _disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has no block left (False if unknown)."""
    folder = path if path.is_dir() else path.parent
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def reason(error: sqlite3.Error | OSError) -> str:
    """Why a storage call failed, in a few words (never the data involved)."""
    if isinstance(error, OSError):
        if error.errno in _ERRNO_REASONS:
            return _ERRNO_REASONS[error.errno]
        return error.strerror or type(error).__name__
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):  # e.g. SQLITE_READONLY_DIRECTORY: its base code names it
        for code in (name, "_".join(name.split("_")[:2])):
            if code in _SQLITE_REASONS:
                return _SQLITE_REASONS[code]
    text = str(error).lower()
    for fragment, said in _MESSAGE_REASONS:
        if fragment in text:
            return said
    return type(error).__name__  # sqlite's other messages may quote SQL, never data


@contextmanager
def connect(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to ``path`` in one transaction (commit on success, roll back on error).

    Read-only: ``mode=ro``, falling back to ``immutable=1`` when SQLite cannot create the
    ``-shm`` file beside a WAL database (read-only directory). Read-write connections
    overwrite deleted content (``secure_delete``).

    Raises:
        StorageError: the file cannot be opened, read or written.
    """
    try:
        db = _open(path, read_only)
    except (sqlite3.Error, OSError) as error:
        raise StorageError.of(error, path, writing=not read_only) from None
    try:
        if not read_only:
            db.execute("PRAGMA secure_delete=ON")  # erased rows are overwritten, not freed
        with db:
            yield db
    except (sqlite3.Error, OSError) as error:
        raise StorageError.of(error, path, writing=not read_only) from None
    finally:
        db.close()


def _open(path: Path, read_only: bool) -> sqlite3.Connection:
    if not read_only:
        return sqlite3.connect(path, timeout=LOCK_TIMEOUT)
    if not path.is_file():
        raise sqlite3.OperationalError("unable to open database file")
    uri = f"file:{quote(str(path.resolve()))}"
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=LOCK_TIMEOUT)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:  # a WAL file whose -shm cannot be made here
        db.close()
    # immutable: SQLite assumes nobody writes meanwhile; a reading command's snapshot.
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=LOCK_TIMEOUT)


def create_schema(path: Path, schema: str) -> None:
    """Create ``path``'s directory, tables and indexes if missing, and put the file in
    WAL mode (persistent: set once here, not on every connection).

    Raises:
        StorageError: the directory or the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError.of(error, path.parent, writing=True) from None
    with connect(path) as db:
        db.executescript(schema)
    try:
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT)
        try:
            db.execute("PRAGMA journal_mode=WAL")
        finally:
            db.close()
    except sqlite3.Error as error:
        raise StorageError.of(error, path, writing=True) from None
