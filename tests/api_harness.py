"""Serve the agencies' API in a test: over real mutual TLS on a loopback port, in the
test's own event loop, with a client per party (``httpx`` with that party's development
certificate from ``kbflow certs init``).

``serve_api(api_context, files)`` yields an ``ApiEndpoint``; ``endpoint.client(party)``
is an ``httpx.AsyncClient`` for ``party``; ``endpoint.anonymous()`` one without a client
certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from temporalio.client import Client

from activities.outbox_store import OutboxStore
from api import server
from api.app import create_app
from api.certs import DEV_OINS, issue, make_ca
from api.context import ApiContext
from api.tls import PartyTable, TlsFiles, client_context, own_oin
from encryption.keys import KeyStore
from kbflow.process import Party
from kbflow.settings import Settings


@dataclass(frozen=True)
class ApiEndpoint:
    """A served API: its base URL (``https://127.0.0.1:PORT``) and TLS folder."""

    base_url: str
    files: TlsFiles

    def client(self, party: Party, **options: object) -> httpx.AsyncClient:
        """A client presenting ``party``'s development certificate."""
        return httpx.AsyncClient(base_url=self.base_url,
                                 verify=client_context(self.files, party),
                                 timeout=httpx.Timeout(90.0), **options)  # type: ignore[arg-type]

    def anonymous(self) -> httpx.AsyncClient:
        """A client that shows no certificate (it trusts the server's CA)."""
        return httpx.AsyncClient(base_url=self.base_url,
                                 verify=ssl.create_default_context(cafile=str(self.files.ca)),
                                 timeout=httpx.Timeout(30.0))


@contextlib.asynccontextmanager
async def serve_api(api_context: ApiContext, files: TlsFiles) -> AsyncIterator[ApiEndpoint]:
    """Serve ``create_app(api_context)`` on a free loopback port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server.config(create_app(api_context), files, f"127.0.0.1:{port}",
                           log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not running.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield ApiEndpoint(f"https://127.0.0.1:{port}", files)
    finally:
        running.should_exit = True
        await task
        sock.close()


def api_context_for(client: Client, store: OutboxStore, keys: KeyStore,
                    files: TlsFiles) -> ApiContext:
    """An ``ApiContext`` over the suite's fixtures: the API, the worker and the store share
    one key store (``tests/conftest.py``: ``client``, ``store``, ``keys``)."""
    return ApiContext(settings=Settings(data_dir=store.path.parent), client=client,
                      parties=PartyTable.load(files.parties), oin=own_oin(files), keys=keys,
                      outbox=store)


def write_impostor(folder: Path, party: Party = Party.IND) -> tuple[Path, Path]:
    """A client certificate naming ``party``'s development OIN, signed by a CA kbflow
    does not know, and its key, written to ``folder``: the paths of both."""
    ca, ca_key = make_ca("a CA kbflow does not know")
    certificate, key = issue(ca, ca_key, common_name="impostor", organisation=party.value,
                             oin=DEV_OINS[party])
    paths = folder / "impostor.crt", folder / "impostor.key"
    paths[0].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
