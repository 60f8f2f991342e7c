"""What wraps the per-case data keys: one small interface, two implementations.

A case's data key is stored only wrapped (``encryption.keys.KeyStore``), beside the id of
what wrapped it (the *wrapping id*, the key store's ``master_key_id`` column). A
``KeyWrapper`` wraps a new data key under its current wrapping key, unwraps a stored one,
and rewraps one under the current wrapping key after a rotation, always with the data
key's own id bound in, so a wrapped key moved to another row does not unwrap.

- ``MasterKeyWrapper`` (here): local master keys (``MasterKeys``: ``KBFLOW_MASTER_KEYS``
  or the data dir's ``master.keys``); AES-256-GCM, a 12-byte nonce, the data key id as
  associated data; the wrapping id is the master key's id (``mk-…``). kbflow rotates them
  (``kbflow rotate-master-key``).
- ``encryption.kms.TransitWrapper``: the Vault / OpenBao transit engine; the wrapping id
  is ``transit:<key>:v<version>``. The KMS rotates its key; kbflow rewraps through
  transit's ``rewrap`` endpoint.

A master key id never holds a ``:`` (``MasterKeys.parse`` splits on the first one), so
the two kinds of wrapping id cannot be mistaken for each other in one store.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encryption.secret_files import append_secret_line, read_or_create_secret
from kbflow.settings import MASTER_KEYS_ENV, Settings

if TYPE_CHECKING:
    from encryption.kms import TransitWrapper


class KeyUnavailable(LookupError):
    """A data key cannot be had: unknown, or destroyed by erasure. The message names the
    key id (random, not personal) and the reason."""


class KeyWrapper(Protocol):
    """Wraps, unwraps and rewraps data keys, binding each data key's id in.

    Errors of every method: ``KeyUnavailable`` when the wrapping key named by a wrapping
    id is not available here (a master key not configured); a
    ``encryption.storage.StorageError`` (``encryption.kms.KmsError``) when the KMS cannot
    be asked or refuses.
    """

    def current(self) -> str:
        """The wrapping id that a data key wrapped now gets."""
        ...

    def wrap(self, key_id: str, key: bytes) -> tuple[str, bytes]:
        """Wrap the data key ``key`` with id ``key_id``: ``(wrapping id, wrapped)``."""
        ...

    def unwrap(self, key_id: str, wrapping_id: str, wrapped: bytes) -> bytes:
        """The data key ``key_id`` that ``wrapping_id`` wrapped into ``wrapped``."""
        ...

    def rewrap(self, key_id: str, wrapping_id: str, wrapped: bytes) -> tuple[str, bytes]:
        """``wrapped`` wrapped again under the current wrapping key: ``(wrapping id,
        wrapped)``; the data key itself does not change."""
        ...


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
            try:
                return cls.parse(settings.master_keys, current_first=True)
            except ValueError as error:  # the message names the rule, never a key
                raise ValueError(f"{MASTER_KEYS_ENV}: {error}") from None
        path = settings.master_keys_path
        if not create:
            text = path.read_text()
        else:
            text = read_or_create_secret(
                path, lambda: f"mk-{secrets.token_hex(4)}:{secrets.token_hex(32)}\n")
        try:
            return cls.parse(text, current_first=False)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @staticmethod
    def add_to_file(settings: Settings) -> str:
        """Append a new master key to ``settings.master_keys_path``, making it current."""
        key_id = f"mk-{secrets.token_hex(4)}"
        append_secret_line(settings.master_keys_path, f"{key_id}:{secrets.token_hex(32)}")
        return key_id

    @staticmethod
    def configured(settings: Settings) -> bool:
        """Whether master keys are configured: ``KBFLOW_MASTER_KEYS`` or the data dir's
        ``master.keys``."""
        return bool(settings.master_keys) or settings.master_keys_path.is_file()


class MasterKeyWrapper:
    """Data keys wrapped by local master keys: AES-256-GCM, the data key id as associated
    data, stored as 12-byte nonce + ciphertext (the format of every existing
    ``keys.sqlite3``).

    Args:
        master_keys: the master keys.
        reload: how to reload them: a running process meets a master key id it does not
            know after another process rotated them, and reloads once instead of failing.
    """

    def __init__(self, master_keys: MasterKeys,
                 reload: Callable[[], MasterKeys] | None = None) -> None:
        self.master_keys = master_keys
        self._reload = reload

    def current(self) -> str:
        """The current master key's id."""
        return self.master_keys.current

    def wrap(self, key_id: str, key: bytes) -> tuple[str, bytes]:
        """Wrap ``key`` under the current master key."""
        master_id = self.master_keys.current
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.master_keys.keys[master_id]).encrypt(nonce, key, key_id.encode())
        return master_id, nonce + sealed

    def unwrap(self, key_id: str, wrapping_id: str, wrapped: bytes) -> bytes:
        """Unwrap with master key ``wrapping_id`` (reloading the master keys once if it is
        unknown).

        Raises:
            KeyUnavailable: master key ``wrapping_id`` is not configured.
            cryptography.exceptions.InvalidTag: ``wrapped`` is not ``key_id``'s (tampered
                with, or moved from another row).
        """
        master = self.master_keys.keys.get(wrapping_id)
        if master is None and self._reload is not None:
            self.master_keys = self._reload()
            master = self.master_keys.keys.get(wrapping_id)
        if master is None:
            raise KeyUnavailable(
                f"data key {key_id}: master key {wrapping_id} is not configured")
        return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], key_id.encode())

    def rewrap(self, key_id: str, wrapping_id: str, wrapped: bytes) -> tuple[str, bytes]:
        """Unwrap, then wrap under the current master key (both happen in this process:
        local master keys have no other place to do it)."""
        return self.wrap(key_id, self.unwrap(key_id, wrapping_id, wrapped))


def wrapper_for(settings: Settings, *, create: bool) -> MasterKeyWrapper | TransitWrapper:
    """The key wrapper ``settings`` configure: the KMS's transit engine if
    ``KBFLOW_KMS_URL`` is set (with the local master keys, if any are configured, to
    unwrap data keys wrapped before the KMS, until ``kbflow rewrap`` moved them), else the
    local master keys (with ``create``, a new ``master.keys`` if there is none).

    Raises:
        ValueError: malformed master keys.
        OSError: the master-key file cannot be read (or, with ``create``, written).
        encryption.kms.KmsError: ``KBFLOW_KMS_CA_FILE`` cannot be read.
    """
    if settings.kms is not None:
        from encryption.kms import TransitWrapper  # hvac only where a KMS is configured

        local = (MasterKeyWrapper(MasterKeys.load(settings, create=False),
                                  lambda: MasterKeys.load(settings, create=False))
                 if MasterKeys.configured(settings) else None)
        return TransitWrapper(settings.kms, local=local)
    return MasterKeyWrapper(MasterKeys.load(settings, create=create),
                            lambda: MasterKeys.load(settings, create=create))

