"""Envelope encryption keys: a key wrapper (master keys or a KMS) wraps one data key per case.

A case's data key (AES-256) encrypts everything of that case: its Temporal payloads and its
outbox packets. The data key is stored only wrapped, with the id of what wrapped it beside
it (``encryption.wrapping``: a local master key, AES-256-GCM; or a KMS's transit key,
``encryption.kms``), so the wrapping key can rotate by rewrapping the data keys — history
is never rewritten. Destroying a case's data key (crypto-shredding) makes the case's
history, packets and every backup of them unreadable, while other cases stay readable.

Master keys come from ``KBFLOW_MASTER_KEYS`` (``id:64-hex[,id:64-hex…]``, the first is
current) or, for development, from ``<data dir>/master.keys`` (created, mode 0600, one
``id:hex`` per line, the last is current); with ``KBFLOW_KMS_URL`` set the KMS wraps
instead. Keys never enter Temporal history or logs.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encryption.storage import StorageError
from encryption.wrapping import KeyUnavailable as KeyUnavailable
from encryption.wrapping import KeyWrapper, MasterKeyWrapper, wrapper_for
from encryption.wrapping import MasterKeys as MasterKeys
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


class KeyStore:
    """Data keys in the state store (a SQLite file, or PostgreSQL), wrapped by a
    ``KeyWrapper`` (master keys or a KMS). Thread-safe; several processes (worker, CLI,
    codec server; on PostgreSQL on several hosts) may share the store.

    Args:
        path: the SQLite file (used unless ``records`` is given).
        wrapper: what wraps the data keys (``encryption.wrapping.KeyWrapper``); plain
            ``MasterKeys`` are taken as their ``MasterKeyWrapper``.
        reload_master_keys: with ``MasterKeys``: how to reload them after another process
            rotated them.
        read_only: only read: create no file, table or key (commands that only read, on
            a read-only data dir); a scope without a key raises ``KeyUnavailable``.
        cache_seconds: how long a data key read from the file is trusted before the file
            is asked again (0: ask every time, so a destroyed key is seen at once).
        records: the rows' backend (``KeyStore.open``: the configured store).

    Raises:
        StorageError: the store cannot be created, opened, read or written (here and in
            every method).
    """

    def __init__(self, path: Path, wrapper: KeyWrapper | MasterKeys,
                 reload_master_keys: Callable[[], MasterKeys] | None = None, *,
                 read_only: bool = False, cache_seconds: float = CACHE_SECONDS,
                 records: DataKeyRecords | None = None) -> None:
        self.path = path
        self.read_only = read_only
        self.cache_seconds = cache_seconds
        # A running process meets a master key id it does not know after a rotation by
        # another process: the wrapper reloads the master keys once instead of failing.
        self.wrapper: KeyWrapper = (
            MasterKeyWrapper(wrapper, reload_master_keys)
            if isinstance(wrapper, MasterKeys) else wrapper)
        self._cache: dict[str, tuple[float, str, bytes]] = {}  # key_id -> (at, scope, key)
        self._by_scope: dict[str, str] = {}
        self._lock = threading.Lock()
        self.records = records or SqliteDataKeys(path, read_only=read_only)

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False,
             cache_seconds: float = CACHE_SECONDS) -> KeyStore:
        """The configured store (``store.open_store``: ``settings.key_store_path``, or
        ``KBFLOW_STORE_URL``) with the configured key wrapper
        (``encryption.wrapping.wrapper_for``: the KMS if ``KBFLOW_KMS_URL`` is set, else
        the master keys, created in the data dir if missing and not ``read_only``).

        Raises:
            StorageError: the store or the master-key file cannot be read (read-only:
                is missing) or, not read-only, created; ``KmsError``: the KMS's CA file
                cannot be read (the KMS itself is asked only when a key is needed).
            ValueError: malformed master keys.
        """
        try:
            wrapper = wrapper_for(settings, create=not read_only)
        except OSError as error:
            raise StorageError.of(error, settings.master_keys_path,
                                  writing=not read_only) from None
        return cls(settings.key_store_path, wrapper,
                   read_only=read_only, cache_seconds=cache_seconds,
                   records=open_store(settings, read_only=read_only).data_keys)

    @property
    def master_keys(self) -> MasterKeys:
        """The local master keys that wrap this store's data keys.

        Raises:
            TypeError: a KMS wraps them (``KBFLOW_KMS_URL``), not master keys.
        """
        if not isinstance(self.wrapper, MasterKeyWrapper):
            raise TypeError("a KMS wraps this key store's data keys, not master keys")
        return self.wrapper.master_keys

    def without_cache(self) -> KeyStore:
        """A store on the same records and key wrapper that asks the store on every
        lookup, so it sees a destroyed key the moment another process destroyed it (the
        codec server)."""
        return KeyStore(self.path, self.wrapper, read_only=self.read_only,
                        cache_seconds=0.0, records=self.records)

    def _wrap(self, key_id: str, key: bytes) -> tuple[str, bytes]:
        """``(wrapping id, wrapped)`` of a new data key (``KeyWrapper.wrap``)."""
        return self.wrapper.wrap(key_id, key)

    def _unwrap(self, key_id: str, master_id: str, wrapped: bytes) -> bytes:
        """The data key ``key_id`` (``KeyWrapper.unwrap``); ``master_id`` is the stored
        wrapping id."""
        return self.wrapper.unwrap(key_id, master_id, wrapped)

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
        """Rewrap every live data key with the current wrapping key (after a rotation of
        the master keys or of the KMS's transit key; ``KeyWrapper.rewrap``).

        Returns:
            How many data keys were rewrapped (those not under the current one).

        Raises:
            KeyUnavailable: a data key's wrapping key is not configured.
            KmsError: the KMS cannot be asked, or refuses.
        """
        count = 0
        current = self.wrapper.current()
        for row in self.records.live_data_keys():
            if row.master_key_id == current:
                continue
            assert row.master_key_id is not None and row.wrapped is not None  # live
            new_master, new_wrapped = self.wrapper.rewrap(row.key_id, row.master_key_id,
                                                          row.wrapped)
            # A key destroyed meanwhile stays destroyed (the update requires it live).
            if self.records.rewrap_data_key(row.key_id, new_master, new_wrapped):
                count += 1
        return count
