"""Rotation of what wraps the data keys, for ``kbflow rotate-master-key`` and
``kbflow rewrap``.

With local master keys, rotation adds a new master key and rewraps every live data key
with it (``encryption.keys.KeyStore.rewrap``). With a KMS (``KBFLOW_KMS_URL``), rotation
is the KMS's: ``rotate-master-key`` asks the KMS to rotate the transit key (a token that
may), then rewraps; ``rewrap`` rewraps after ops rotated it in the KMS. Either way only
the small wrapped keys change, never a payload, a packet or a Temporal history. Erased
cases have no key left to rewrap.
"""

from __future__ import annotations

from dataclasses import dataclass

from encryption.keys import KeyStore, KeyUnavailable, MasterKeys
from encryption.storage import StorageError
from encryption.wrapping import wrapper_for
from kbflow.settings import MASTER_KEYS_ENV, Settings
from store import local_file_missing, open_store


class KeyAdminError(Exception):
    """Rotation or rewrapping cannot be done here; the message says why, in one line."""


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the new wrapping id (a master key id, or
    ``transit:<key>:v<version>`` with a KMS) and how many data keys were rewrapped."""

    master_key_id: str
    rewrapped: int
    in_kms: bool = False


def open_existing(settings: Settings, *, read_only: bool = False) -> KeyStore:
    """The data dir's key store with the configured key wrapper (the KMS, or the master
    keys); refuses to create either (a wrong KBFLOW_DATA_DIR would otherwise get a fresh,
    empty store and a master key nobody else uses). ``read_only`` opens it without
    writing anything. The KMS is not asked yet.

    Raises:
        KeyAdminError: no key store, no master keys (and no KMS), malformed master keys,
            or an unreadable KBFLOW_KMS_CA_FILE.
    """
    path = settings.key_store_path
    if local_file_missing(settings, path):
        raise KeyAdminError(f"no key store at {path}; is KBFLOW_DATA_DIR the worker's?")
    keys_file = settings.master_keys_path
    if settings.kms is None and not MasterKeys.configured(settings):
        raise KeyAdminError(f"no master keys: set {MASTER_KEYS_ENV} or use the worker's "
                            f"KBFLOW_DATA_DIR ({keys_file} is missing)")
    try:
        return KeyStore(path, wrapper_for(settings, create=False), read_only=read_only,
                        records=open_store(settings, read_only=read_only).data_keys)
    except (ValueError, StorageError) as error:  # malformed master keys; the KMS's CA file
        raise KeyAdminError(str(error)) from None


def _rewrap(store: KeyStore) -> int:
    try:
        return store.rewrap()
    except KeyUnavailable as error:
        raise KeyAdminError(f"{error}; add it to the master keys, then run `kbflow rewrap`"
                            ) from None
    except StorageError as error:  # the KMS cannot be asked or refuses (KmsError)
        raise KeyAdminError(str(error)) from None


def rewrap(settings: Settings) -> int:
    """Rewrap every live data key with the current master key, or with the newest version
    of the KMS's transit key (through the KMS's ``rewrap``: the data keys stay inside
    it).

    Returns:
        How many data keys were rewrapped (those under another master key or version).

    Raises:
        KeyAdminError: no key store, malformed master keys, a data key wrapped by a
            master key that is not configured, or the KMS cannot be asked or refuses.
    """
    return _rewrap(open_existing(settings))


def rotate_master_key(settings: Settings) -> Rotation:
    """Rotate what wraps the data keys, then rewrap every data key: a new master key in
    ``settings.master_keys_path``, or (with a KMS) a new version of the transit key,
    rotated by the KMS.

    Raises:
        KeyAdminError: ``KBFLOW_MASTER_KEYS`` is set without a KMS (rotate in the secret
            store instead), there is no key store or master-key file, a live data key is
            wrapped by a master key that is not configured (all checked before anything
            changes), or the KMS cannot be asked or refuses (e.g. the token may not rotate:
            then rotate in the KMS and run ``kbflow rewrap``).
    """
    if settings.kms is not None:
        return _rotate_in_kms(settings)
    if settings.master_keys:
        raise KeyAdminError(
            f"{MASTER_KEYS_ENV} is set: add the new key first in that list in your secret "
            "store, restart kbflow's processes, then run `kbflow rewrap`")
    store = open_existing(settings)
    # Finish any earlier rotation first: every live key must unwrap before the file changes.
    _rewrap(store)
    master_key_id = MasterKeys.add_to_file(settings)
    return Rotation(master_key_id=master_key_id, rewrapped=_rewrap(KeyStore.open(settings)))


def _rotate_in_kms(settings: Settings) -> Rotation:
    from encryption.kms import TransitWrapper

    assert settings.kms is not None
    store = open_existing(settings)
    wrapper = store.wrapper
    assert isinstance(wrapper, TransitWrapper)
    _rewrap(store)  # every live key must unwrap (and be in the KMS) before the key rotates
    try:
        current = wrapper.rotate()
    except StorageError as error:
        raise KeyAdminError(
            f"{error}; rotate it in the KMS (bao write -f {settings.kms.mount}/keys/"
            f"{settings.kms.key}/rotate), then run `kbflow rewrap`") from None
    return Rotation(master_key_id=current, rewrapped=_rewrap(store), in_kms=True)
