"""Envelope encryption keys: master keys wrap one data key per case.

A case's data key (AES-256) encrypts everything of that case: its Temporal payloads and its
outbox packets. The data key is stored only wrapped (AES-256-GCM) by a master key, with the
master key's id beside it, so a master key can rotate by rewrapping the data keys — history
is never rewritten. Destroying a case's data key (crypto-shredding) makes the case's
history, packets and every backup of them unreadable, while other cases stay readable.

Master keys come from ``KBFLOW_MASTER_KEYS`` (``id:64-hex[,id:64-hex…]``, the first is
current) or, for development, from ``<data dir>/master.keys`` (created, mode 0600, one
``id:hex`` per line, the last is current). Keys never enter Temporal history or logs.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encryption.secret_files import append_secret_line, read_or_create_secret
from encryption.storage import StorageError
from kbflow.settings import MASTER_KEYS_ENV as MASTER_KEYS_ENV
from kbflow.settings import Settings
from store import open_store
from store.interface import DataKeyRecords, DataKeyRow
from store.sqlite import SqliteDataKeys

#: Scope of payloads that belong to no case (no workflow id in the serialization context).
SYSTEM_SCOPE = "kbflow-system"
#: How long a process trusts a cached data key before asking the store again (seconds):
#: bounds how long another process may still decrypt a case after it was erased. The
#: codec server trusts no cache (``cache_seconds=0``): it refuses an erased case's
#: payloads the moment the erasure is written.
CACHE_SECONDS = 5.0


class KeyUnavailable(LookupError):
    """A data key cannot be had: unknown, or destroyed by erasure. The message names the
    key id (random, not personal) and the reason."""


@dataclass(frozen=True)
class MasterKeys:
    """Master keys by id; ``current`` wraps new data keys."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str, *, current_first: bool) -> MasterKeys:
        """Parse ``id:hex`` entries separated by commas or newlines.

        Raises:
            ValueError: an entry is not ``id:64 hex characters``.
        """
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for entry in text.replace(",", "\n").split():
            key_id, _, hex_key = entry.partition(":")
            try:
                key = bytes.fromhex(hex_key)
            except ValueError:
                key = b""
            if not key_id or len(key) != 32:
                raise ValueError("master keys: each entry must be id:64 hex characters")
            keys[key_id] = key
            order.append(key_id)
        if not order:
            raise ValueError("master keys: none given")
        return cls(keys=keys, current=order[0] if current_first else order[-1])

    @classmethod
    def load(cls, settings: Settings, *, create: bool = True) -> MasterKeys:
        """From ``settings.master_keys`` (``KBFLOW_MASTER_KEYS``), else from (or, with
        ``create``, new in) ``settings.master_keys_path`` (``<data dir>/master.keys``).

        Raises:
            ValueError: the keys are malformed (see ``parse``).
            FileNotFoundError: no master-key file and not ``create``.
        """
        if settings.master_keys:
            return cls.parse(settings.master_keys, current_first=True)
        if not create:
            return cls.parse(settings.master_keys_path.read_text(), current_first=False)
        text = read_or_create_secret(
            settings.master_keys_path,
            lambda: f"mk-{secrets.token_hex(4)}:{secrets.token_hex(32)}\n")
        return cls.parse(text, current_first=False)

    @staticmethod
    def add_to_file(settings: Settings) -> str:
        """Append a new master key to ``settings.master_keys_path``, making it current."""
        key_id = f"mk-{secrets.token_hex(4)}"
        append_secret_line(settings.master_keys_path, f"{key_id}:{secrets.token_hex(32)}")
        return key_id


