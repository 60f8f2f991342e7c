"""Data keys wrapped by a KMS: the Vault / OpenBao transit engine, through hvac.

With ``KBFLOW_KMS_URL`` set (``kbflow.settings.KmsSettings``) a case's data key is
wrapped by the transit key ``KBFLOW_KMS_KEY``: kbflow sends the data key to transit's
``encrypt`` endpoint and stores the ciphertext (``vault:v<version>:…``) in its key store,
with the wrapping id ``transit:<key>:v<version>``. The transit key never leaves the KMS.

The transit key must be *derived* (``derived=true``): each request carries the data key's
id as its ``context``, so transit encrypts every data key under its own key derived from
that id, and a wrapped key copied to another row does not unwrap.

Rotation is the KMS's: ``transit/keys/<key>/rotate`` adds a version that wraps new data
keys, while the older versions still unwrap (down to the key's
``min_decryption_version``). ``kbflow rewrap`` moves every wrapped data key to the newest
version through transit's ``rewrap`` endpoint: the KMS decrypts and encrypts again
inside, so the data key's plaintext is not handed to kbflow for it. Data keys still
wrapped by local master keys (from before the KMS) unwrap with those, as long as they are
configured, and ``kbflow rewrap`` moves them into the KMS.

Every failure to ask the KMS is a ``KmsError`` (a ``StorageError``: the CLI prints its one
line, a worker's delivery fails and Temporal retries it). Its message names the variable
to look at and the reason, never the token or the URL.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from encryption.storage import StorageError
from encryption.wrapping import KeyUnavailable, MasterKeyWrapper
from kbflow.settings import (
    KMS_CA_FILE_ENV,
    KMS_KEY_ENV,
    KMS_MOUNT_ENV,
    KMS_TOKEN_ENV,
    KMS_URL_ENV,
    MASTER_KEYS_ENV,
    KmsSettings,
)

#: What a wrapping id of the transit engine starts with (a master key id has no ``:``).
TRANSIT = "transit:"
#: How long one request to the KMS may take (seconds), connecting included.
TIMEOUT_SECONDS = 10
_CIPHERTEXT = re.compile(r"vault:v(\d+):")
_T = TypeVar("_T")


class KmsError(StorageError):
    """The KMS cannot be asked, or refuses: one line naming the variable to look at
    (``KBFLOW_KMS_URL``, ``…_TOKEN``, ``…_KEY``, ``…_MOUNT``) and the reason; never the
    token, the URL or a key."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def wrapping_id(key: str, version: int) -> str:
    """The wrapping id of transit key ``key`` at ``version``: ``transit:<key>:v<version>``."""
    return f"{TRANSIT}{key}:v{version}"


def parse_wrapping_id(wrapping: str) -> tuple[str, int] | None:
    """``(key, version)`` of a transit wrapping id; ``None`` for any other (a master key
    id)."""
    if not wrapping.startswith(TRANSIT):
        return None
    key, _, version = wrapping[len(TRANSIT):].rpartition(":v")
    return (key, int(version)) if key and version.isdigit() else None


