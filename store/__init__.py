"""kbflow's own state outside Temporal: one interface (``store.interface.StateStore``),
two backends, chosen by ``KBFLOW_STORE_URL`` (``Settings.store_url``).

- unset: SQLite files in the data dir (``store.sqlite``; one host, nothing to install;
  data dirs made before this keep working);
- ``postgresql://…``: one PostgreSQL database (``store.postgres``), shared by workers on
  several hosts; nothing of kbflow's state is then written to a local file.

``kbflow.settings`` refuses any other value in one line naming the variable.
"""

from __future__ import annotations

import threading
from pathlib import Path

from kbflow.settings import Settings
from store.interface import StateStore
from store.sqlite import SqliteStore

_OPEN: dict[tuple[str, bool], StateStore] = {}
_OPEN_LOCK = threading.Lock()


def open_store(settings: Settings, *, read_only: bool = False) -> StateStore:
    """The state store ``settings`` configures.

    SQLite parts are opened (and, unless ``read_only``, created and migrated) on first
    use. A PostgreSQL store is opened once per process, URL and mode (one connection pool
    shared by the outbox, the key store, …), migrated unless ``read_only``.

    Args:
        settings: ``store_url`` chooses the backend; SQLite uses the data dir's paths.
        read_only: only read: create no file, table or schema; writes raise
            ``StorageError``.

    Raises:
        StorageError: the store cannot be opened (PostgreSQL: unreachable, login refused,
            not migrated when read-only …), one line without the URL's password.
    """
    if settings.store_url is None:
        return SqliteStore(settings.outbox_path, settings.key_store_path,
                           settings.operators_path, read_only=read_only)
    with _OPEN_LOCK:
        opened = _OPEN.get((settings.store_url, read_only))
        if opened is None:
            from store.postgres import PostgresStore  # psycopg only where it is used

            opened = PostgresStore(settings.store_url, read_only=read_only)
            _OPEN[(settings.store_url, read_only)] = opened
        return opened


def local_file_missing(settings: Settings, path: Path) -> bool:
    """Whether the SQLite store's file ``path`` (one of ``settings``' paths) is missing:
    a command that only reads then says so instead of creating it. Always False on
    PostgreSQL, which keeps no local file."""
    return settings.store_url is None and not path.is_file()


def close_stores() -> None:
    """Close every PostgreSQL store ``open_store`` opened (their pools); the next
    ``open_store`` opens afresh. For tests and orderly shutdown."""
    with _OPEN_LOCK:
        stores = list(_OPEN.values())
        _OPEN.clear()
    for opened in stores:
        opened.close()


__all__ = ["StateStore", "close_stores", "local_file_missing", "open_store"]
