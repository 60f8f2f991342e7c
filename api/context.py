"""``ApiContext``: everything the API's routes use, made once per process
(``ApiContext.open``) and reached through ``context(request)`` (``ContextDep``): the
settings, the Temporal client (with kbflow's encrypting converter), the OIN table,
kbflow's own OIN, the key store and the state store's outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from activities.outbox_store import OutboxStore
from api.tls import PartyTable, TlsFiles, own_oin
from encryption.keys import KeyStore
from kbflow import metrics
from kbflow.settings import Settings


@dataclass
class ApiContext:
    """What the routes use (module docstring)."""

    settings: Settings
    client: Client
    parties: PartyTable
    oin: str
    keys: KeyStore
    outbox: OutboxStore

    @classmethod
    async def open(cls, settings: Settings) -> ApiContext:
        """Connect to Temporal and open the state store and the TLS folder's tables.

        Raises:
            api.tls.TlsMaterialError: the TLS folder lacks a file or holds a bad one.
            starter.cases.CaseError: no master keys, or Temporal unreachable.
            encryption.storage.StorageError: the state store cannot be opened.
        """
        from starter.cases import data_dir_keys, open_client  # the CLI's own wiring

        files = TlsFiles(settings.api_tls_path)
        files.check()
        parties = PartyTable.load(files.parties)
        keys = data_dir_keys(settings)
        # the SDK core's own log lines go through Python logging (JSON), as the worker's
        client = await open_client(settings, keys=keys, runtime=metrics.runtime(None))
        return cls(settings=settings, client=client, parties=parties, oin=own_oin(files),
                   keys=keys, outbox=OutboxStore(settings, keys=keys))


def context(request: Request) -> ApiContext:
    """The application's ``ApiContext`` (a FastAPI dependency)."""
    found = request.app.state.context
    assert isinstance(found, ApiContext)
    return found


ContextDep = Annotated[ApiContext, Depends(context)]
