"""What the API tests of cases, inboxes and bad input share: the API served with a
worker on a real Temporal dev server (``served_api``: the API, the worker and the store
share one key store), a TLS folder with two GIs, bodies as a client sends them, and a
count of a case's history events (a refused request adds none).

Its fixtures (``tls_files``, ``served``, ``endpoint``; ``tests/conftest.py`` loads this
module as a plugin) serve the API for one test; a test module may define its own of the
same name instead.

A dev server, not the session's time-skipping one: its clock is the wall clock, which
the API checks a start against (a child under 18 today) as the workflow checks it
against its own (the time-skipping clock runs years ahead); and an update its validator
rejects leaves no event in the history (a speculative workflow task), as in production,
where the time-skipping server records that task's three events.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outbox_store import OutboxStore
from api.certs import DEV_OINS, KBFLOW_DEV_OIN, init_dev_certs, issue, make_ca
from api.context import ApiContext
from api.tls import PartyTable, TlsFiles, own_oin
from encryption.keys import KeyStore
from kbflow.events import CaseStart
from kbflow.process import PARTY_NAMES, Party
from kbflow.settings import Settings, workflow_id
from tests import factories as f
from tests.api_harness import ApiEndpoint, serve_api
from worker import build_worker, connect

#: The second GI's OIN (fictional, like ``DEV_OINS``).
OTHER_GI_OIN = "00000099000000000099"


def api_context(client: Client, store: OutboxStore, keys: KeyStore, task_queue: str,
                data_dir: Path, files: TlsFiles) -> ApiContext:
    """The API over the test's Temporal client, outbox store and key store."""
    return ApiContext(settings=Settings(data_dir=data_dir, task_queue=task_queue),
                      client=client, parties=PartyTable.load(files.parties),
                      oin=own_oin(files), keys=keys, outbox=store)


@dataclass(frozen=True)
class Served:
    """The API served for a test: its endpoint, the Temporal client (kbflow's converter)
    and the outbox store the worker delivers to."""

    endpoint: ApiEndpoint
    client: Client
    store: OutboxStore


@contextlib.asynccontextmanager
async def served_api(dev_server: WorkflowEnvironment, data_dir: Path, files: TlsFiles, *,
                     worker: bool = True) -> AsyncIterator[Served]:
    """The API over ``files`` on ``dev_server``, with a worker on a task queue of its own
    (``worker=False``: none, so events stay pending)."""
    settings = Settings(temporal_address=dev_server.client.service_client.config.target_host,
                        namespace=dev_server.client.namespace,
                        task_queue=f"kbflow-api-{uuid.uuid4()}", data_dir=data_dir)
    keys = KeyStore.open(settings)
    client = await connect(settings, keys)
    store = OutboxStore(settings, keys=keys)
    async with contextlib.AsyncExitStack() as stack:
        if worker:
            await stack.enter_async_context(build_worker(client, settings.task_queue, store))
        endpoint = await stack.enter_async_context(serve_api(api_context(
            client, store, keys, settings.task_queue, data_dir, files), files))
        yield Served(endpoint, client, store)


