"""Master-key rotation for ``kbflow rotate-master-key`` and ``kbflow rewrap``.

Rotation adds a new master key and rewraps every live data key with it
(``encryption.keys.KeyStore.rewrap``): only the small wrapped keys change, never a
payload, a packet or a Temporal history. Erased cases have no key left to rewrap.
"""

from __future__ import annotations

from dataclasses import dataclass

from encryption.keys import KeyStore, KeyUnavailable, MasterKeys
from kbflow.settings import MASTER_KEYS_ENV, Settings
from store import local_file_missing, open_store


class KeyAdminError(Exception):
    """Rotation or rewrapping cannot be done here; the message says why, in one line."""


@dataclass(frozen=True)
class Rotation:
    """What a rotation did."""

    master_key_id: str
    rewrapped: int


def open_existing(settings: Settings, *, read_only: bool = False) -> KeyStore:
    """The data dir's key store with the configured master keys; refuses to create either
    (a wrong KBFLOW_DATA_DIR would otherwise get a fresh, empty store and a master key
    nobody else uses). ``read_only`` opens it without writing anything.

    Raises:
        KeyAdminError: no key store, no master keys, or malformed master keys.
    """
    path = settings.key_store_path
    if local_file_missing(settings, path):
        raise KeyAdminError(f"no key store at {path}; is KBFLOW_DATA_DIR the worker's?")
    keys_file = settings.master_keys_path
    if not settings.master_keys and not keys_file.is_file():
        raise KeyAdminError(f"no master keys: set {MASTER_KEYS_ENV} or use the worker's "
                            f"KBFLOW_DATA_DIR ({keys_file} is missing)")
    try:
        return KeyStore(path, MasterKeys.load(settings, create=False),
                        reload_master_keys=lambda: MasterKeys.load(settings, create=False),
                        read_only=read_only,
                        records=open_store(settings, read_only=read_only).data_keys)
    except ValueError as error:  # a malformed KBFLOW_MASTER_KEYS or master.keys
        raise KeyAdminError(str(error)) from None


def _rewrap(store: KeyStore) -> int:
    try:
        return store.rewrap()
    except KeyUnavailable as error:
        raise KeyAdminError(f"{error}; add it to the master keys, then run `kbflow rewrap`"
                            ) from None


def rewrap(settings: Settings) -> int:
    """Rewrap every live data key with the current master key.

    Returns:
        How many data keys were rewrapped (those under another master key).

    Raises:
        KeyAdminError: no key store, malformed master keys, or a data key wrapped by a
            master key that is not configured.
    """
    return _rewrap(open_existing(settings))


def rotate_master_key(settings: Settings) -> Rotation:
    """Add a new master key to ``settings.master_keys_path`` and rewrap every data key with
    it.

    Raises:
        KeyAdminError: ``KBFLOW_MASTER_KEYS`` is set (rotate in the secret store instead),
            there is no key store or master-key file, or a live data key is wrapped by a
            master key that is not configured (all checked before anything changes).
    """
    if settings.master_keys:
        raise KeyAdminError(
            f"{MASTER_KEYS_ENV} is set: add the new key first in that list in your secret "
            "store, restart kbflow's processes, then run `kbflow rewrap`")
    store = open_existing(settings)
    # Finish any earlier rotation first: every live key must unwrap before the file changes.
    _rewrap(store)
    master_key_id = MasterKeys.add_to_file(settings)
    return Rotation(master_key_id=master_key_id, rewrapped=_rewrap(KeyStore.open(settings)))