class TransitWrapper:
    """Wraps data keys with the transit key ``settings.key`` (see the module docstring).
    Thread-safe (one request at a time).

    Args:
        settings: where the KMS is and which key to use.
        local: the local master keys, to unwrap (and rewrap into the KMS) data keys that
            were wrapped before the KMS was configured; ``None``: there are none.

    Raises:
        KmsError: ``settings.ca_file`` is not a readable file.
    """

    def __init__(self, settings: KmsSettings, *, local: MasterKeyWrapper | None = None) -> None:
        self.settings = settings
        self.local = local
        verify: bool | str = True
        if settings.ca_file is not None:
            if not settings.ca_file.is_file():
                raise KmsError(f"{KMS_CA_FILE_ENV}: no such file")
            verify = str(settings.ca_file)
        session = requests.Session()
        session.trust_env = False  # kbflow reads its own variables only: no proxy, no CA
        session.verify = verify  # hvac takes a given session's, not its own argument
        self._client = hvac.Client(url=settings.url, token=settings.token,
                                   timeout=TIMEOUT_SECONDS, session=session)
        self._lock = threading.Lock()
        self._checked = False

    # ---- the KeyWrapper interface ----------------------------------------------------

    def current(self) -> str:
        """``transit:<key>:v<latest version>``: what wraps a data key now."""
        return wrapping_id(self.settings.key, self.key_info()["latest_version"])

    def wrap(self, key_id: str, key: bytes) -> tuple[str, bytes]:
        """Wrap ``key`` with the transit key's newest version, ``key_id`` as context."""
        self._check_key()
        answer = self._call(f"wrap data key {key_id}", lambda: self._transit.encrypt_data(
            self.settings.key, plaintext=_b64(key), context=_b64(key_id.encode()),
            mount_point=self.settings.mount))
        return self._wrapped(key_id, answer)

    def unwrap(self, key_id: str, wrapping: str, wrapped: bytes) -> bytes:
        """Unwrap with the transit key named in ``wrapping`` (or, for a master key id, with
        the local master keys).

        Raises:
            KeyUnavailable: ``wrapping`` is a master key id and no (or not that) master
                key is configured.
            KmsError: the KMS cannot be asked, or refuses (e.g. the version is below the
                key's ``min_decryption_version``, or ``wrapped`` is not ``key_id``'s).
        """
        transit = parse_wrapping_id(wrapping)
        if transit is None:
            return self._local(key_id, wrapping).unwrap(key_id, wrapping, wrapped)
        answer = self._call(f"unwrap data key {key_id}", lambda: self._transit.decrypt_data(
            transit[0], ciphertext=wrapped.decode("ascii"), context=_b64(key_id.encode()),
            mount_point=self.settings.mount))
        return base64.b64decode(answer["data"]["plaintext"])

    def rewrap(self, key_id: str, wrapping: str, wrapped: bytes) -> tuple[str, bytes]:
        """Rewrap with the newest version of the configured transit key: through transit's
        ``rewrap`` endpoint if ``wrapping`` is of that key (the data key stays inside the
        KMS); else (local master keys, another transit key) unwrap and wrap."""
        transit = parse_wrapping_id(wrapping)
        if transit is None or transit[0] != self.settings.key:
            return self.wrap(key_id, self.unwrap(key_id, wrapping, wrapped))
        answer = self._call(f"rewrap data key {key_id}", lambda: self._transit.rewrap_data(
            self.settings.key, ciphertext=wrapped.decode("ascii"),
            context=_b64(key_id.encode()), mount_point=self.settings.mount))
        return self._wrapped(key_id, answer)

    # ---- the KMS's own operations -----------------------------------------------------

    def rotate(self) -> str:
        """Rotate the transit key in the KMS (``transit/keys/<key>/rotate``): a new
        version wraps new data keys from now on.

        Returns:
            The new current wrapping id.

        Raises:
            KmsError: the KMS cannot be asked or the token may not rotate the key.
        """
        self._check_key()
        self._call(f"rotate transit key {self.settings.key}",
                   lambda: self._transit.rotate_key(self.settings.key,
                                                    mount_point=self.settings.mount))
        return self.current()

    def key_info(self) -> dict[str, Any]:
        """The transit key's description as the KMS gives it (``latest_version``,
        ``min_decryption_version``, ``derived``, …; never key material).

        Raises:
            KmsError: the KMS cannot be asked, the mount or the key does not exist.
        """
        answer = self._call(f"read transit key {self.settings.key}",
                            lambda: self._transit.read_key(self.settings.key,
                                                           mount_point=self.settings.mount))
        data: dict[str, Any] = answer["data"]
        return data

    # ---- helpers ---------------------------------------------------------------------

    @property
    def _transit(self) -> Any:
        return self._client.secrets.transit

    def _local(self, key_id: str, wrapping: str) -> MasterKeyWrapper:
        if self.local is None:
            raise KeyUnavailable(
                f"data key {key_id}: master key {wrapping} is not configured; with a KMS, "
                f"keep {MASTER_KEYS_ENV} (or the master-key file) until `kbflow rewrap` "
                "has moved every data key into the KMS")
        return self.local

    def _check_key(self) -> None:
        """Once per process: the transit key exists and is derived (each request's context
        is the data key id), so transit never creates a key of its own on first use."""
        if self._checked:
            return
        info = self.key_info()
        if not info.get("derived"):
            raise KmsError(f"{KMS_KEY_ENV}: transit key {self.settings.key} is not derived; "
                           "kbflow binds each data key's id in as context (create the key "
                           "with derived=true)")
        self._checked = True

    def _wrapped(self, key_id: str, answer: Any) -> tuple[str, bytes]:
        ciphertext: str = answer["data"]["ciphertext"]
        version = _CIPHERTEXT.match(ciphertext)
        if version is None:
            raise KmsError(f"{KMS_URL_ENV}: the KMS answered no transit ciphertext for data "
                           f"key {key_id}")
        return wrapping_id(self.settings.key, int(version.group(1))), ciphertext.encode()

    def _call(self, what: str, request: Callable[[], _T]) -> _T:
        """One request to the KMS; every failure becomes one ``KmsError`` line."""
        try:
            with self._lock:
                return request()
        except requests.exceptions.SSLError:
            raise KmsError(f"{KMS_URL_ENV}: cannot {what}: the KMS's TLS certificate is not "
                           f"trusted (set {KMS_CA_FILE_ENV})") from None
        except requests.exceptions.Timeout:
            raise KmsError(f"{KMS_URL_ENV}: cannot {what}: the KMS did not answer within "
                           f"{TIMEOUT_SECONDS} s") from None
        except requests.exceptions.RequestException:
            raise KmsError(f"{KMS_URL_ENV}: cannot {what}: the KMS cannot be reached "
                           "(connection refused or no such host)") from None
        except hvac.exceptions.VaultError as error:
            raise KmsError(self._refusal(what, error)) from None

    def _refusal(self, what: str, error: hvac.exceptions.VaultError) -> str:
        said = "; ".join(str(e) for e in (error.errors or []))[:200] or "no reason given"
        if isinstance(error, hvac.exceptions.Unauthorized | hvac.exceptions.Forbidden):
            return (f"{KMS_TOKEN_ENV}: cannot {what}: the KMS refused the token "
                    "(permission denied, or the token expired)")
        if isinstance(error, hvac.exceptions.InvalidPath):
            if "no handler for route" in said:
                return (f"{KMS_MOUNT_ENV}: cannot {what}: no transit engine mounted at "
                        f"{self.settings.mount}")
            return (f"{KMS_KEY_ENV}: cannot {what}: no transit key {self.settings.key} "
                    f"at {self.settings.mount} (create it with derived=true)")
        if isinstance(error, hvac.exceptions.VaultDown):
            return f"{KMS_URL_ENV}: cannot {what}: the KMS is sealed or down"
        if isinstance(error, hvac.exceptions.InvalidRequest):
            return f"{KMS_KEY_ENV}: cannot {what}: the KMS refused ({said})"
        return f"{KMS_URL_ENV}: cannot {what}: the KMS failed ({type(error).__name__})"