def _write(folder: Path, name: str, certificate: Any, key: Any) -> None:
    (folder / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def two_gi_folders(root: Path) -> tuple[TlsFiles, TlsFiles]:
    """Two TLS folders of one CA and one OIN table listing two GIs: the first has every
    party's certificate (its GI.crt is the first GI, ``DEV_OINS[GI]``), the second only
    the CA, the table and the other GI's certificate as GI.crt (``OTHER_GI_OIN``)."""
    main, other = root / "main", root / "other-gi"
    main.mkdir(parents=True)
    other.mkdir(parents=True)
    ca, ca_key = make_ca()
    for folder in (main, other):
        (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server, server_key = issue(ca, ca_key, common_name="localhost", organisation="kbflow",
                               oin=KBFLOW_DEV_OIN, server=True)
    _write(main, "server", server, server_key)
    for party in Party:
        certificate, key = issue(ca, ca_key, common_name=f"{party.value} (test)",
                                 organisation=PARTY_NAMES[party], oin=DEV_OINS[party])
        _write(main, party.value, certificate, key)
    certificate, key = issue(ca, ca_key, common_name="GI Nergensland (test)",
                             organisation="GI Nergensland", oin=OTHER_GI_OIN)
    _write(other, "GI", certificate, key)
    table = {"parties": [*({"oin": DEV_OINS[party], "party": party.value,
                            "name": PARTY_NAMES[party]} for party in Party),
                         {"oin": OTHER_GI_OIN, "party": "GI", "name": "GI Nergensland"}]}
    for folder in (main, other):
        (folder / "parties.json").write_text(json.dumps(table))
    return TlsFiles(main), TlsFiles(other)


def as_json(model: BaseModel, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """A body as a client sends it: JSON of the fields given."""
    return model.model_dump(mode="json", exclude_none=True, exclude=set(without))


def start_body(reporter: Party = Party.VT, key: str | None = None) -> dict[str, Any]:
    """A CaseStart as ``POST /v1/cases`` takes it (no ``case_ref``)."""
    start: CaseStart = f.case_start(reporter=reporter,
                                    idempotency_key=key or f.new_key("api-case"))
    return as_json(start, without=("case_ref",))


def event_path(case_ref: str, name: str) -> str:
    return f"/v1/cases/{case_ref}/events/{name.replace('_', '-')}"


async def post_event(client: httpx.AsyncClient, case_ref: str, event: f.Ev,
                     **changes: Any) -> httpx.Response:
    """POST ``event`` (``tests.factories.Ev``) to the case, its body changed by
    ``changes``."""
    body = {**as_json(event.event), **changes}
    return await client.post(event_path(case_ref, event.name), json=body)


async def started(client: httpx.AsyncClient, reporter: Party = Party.VT) -> str:
    """Start a case through the API; its ref. (Every test case concerns the same
    fictional child: a second open case is intended, ``secondCase=true``.)"""
    response = await client.post("/v1/cases", json=start_body(reporter),
                                 params={"secondCase": "true"})
    assert response.status_code == 201, response.text
    return str(response.json()["case_ref"])


async def history_length(temporal: Client, case_ref: str) -> int:
    """How many events the case's history holds now."""
    handle = temporal.get_workflow_handle(workflow_id(case_ref))
    return len([event async for event in handle.fetch_history_events()])


async def reported(store: OutboxStore, case_ref: str, bound: float = 30.0) -> None:
    """Wait (at most ``bound`` seconds) until the case's step-1 report is delivered: from
    then on the processing log finds it by its child's pseudonym."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not await asyncio.to_thread(store.processing_log, case_ref):
        assert loop.time() < deadline, f"the step-1 report was not delivered in {bound} s"
        await asyncio.sleep(0.05)


async def settled(temporal: Client, case_ref: str, bound: float = 30.0) -> None:
    """Wait (at most ``bound`` seconds) until the case has no activity and no workflow
    task pending: its history then grows only by what a request adds."""
    import asyncio

    handle = temporal.get_workflow_handle(workflow_id(case_ref))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while True:
        raw = (await handle.describe()).raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        assert loop.time() < deadline, f"case {case_ref} did not settle in {bound} s"
        await asyncio.sleep(0.05)


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A development TLS folder (``kbflow certs init``), one per test module."""
    return init_dev_certs(tmp_path_factory.mktemp("api-tls"))


@pytest_asyncio.fixture
async def served(dev_server: WorkflowEnvironment, tmp_path: Path, tls_files: TlsFiles
                 ) -> AsyncIterator[Served]:
    """The API with a worker on the module's dev server (``served_api``)."""
    async with served_api(dev_server, tmp_path, tls_files) as serving:
        yield serving


@pytest.fixture
def endpoint(served: Served) -> ApiEndpoint:
    """The served API's endpoint."""
    return served.endpoint