class KeyStore:
    """Data keys in the state store (a SQLite file, or PostgreSQL), wrapped by master
    keys. Thread-safe; several processes (worker, CLI, codec server; on PostgreSQL on
    several hosts) may share the store.

    Args:
        path: the SQLite file (used unless ``records`` is given).
        master_keys: the master keys that wrap the data keys.
        reload_master_keys: how to reload them after another process rotated them.
        read_only: only read: create no file, table or key (commands that only read, on
            a read-only data dir); a scope without a key raises ``KeyUnavailable``.
        cache_seconds: how long a data key read from the file is trusted before the file
            is asked again (0: ask every time, so a destroyed key is seen at once).
        records: the rows' backend (``KeyStore.open``: the configured store).

    Raises:
        StorageError: the store cannot be created, opened, read or written (here and in
            every method).
    """

    def __init__(self, path: Path, master_keys: MasterKeys,
                 reload_master_keys: Callable[[], MasterKeys] | None = None, *,
                 read_only: bool = False, cache_seconds: float = CACHE_SECONDS,
                 records: DataKeyRecords | None = None) -> None:
        self.path = path
        self.read_only = read_only
        self.cache_seconds = cache_seconds
        self.master_keys = master_keys
        # A running process meets a master key id it does not know after a rotation by
        # another process: it reloads the master keys once instead of failing.
        self._reload_master_keys = reload_master_keys
        self._cache: dict[str, tuple[float, str, bytes]] = {}  # key_id -> (at, scope, key)
        self._by_scope: dict[str, str] = {}
        self._lock = threading.Lock()
        self.records = records or SqliteDataKeys(path, read_only=read_only)

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False,
             cache_seconds: float = CACHE_SECONDS) -> KeyStore:
        """The configured store (``store.open_store``: ``settings.key_store_path``, or
        ``KBFLOW_STORE_URL``) with the configured master keys.

        Raises:
            StorageError: the store or the master-key file cannot be read (read-only:
                is missing) or, not read-only, created.
            ValueError: malformed master keys.
        """
        try:
            master_keys = MasterKeys.load(settings, create=not read_only)
        except OSError as error:
            raise StorageError.of(error, settings.master_keys_path,
                                  writing=not read_only) from None
        return cls(settings.key_store_path, master_keys,
                   reload_master_keys=lambda: MasterKeys.load(settings, create=not read_only),
                   read_only=read_only, cache_seconds=cache_seconds,
                   records=open_store(settings, read_only=read_only).data_keys)

    def without_cache(self) -> KeyStore:
        """A store on the same file and master keys that asks the file on every lookup,
        so it sees a destroyed key the moment another process destroyed it (the codec
        server)."""
        return KeyStore(self.path, self.master_keys, self._reload_master_keys,
                        read_only=self.read_only, cache_seconds=0.0, records=self.records)

    def _wrap(self, key_id: str, key: bytes) -> tuple[str, bytes]:
        master_id = self.master_keys.current
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.master_keys.keys[master_id]).encrypt(nonce, key, key_id.encode())
        return master_id, nonce + sealed

    def _unwrap(self, key_id: str, master_id: str, wrapped: bytes) -> bytes:
        master = self.master_keys.keys.get(master_id)
        if master is None and self._reload_master_keys is not None:
            self.master_keys = self._reload_master_keys()
            master = self.master_keys.keys.get(master_id)
        if master is None:
            raise KeyUnavailable(f"data key {key_id}: master key {master_id} is not configured")
        return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], key_id.encode())

    def _remember(self, key_id: str, scope: str, key: bytes) -> None:
        with self._lock:
            self._cache[key_id] = (time.monotonic(), scope, key)
            self._by_scope[scope] = key_id

    def _cached(self, key_id: str) -> bytes | None:
        with self._lock:
            hit = self._cache.get(key_id)
            if hit and time.monotonic() - hit[0] < self.cache_seconds:
                return hit[2]
        return None

    def key_for_scope(self, scope: str) -> tuple[str, bytes]:
        """The data key of ``scope`` (a workflow id), created on first use.

        Returns:
            ``(key_id, key)``; the key id goes into payload metadata.

        Raises:
            KeyUnavailable: the scope's key was destroyed (the case was erased).
        """
        with self._lock:
            key_id = self._by_scope.get(scope)
        if key_id is not None:
            key = self._cached(key_id)
            if key is not None:
                return key_id, key
        row = self.records.data_key_of_scope(scope)
        if row is None and self.read_only:
            raise KeyUnavailable(f"scope {scope}: no data key yet, and this key store "
                                 "is read-only")
        if row is None:
            key_id, key = f"dk-{secrets.token_hex(12)}", AESGCM.generate_key(256)
            master_id, wrapped = self._wrap(key_id, key)
            # Race-safe: of two processes creating the scope's key, one row is stored
            # and both get it.
            row = self.records.create_data_key(DataKeyRow(key_id, scope, master_id, wrapped),
                                               dt.datetime.now(dt.UTC).isoformat())
        key_id = row.key_id
        if row.wrapped is None or row.master_key_id is None:
            raise KeyUnavailable(f"data key {key_id}: destroyed (case erased)")
        key = self._unwrap(key_id, row.master_key_id, row.wrapped)
        self._remember(key_id, scope, key)
        return key_id, key

    def key(self, key_id: str) -> bytes:
        """The data key with ``key_id``.

        Raises:
            KeyUnavailable: unknown, or destroyed (the case was erased).
        """
        cached = self._cached(key_id)
        if cached is not None:
            return cached
        row = self.records.data_key(key_id)
        if row is None:
            raise KeyUnavailable(f"data key {key_id}: unknown")
        if row.wrapped is None or row.master_key_id is None:
            raise KeyUnavailable(f"data key {key_id}: destroyed (case erased)")
        key = self._unwrap(key_id, row.master_key_id, row.wrapped)
        self._remember(key_id, row.scope, key)
        return key

    def scope_of(self, key_id: str) -> str | None:
        """The scope (a case's workflow id, or ``SYSTEM_SCOPE``) of the data key
        ``key_id``, live or destroyed; ``None`` if unknown. The codec server names the
        case of each decode with it."""
        row = self.records.data_key(key_id)
        return None if row is None else row.scope

    def has_key(self, scope: str) -> bool:
        """Whether ``scope`` ever had a data key (live or destroyed)."""
        return self.records.data_key_of_scope(scope) is not None

    def is_destroyed(self, scope: str) -> bool:
        """Whether ``scope``'s data key was destroyed."""
        row = self.records.data_key_of_scope(scope)
        return row is not None and row.destroyed

    def destroy(self, scope: str) -> bool:
        """Crypto-shred ``scope``: destroy its data key for good.

        Returns:
            True if a key was destroyed now; False if there was none or it was gone already.
        """
        destroyed = self.records.destroy_data_key(scope, dt.datetime.now(dt.UTC).isoformat())
        with self._lock:
            key_id = self._by_scope.pop(scope, None)
            if key_id is not None:
                self._cache.pop(key_id, None)
        return destroyed

    def rewrap(self) -> int:
        """Rewrap every live data key with the current master key (master-key rotation).

        Returns:
            How many data keys were rewrapped.
        """
        count = 0
        for row in self.records.live_data_keys():
            if row.master_key_id == self.master_keys.current:
                continue
            assert row.master_key_id is not None and row.wrapped is not None  # live
            new_master, new_wrapped = self._wrap(row.key_id, self._unwrap(
                row.key_id, row.master_key_id, row.wrapped))
            # A key destroyed meanwhile stays destroyed (the update requires it live).
            if self.records.rewrap_data_key(row.key_id, new_master, new_wrapped):
                count += 1
        return count
