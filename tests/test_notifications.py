"""Notifications (issue 8, point 5): a CloudEvent per delivered packet and webhook, sent
durably by a ``NotificationWorkflow`` until the receiver answers 2xx.

- the event itself (``kbflow.notifications``): CloudEvents 1.0 as the CNCF SDK parses it,
  the NL GOV profile's ``source`` URN, ``dataref`` into the inbox, ids only;
- who is notified (``activities.notifications.Notifier`` through ``deliver_packet``): the
  recipient's webhooks, a GI's only for its own cases; a retried delivery (a crash between
  storing the packet and starting its notifications) starts each once;
- on a real Temporal (the ``dev_server``): a receiver down for a while gets every
  notification exactly once when it is back, across a worker and an API restart; a 4xx/5xx
  answer is retried; a removed subscription stops; one never answered ends ``failed``.

The receiver is a small ASGI app served by uvicorn on loopback; "down" is its port bound
but not listening (connections refused). Every wait polls a condition with a bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import structlog
import uvicorn
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cryptography import x509
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import (
    ApplicationError,
    ApplicationErrorCategory,
    WorkflowAlreadyStartedError,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.notifications import (
    GIVE_UP_AFTER,
    RETRY_MAXIMUM_INTERVAL,
    NotificationActivities,
    NotificationSettings,
    Notifier,
)
from activities.outbox_store import OutboxStore
from api import server
from api.certs import DEV_OINS, KBFLOW_DEV_OIN, init_dev_certs
from api.context import ApiContext
from api.tls import PartyTable, TlsFiles, TlsMaterialError, oin_of, own_oin
from encryption.codec import is_public_payload
from encryption.keys import KeyStore
from kbflow.logs import configure_logging
from kbflow.notifications import (
    CLOUDEVENTS_JSON,
    MAX_SUBSCRIPTIONS_PER_OIN,
    MAX_URL_LENGTH,
    CloudEvent,
    Notification,
    NotificationOutcome,
    NotificationResult,
    event_id,
    forbidden_address,
    notification_workflow_id,
    packet_delivered,
    webhook_url_problems,
)
from kbflow.packets import Packet, project_packet
from kbflow.process import Party, Step
from kbflow.settings import Settings
from store import open_store
from store.interface import CasePartyRow, SubscriptionRow
from tests import factories as f
from tests.api_harness import serve_api
from tests.test_case_workflow import send, start_case
from worker import build_worker, connect
from workflows.notification_workflow import BACKOFF, INITIAL_INTERVAL, NotificationWorkflow

API_URL = "https://kbflow.example"
SOURCE = re.compile(r"^urn:nld:oin:[0-9]{20}:systeem:kbflow$")
#: Bounds of every wait (seconds): generous, a wait ends as soon as its condition holds.
BOUND = 90.0


async def until(condition: Callable[[], Awaitable[bool]], what: str,
                bound: float = BOUND) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``bound`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"not within {bound} s: {what}")
        await asyncio.sleep(0.1)


# ---- a webhook receiver ----------------------------------------------------------------------

@dataclass
class Post:
    """One POST the receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    client_certificate: str | None = None  # PEM, over HTTPS

    @property
    def event_id(self) -> str:
        return str(json.loads(self.body)["id"])


@dataclass
class Receiver:
    """A webhook receiver on a loopback port: down (refusing connections) until ``up``;
    answers each POST with the next of ``answers``, then 204."""

    answers: collections.deque[int] = field(default_factory=collections.deque)
    posts: list[Post] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        self.port = self.sock.getsockname()[1]
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self) -> list[str]:
        """The event ids of the POSTs answered 2xx, in order."""
        return [post.event_id for post in self.posts if 200 <= post.status < 300]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = self.answers.popleft() if self.answers else 204
        chain = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain")
        self.posts.append(Post(scope["path"], {k.decode(): v.decode()
                                               for k, v in scope["headers"]}, body, status,
                               chain[0] if chain else None))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def up(self, tls: TlsFiles | None = None) -> None:
        """Listen: plain HTTP, or with ``tls`` HTTPS with ``tls``'s server certificate,
        asking for a client certificate (as the API does: ``api.server``)."""
        if tls is None:
            config = uvicorn.Config(self, log_level="warning", lifespan="off")
        else:
            config = server.config(self, tls, f"127.0.0.1:{self.port}", log_level="warning",
                                   lifespan="off")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))

        async def started() -> bool:
            assert self.server is not None and self.task is not None
            if self.task.done():
                self.task.result()
            return bool(self.server.started)

        await until(started, "the receiver started", 10)

    async def close(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        self.sock.close()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver()
    try:
        yield made
    finally:
        await made.close()


# ---- the event -------------------------------------------------------------------------------

def _event(subscription_id: str = f"sub-{'a' * 32}") -> CloudEvent:
    return packet_delivered(
        packet_id="pkt-0001-abc", case_ref="KB-2026-7K4M2XCH-R", step=Step.REPORT,
        subscription_id=subscription_id, oin=KBFLOW_DEV_OIN, api_base_url=API_URL + "/",
        at=dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))))


def test_the_event_is_a_cloudevent_in_the_nl_gov_profile() -> None:
    event = _event()
    parsed = from_http_event(HTTPMessage({"content-type": CLOUDEVENTS_JSON}, event.body()))
    attributes = parsed.get_attributes()
    assert attributes["specversion"] == "1.0"
    assert attributes["id"] == event_id("pkt-0001-abc", f"sub-{'a' * 32}")
    assert attributes["source"] == f"urn:nld:oin:{KBFLOW_DEV_OIN}:systeem:kbflow"
    assert SOURCE.fullmatch(attributes["source"])
    assert attributes["type"] == "nl.kbflow.packet.delivered"
    assert attributes["time"] == dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
    assert json.loads(event.body())["time"] == "2026-03-02T09:30:00Z"  # answered in UTC
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["dataref"] == f"{API_URL}/v1/inbox/pkt-0001-abc"  # notify, then pull
    assert "subject" not in attributes  # the NL GOV profile: nothing personal, no subject
    assert parsed.get_data() == {"packetId": "pkt-0001-abc", "caseRef": "KB-2026-7K4M2XCH-R",
                                 "step": 1}


def test_an_event_id_is_the_same_on_every_retry_and_differs_per_webhook() -> None:
    assert _event().id == _event().id
    assert _event().id != _event(f"sub-{'b' * 32}").id
    assert uuid.UUID(_event().id).version == 5
    assert notification_workflow_id(_event().id) == f"kb-notification-{_event().id}"


async def test_the_notification_stays_plaintext_in_temporal(keys: KeyStore) -> None:
    # Public models: Temporal holds them unencrypted (ids only), marked and re-checked
    from encryption.codec import encrypted_data_converter

    notification = Notification(subscription_id=f"sub-{'a' * 32}", recipient=Party.IND,
                                event=_event(), retry_maximum_seconds=1,
                                give_up_after_seconds=60)
    converter = encrypted_data_converter(keys)
    [payload] = await converter.encode([notification])
    assert payload.metadata["encoding"] == b"json/plain"
    assert json.loads(payload.data)["event"]["id"] == _event().id
    [marked] = converter.payload_converter.to_payloads([notification])
    assert is_public_payload(marked)


# ---- who is notified -------------------------------------------------------------------------

GI_ONE, GI_TWO = DEV_OINS[Party.GI], "00000099000000099002"


@dataclass
class RecordingClient:
    """Stands in for the worker's client: records the notification workflows started
    (by id, once, as ``REJECT_DUPLICATE`` does), or fails the next ``fail`` starts."""

    started: dict[str, Notification] = field(default_factory=dict)
    fail: int = 0

    async def start_workflow(self, workflow: str, notification: Notification, *, id: str,
                             **options: Any) -> None:
        assert workflow == "NotificationWorkflow"
        if self.fail:
            self.fail -= 1
            raise RPCError("Temporal is unreachable", RPCStatusCode.UNAVAILABLE, b"")
        if id in self.started:
            raise WorkflowAlreadyStartedError(id, workflow)
        self.started[id] = notification


def _gi_packet(case_ref: str) -> Packet:
    record = f.full_record().model_copy(update={"case_ref": case_ref})
    return project_packet(record, Step.WARM_HANDOVER, Party.DTV, Party.GI,
                          packet_id=f"packet-{f.new_key()}",
                          created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))


def _subscribe(store: OutboxStore, party: Party, oin: str, url: str) -> SubscriptionRow:
    return store.subscriptions.add_subscription(SubscriptionRow(
        f"sub-{uuid.uuid4().hex}", party.value, oin, url, "2026-03-01T00:00:00+00:00"))


def _activities(store: OutboxStore, client: RecordingClient,
                case_oins: Callable[[str, Party], Collection[str] | None] | None = None
                ) -> DeliveryActivities:
    config = NotificationSettings(oin=KBFLOW_DEV_OIN, api_base_url=API_URL)
    if case_oins is not None:
        config = NotificationSettings(oin=KBFLOW_DEV_OIN, api_base_url=API_URL,
                                      case_oins=case_oins)
    return DeliveryActivities(store, Notifier(client, config))  # type: ignore[arg-type]


async def test_a_gi_is_notified_only_of_its_own_cases(store: OutboxStore) -> None:
    one = _subscribe(store, Party.GI, GI_ONE, "https://gi-een.example/hook")
    two = _subscribe(store, Party.GI, GI_TWO, "https://gi-twee.example/hook")
    _subscribe(store, Party.IND, DEV_OINS[Party.IND], "https://indigo.example/hook")
    ones_case, twos_case = f.new_case_ref(), f.new_case_ref()
    gis = {ones_case: {GI_ONE}, twos_case: {GI_TWO}}
    client = RecordingClient()
    activities = _activities(store, client, lambda case_ref, party: gis.get(case_ref))
    for case_ref in (ones_case, twos_case):
        await ActivityEnvironment().run(activities.deliver_packet, _gi_packet(case_ref))
    notified = {(n.subscription_id, n.event.data.case_ref) for n in client.started.values()}
    assert notified == {(one.subscription_id, ones_case), (two.subscription_id, twos_case)}
    # no GI on record for a case: then no GI hears of it, rather than every GI
    unrecorded = RecordingClient()
    await ActivityEnvironment().run(_activities(store, unrecorded).deliver_packet,
                                    _gi_packet(f.new_case_ref()))
    assert unrecorded.started == {}


async def test_a_worker_hears_which_gi_takes_part_from_the_apis_record(
        store: OutboxStore, tmp_path: Path) -> None:
    """``NotificationSettings.from_settings``: the GI an OTS ruling named through the API
    (``api.authorisation.record``, the state store's case parties) is the one notified."""
    settings = Settings(data_dir=store.path.parent)
    init_dev_certs(settings.api_tls_path)
    one = _subscribe(store, Party.GI, GI_ONE, "https://gi-een.example/hook")
    _subscribe(store, Party.GI, GI_TWO, "https://gi-twee.example/hook")
    case_ref = f.new_case_ref()
    open_store(settings).acknowledgements.record_case_party(
        CasePartyRow(case_ref, Party.GI.value, GI_ONE, "2026-03-02T10:00:00+00:00"))
    config = NotificationSettings.from_settings(settings)
    assert config.case_oins(case_ref, Party.GI) == {GI_ONE}
    assert config.case_oins(case_ref, Party.IND) is None  # every IND subscription
    client = RecordingClient()
    activities = DeliveryActivities(store, Notifier(client, config))  # type: ignore[arg-type]
    await ActivityEnvironment().run(activities.deliver_packet, _gi_packet(case_ref))
    assert [n.subscription_id for n in client.started.values()] == [one.subscription_id]


async def test_a_delivery_that_crashed_before_notifying_notifies_on_its_retry(
        store: OutboxStore) -> None:
    hook = _subscribe(store, Party.GI, GI_ONE, "https://gi-een.example/hook")
    packet = _gi_packet(f.new_case_ref())
    client = RecordingClient(fail=1)
    activities = _activities(store, client, lambda case_ref, party: {GI_ONE})
    with pytest.raises(RPCError):  # stored, then Temporal failed: the activity is retried
        await ActivityEnvironment().run(activities.deliver_packet, packet)
    assert store.packets(packet.case_ref) == [packet] and client.started == {}
    receipt = await ActivityEnvironment().run(activities.deliver_packet, packet)
    assert not receipt.delivered  # found delivered ...
    [notification] = client.started.values()  # ... and notified now
    assert notification.subscription_id == hook.subscription_id
    assert notification.event.id == event_id(packet.packet_id, hook.subscription_id)
    assert notification.event.dataref == f"{API_URL}/v1/inbox/{packet.packet_id}"
    again = await ActivityEnvironment().run(activities.deliver_packet, packet)
    assert not again.delivered and len(client.started) == 1  # started once per event id


async def test_a_worker_that_cannot_notify_does_not_lose_a_notification(
        store: OutboxStore) -> None:
    packet = _gi_packet(f.new_case_ref())
    activities = DeliveryActivities(store)  # no NotificationSettings
    assert (await ActivityEnvironment().run(activities.deliver_packet, packet)).delivered
    _subscribe(store, Party.GI, GI_ONE, "https://gi-een.example/hook")
    with pytest.raises(ApplicationError) as refused:  # retried until a worker can
        await ActivityEnvironment().run(activities.deliver_packet, packet)
    assert refused.value.type == "NotificationsUnconfigured"
    assert "KBFLOW_API_TLS_DIR" in refused.value.message and not refused.value.non_retryable


# ---- where a notification may go (server-side request forgery) ------------------------------

#: Made-up DNS names and what the test's resolver answers for them.
FAKE_DNS = {
    "rebound.example": ["10.0.0.5"],  # a public name pointed at kbflow's network
    "half.example": ["203.0.113.7", "169.254.169.254"],  # one good address, one not
    "mapped.example": ["::ffff:192.168.1.1"],
    "hook.localhost": ["127.0.0.1"],  # loopback: allowed, over http too (development)
}


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``socket.getaddrinfo`` answering ``FAKE_DNS`` (every other name as before); the
    names looked up, in order."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in FAKE_DNS:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM,
                 6, "", (address, int(port))) for address in FAKE_DNS[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _notification(hook: SubscriptionRow) -> Notification:
    return Notification(subscription_id=hook.subscription_id, recipient=Party.IND,
                        event=_event(hook.subscription_id), retry_maximum_seconds=1,
                        give_up_after_seconds=60)


@pytest.mark.parametrize(("address", "forbidden"), [
    ("10.0.0.5", True), ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True),
    ("::ffff:10.0.0.1", True), ("::10.0.0.1", True), ("2002:a00:1::", True),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", True),  # Teredo, to 10.0.0.1
    ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1: reserved
    ("127.0.0.1", False), ("127.8.9.10", False), ("::1", False), ("::ffff:127.0.0.1", False),
    ("203.0.113.7", True),  # documentation range: not global
    ("8.8.8.8", False), ("2001:4860:4860::8888", False),
])
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    import ipaddress

    assert forbidden_address(ipaddress.ip_address(address)) is forbidden


@pytest.mark.parametrize("host", ["rebound.example", "half.example", "mapped.example"])
async def test_a_name_that_resolves_to_a_forbidden_address_is_refused_and_not_retried(
        store: OutboxStore, receiver: Receiver, fake_dns: list[str], host: str) -> None:
    """DNS rebinding: the API accepted the name; at send time it resolves inside kbflow's
    network. Nothing is sent; the failure is not retried (the workflow ends failed)."""
    await receiver.up()
    hook = _subscribe(store, Party.IND, DEV_OINS[Party.IND],
                      f"https://{host}:{receiver.port}/hook")
    sending = NotificationActivities(lambda: store.subscriptions)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(sending.send_notification, _notification(hook))
    assert refused.value.type == "WebhookForbidden" and refused.value.non_retryable
    assert refused.value.category is ApplicationErrorCategory.BENIGN
    assert "resolves to a private, link-local" in refused.value.message
    assert host not in refused.value.message and "10.0.0.5" not in refused.value.message
    assert fake_dns == [host] and receiver.posts == []


@pytest.mark.parametrize(("url", "reason"), [
    ("https://0x7f000001/hook", "four decimal numbers"),
    ("https://10.0.0.5/hook", "must not be an address in a private"),
    ("https://[v1.x]/hook", "not one the HTTP client takes"),  # urlsplit takes it
    ("https://" + "a" * 70 + ".example/hook", "no valid DNS name"),
])
async def test_a_webhook_stored_before_the_rules_is_refused_at_send_time(
        store: OutboxStore, fake_dns: list[str], url: str, reason: str) -> None:
    hook = _subscribe(store, Party.IND, DEV_OINS[Party.IND], url)
    sending = NotificationActivities(lambda: store.subscriptions)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(sending.send_notification, _notification(hook))
    assert refused.value.type == "WebhookForbidden" and refused.value.non_retryable
    assert refused.value.category is ApplicationErrorCategory.BENIGN
    assert reason in refused.value.message
    assert str(urlsplit(url).hostname) not in refused.value.message and fake_dns == []


async def test_a_name_is_requested_at_the_address_it_was_checked_at(
        store: OutboxStore, receiver: Receiver, fake_dns: list[str]) -> None:
    """Resolved once and checked; the POST goes to that address, the name in ``Host``,
    so no second lookup (a rebinding DNS server's next answer) is made."""
    await receiver.up()
    hook = _subscribe(store, Party.IND, DEV_OINS[Party.IND],
                      f"http://hook.localhost:{receiver.port}/hook")
    sending = NotificationActivities(lambda: store.subscriptions)
    outcome = await ActivityEnvironment().run(sending.send_notification, _notification(hook))
    assert outcome.result is NotificationResult.DELIVERED
    [post] = receiver.posts
    assert post.headers["host"] == f"hook.localhost:{receiver.port}" and post.path == "/hook"
    assert fake_dns == ["hook.localhost"]  # one lookup: kbflow's own


async def test_an_unreachable_or_refusing_receiver_is_a_benign_retried_failure(
        store: OutboxStore, receiver: Receiver) -> None:
    hook = _subscribe(store, Party.IND, DEV_OINS[Party.IND], receiver.url("/hook"))
    sending = NotificationActivities(lambda: store.subscriptions)
    with pytest.raises(ApplicationError) as down:
        await ActivityEnvironment().run(sending.send_notification, _notification(hook))
    receiver.answers.append(503)
    await receiver.up()
    with pytest.raises(ApplicationError) as refusing:
        await ActivityEnvironment().run(sending.send_notification, _notification(hook))
    assert (down.value.type, refusing.value.type) == ("ReceiverUnreachable", "ReceiverRefused")
    for error in (down.value, refusing.value):
        assert error.category is ApplicationErrorCategory.BENIGN and not error.non_retryable
        assert receiver.url("/hook") not in error.message
    assert refusing.value.details[0] == {"status_code": 503}


# ---- on a real Temporal ------------------------------------------------------------------------

@dataclass
class Host:
    """One kbflow host on the dev server: settings, client, store, TLS folder."""

    settings: Settings
    keys: KeyStore
    client: Client
    store: OutboxStore
    files: TlsFiles

    def notifications(self, **options: Any) -> NotificationSettings:
        return NotificationSettings(oin=own_oin(self.files), api_base_url=API_URL,
                                    retry_maximum=dt.timedelta(seconds=1), tls=self.files,
                                    **options)

    def api_context(self) -> ApiContext:
        return ApiContext(settings=self.settings, client=self.client,
                          parties=PartyTable.load(self.files.parties),
                          oin=own_oin(self.files), keys=self.keys,
                          outbox=OutboxStore(self.settings, keys=self.keys))

    @contextlib.asynccontextmanager
    async def worker(self, **options: Any) -> AsyncIterator[None]:
        """A worker of its own (a fresh store object: as after a restart)."""
        store = OutboxStore(self.settings, keys=self.keys)
        async with build_worker(self.client, self.settings.task_queue, store,
                                notifications=self.notifications(**options)):
            yield


@pytest_asyncio.fixture
async def host(dev_server: WorkflowEnvironment, tmp_path: Path) -> Host:
    settings = Settings(temporal_address=dev_server.client.service_client.config.target_host,
                        namespace=dev_server.client.namespace,
                        task_queue=f"kbflow-notify-{uuid.uuid4()}", data_dir=tmp_path / "data")
    keys = KeyStore.open(settings)
    return Host(settings, keys, await connect(settings, keys),
                OutboxStore(settings, keys=keys), init_dev_certs(tmp_path / "tls"))


async def _attempts(handle: WorkflowHandle[Any, Any]) -> int:
    """The attempt number of the workflow's pending activity (0: none pending)."""
    try:
        pending = (await handle.describe()).raw_description.pending_activities
    except RPCError:  # not started yet
        return 0
    return max((activity.attempt for activity in pending), default=0)


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False
    return True


async def test_a_receiver_down_for_a_while_gets_every_notification_exactly_once(
        host: Host, receiver: Receiver) -> None:
    parties = (Party.RVDK, Party.IND, Party.DTV)
    async with serve_api(host.api_context(), host.files) as api:
        for party in parties:
            async with api.client(party) as caller:
                made = await caller.post("/v1/subscriptions",
                                         json={"url": receiver.url(f"/{party.value}")})
                assert made.status_code == 201
    async with host.worker():
        case = await start_case(host.client, host.settings.task_queue)  # step 1: to RVDK
        await send(case, f.announce())  # step 2: to IND and DT&V
        case_ref = case.id.removeprefix("kb-case-")

        async def delivered() -> bool:
            return len(host.store.packets(case_ref)) == 3

        await until(delivered, "three packets delivered")
        hooks = {row.party: row for row in host.store.subscriptions.subscription_rows()}
        expected = {event_id(packet.packet_id, hooks[packet.recipient.value].subscription_id):
                    packet for packet in host.store.packets(case_ref)}
        ids = [notification_workflow_id(event) for event in expected]

        async def all_started() -> bool:
            return all([await _exists(host.client, i) for i in ids])

        await until(all_started, "a notification workflow per packet")
    # the worker has stopped, and so does the API: the receiver is still down
    async with serve_api(host.api_context(), host.files) as api:
        async with api.client(Party.IND) as ind:  # the subscription outlived the restart
            listed = (await ind.get("/v1/subscriptions")).json()["subscriptions"]
            assert [row["url"] for row in listed] == [receiver.url("/IND")]
        async with host.worker():  # a new worker: the notifications go on
            handles = [host.client.get_workflow_handle(i, result_type=NotificationOutcome)
                       for i in ids]

            async def retried() -> bool:
                return all([await _attempts(handle) >= 3 for handle in handles])

            await until(retried, "every notification tried three times while it is down")
            assert receiver.posts == []
            await receiver.up()
            outcomes = [await handle.result() for handle in handles]
            # a delivery retried after its notifications completed starts none again
            notifier = Notifier(host.client, host.notifications())
            for packet in expected.values():
                rows = host.store.subscriptions.subscription_rows(packet.recipient.value)
                assert await notifier.notify(packet, rows, host.settings.task_queue,
                                             dt.datetime.now(dt.UTC)) == 0
        await case.terminate(reason="test finished")
    assert {outcome.result for outcome in outcomes} == {NotificationResult.DELIVERED}
    assert all((outcome.attempts or 0) >= 3 for outcome in outcomes)
    # every notification exactly once, by CloudEvent id
    assert sorted(receiver.accepted()) == sorted(expected)
    assert len(receiver.posts) == len(expected)
    for post in receiver.posts:
        packet = expected[post.event_id]
        assert post.path == f"/{packet.recipient.value}"  # each party's own webhook
        assert post.headers["content-type"] == f"{CLOUDEVENTS_JSON}; charset=utf-8"
        event = from_http_event(HTTPMessage(post.headers, post.body))
        attributes = event.get_attributes()
        assert attributes["source"] == f"urn:nld:oin:{KBFLOW_DEV_OIN}:systeem:kbflow"
        assert attributes["type"] == "nl.kbflow.packet.delivered"
        assert attributes["dataref"] == f"{API_URL}/v1/inbox/{packet.packet_id}"
        assert event.get_data() == {"packetId": packet.packet_id, "caseRef": case_ref,
                                    "step": int(packet.step)}
        # no personal value in any attribute, header or the body
        assert f.leaked(post.body.decode()) == []
        assert f.leaked(json.dumps(post.headers)) == []


async def _notify_directly(host: Host, url: str, **options: Any
                           ) -> tuple[SubscriptionRow, WorkflowHandle[Any, NotificationOutcome]]:
    """A webhook of IND's and its notification of a (made-up) packet, started as
    ``deliver_packet`` starts it."""
    hook = _subscribe(host.store, Party.IND, DEV_OINS[Party.IND], url)
    config = host.notifications(**options)
    event = packet_delivered(packet_id=f"packet-{f.new_key()}", case_ref=f.new_case_ref(),
                             step=Step.ANNOUNCE_INVESTIGATION,
                             subscription_id=hook.subscription_id, oin=config.oin,
                             api_base_url=API_URL, at=dt.datetime.now(dt.UTC))
    notification = Notification(
        subscription_id=hook.subscription_id, recipient=Party.IND, event=event,
        retry_maximum_seconds=1,
        give_up_after_seconds=int(config.give_up_after.total_seconds()))
    handle = await host.client.start_workflow(
        NotificationWorkflow.run, notification, id=notification_workflow_id(event.id),
        task_queue=host.settings.task_queue)
    return hook, handle


async def test_a_receiver_answering_4xx_or_5xx_is_retried_until_2xx(
        host: Host, receiver: Receiver) -> None:
    receiver.answers.extend([500, 404, 503, 429])
    await receiver.up()
    async with host.worker():
        _, handle = await _notify_directly(host, receiver.url("/hook"))
        outcome = await handle.result()
    assert outcome == NotificationOutcome(event_id=handle.id.removeprefix("kb-notification-"),
                                          result=NotificationResult.DELIVERED, attempts=5,
                                          status_code=204)
    assert [post.status for post in receiver.posts] == [500, 404, 503, 429, 204]
    assert len({post.event_id for post in receiver.posts}) == 1  # one event, retried
    assert receiver.accepted() == [outcome.event_id]
    # input and result in plaintext: ids only
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == b"json/plain"


async def test_an_https_webhook_is_verified_and_sees_kbflows_client_certificate(
        host: Host, receiver: Receiver) -> None:
    # Digikoppeling: both sides authenticated. The receiver's certificate chains to
    # ca.crt; kbflow shows its server.crt, whose serialNumber is kbflow's OIN.
    await receiver.up(tls=host.files)
    async with host.worker():
        _, handle = await _notify_directly(
            host, f"https://127.0.0.1:{receiver.port}/hook")
        outcome = await handle.result()
    assert outcome.result is NotificationResult.DELIVERED and outcome.attempts == 1
    [post] = receiver.posts
    assert post.client_certificate is not None
    certificate = x509.load_pem_x509_certificate(post.client_certificate.encode())
    assert oin_of(certificate) == KBFLOW_DEV_OIN


async def test_a_removed_subscription_stops_its_notifications(
        host: Host, receiver: Receiver) -> None:
    async with host.worker():
        hook, handle = await _notify_directly(host, receiver.url("/hook"))

        async def retried() -> bool:
            return await _attempts(handle) >= 2

        await until(retried, "a second attempt while the receiver is down")
        async with serve_api(host.api_context(), host.files) as api, \
                api.client(Party.IND) as ind:
            removed = await ind.delete(f"/v1/subscriptions/{hook.subscription_id}")
            assert removed.status_code == 204
        outcome = await handle.result()
        await receiver.up()
    assert outcome.result is NotificationResult.DROPPED and (outcome.attempts or 0) >= 1
    assert receiver.posts == []


async def test_a_notification_never_answered_2xx_ends_failed(
        host: Host, receiver: Receiver) -> None:
    receiver.answers.extend([500] * 50)
    await receiver.up()
    async with host.worker(give_up_after=dt.timedelta(seconds=4)):
        _, handle = await _notify_directly(host, receiver.url("/hook"),
                                           give_up_after=dt.timedelta(seconds=4))
        outcome = await handle.result()
    assert outcome.result is NotificationResult.FAILED
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
    assert len(receiver.posts) >= 2 and receiver.accepted() == []


async def test_a_webhook_resolving_to_a_forbidden_address_ends_failed_at_once(
        host: Host, fake_dns: list[str]) -> None:
    async with host.worker():
        _, handle = await _notify_directly(host, "https://rebound.example/hook")
        outcome = await handle.result()
    assert outcome.result is NotificationResult.FAILED and outcome.status_code is None
    history = await handle.fetch_history()
    scheduled = [event for event in history.events
                 if event.HasField("activity_task_started_event_attributes")]
    assert [event.activity_task_started_event_attributes.attempt
            for event in scheduled] == [1]  # not retried


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_failed_attempts_write_one_line_each_no_traceback_no_url(
        host: Host, receiver: Receiver, restore_logging: None,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The worker's log (``configure_logging``, JSON on stderr) while a receiver is down,
    then answers 500, then 204: kbflow's one-line warning per failed attempt, with the
    subscription id; no SDK warning, no traceback (the failures are benign), and neither
    kbflow nor httpx writes the webhook's URL, path or query."""
    configure_logging(json=True)
    structlog.configure(cache_logger_on_first_use=False)  # later tests: defaults again
    receiver.answers.append(500)
    url = receiver.url("/kbflow/geheim-pad?token=sleutel-42")
    async with host.worker():
        hook, handle = await _notify_directly(host, url)

        async def retried() -> bool:
            return await _attempts(handle) >= 3

        await until(retried, "three attempts while the receiver is down")
        await receiver.up()
        outcome = await handle.result()
    assert outcome.result is NotificationResult.DELIVERED and (outcome.attempts or 0) >= 4
    assert [post.status for post in receiver.posts] == [500, 204]
    err = capfd.readouterr().err
    lines = _json_lines(err)
    ours = [line for line in lines if line.get("subscription_id") == hook.subscription_id]
    failed = [line["event"] for line in ours if line["level"] == "warning"]
    assert failed.count("notification attempt failed: receiver unreachable") >= 2
    assert failed.count("notification attempt failed: receiver refused") == 1
    assert "notification delivered" in [line["event"] for line in ours]
    assert [line for line in lines if "exception" in line] == []
    assert "Traceback" not in err and "Completing activity as failed" not in err
    assert [line for line in lines if line.get("logger", "").startswith("temporalio")
            and line["level"] in ("warning", "error", "critical")] == []
    for part in ("geheim-pad", "sleutel-42", url):
        assert part not in err
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


# ---- configuration and the README ------------------------------------------------------------

def test_a_worker_takes_kbflows_oin_from_the_server_certificate(tmp_path: Path) -> None:
    files = init_dev_certs(tmp_path / "tls")
    settings = Settings(data_dir=tmp_path, api_tls_dir=files.folder,
                        api_url="https://kbflow.example.nl/")
    config = NotificationSettings.from_settings(settings)
    assert (config.oin, config.api_base_url) == (KBFLOW_DEV_OIN, "https://kbflow.example.nl")
    assert config.tls == files
    files.server_certificate.unlink()  # without it: no notifier (run_worker logs why)
    with pytest.raises(TlsMaterialError, match=r"server\.crt"):
        NotificationSettings.from_settings(settings)


def _readme_section() -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    return text[text.index("\n## Notifications (webhooks)\n"):
                text.index("\n## Listing cases and work lists\n")]


def test_the_readmes_notifications_section_says_what_the_code_does() -> None:
    section = _readme_section()
    example = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert example is not None
    event = packet_delivered(
        packet_id="pkt-3f9c2a7e", case_ref="KB-2026-7K4M2XCH-R",
        step=Step.ANNOUNCE_INVESTIGATION, subscription_id=f"sub-{'0' * 31}1",
        oin=KBFLOW_DEV_OIN, api_base_url="https://kbflow.example.nl",
        at=dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC))
    assert example.group(1) == json.dumps(json.loads(event.body()), indent=2)
    flat = " ".join(section.split())
    assert f"at most {MAX_URL_LENGTH} characters" in flat
    assert f"an organisation holds at most {MAX_SUBSCRIPTIONS_PER_OIN}" in flat
    assert BACKOFF == 2  # "doubling"
    assert (f"from {INITIAL_INTERVAL.seconds} s doubling up to "
            f"{RETRY_MAXIMUM_INTERVAL.seconds // 60} minutes, for {GIVE_UP_AFTER.days} days"
            ) in flat
    # the webhook's host (tests/test_api_subscriptions.py and the tests above show the rest)
    ssrf = flat[flat.index("So that a webhook cannot"):flat.index("Loopback (")]
    examples = re.findall(r"`(?:https://)?([^`/]+)/?…?`", ssrf)
    assert len(examples) == 8
    for host in examples:
        assert webhook_url_problems(f"https://{host}/hook"), host
    assert ("Loopback (`localhost`, 127.0.0.0/8, `::1`) stays allowed, over http and https"
            in flat)
    for host in ("localhost", "127.0.0.1", "127.255.255.254", "[::1]"):
        for scheme in ("http", "https"):
            assert webhook_url_problems(f"{scheme}://{host}:8080/hook") == [], host
    for value in ("1234567890", "2015-06-01"):
        assert webhook_url_problems(f"https://indigo.example/hook?q={value}")
    assert "ends `failed` at once, without retries (DNS rebinding)" in flat
    assert "one warning in the worker's log (`notification attempt failed: …`" in flat
    paths = re.findall(r"`((?:tests|workflows)/[a-z_/]+(?:\.py)?)`", section)
    assert len(paths) == 4
    for path in paths:
        assert (Path(__file__).resolve().parent.parent / path).exists(), path


# ---- replay ----------------------------------------------------------------------------------

#: Recorded from the dev server (a receiver answering 500 and 503 first; one whose
#: subscription was removed while it was down). Ids only, in plaintext. (A failed one is
#: not kept: its activity's last failure is encrypted under the recorder's own keys.)
#: Never re-record: a change that alters these goes behind ``workflow.patched``.
NOTIFICATION_HISTORIES = sorted(
    (Path(__file__).resolve().parent / "histories" / "notifications").glob("*.json"))


def test_the_recorded_notification_histories_are_there() -> None:
    assert [path.stem for path in NOTIFICATION_HISTORIES] == [
        "delivered_after_retries", "dropped"]


@pytest.mark.parametrize("path", NOTIFICATION_HISTORIES, ids=lambda path: path.stem)
async def test_a_recorded_notification_replays(path: Path, keys: KeyStore) -> None:
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from encryption.codec import encrypted_data_converter
    from worker import workflow_runner

    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    assert f.leaked(path.read_text(encoding="utf-8")) == []
    replayer = Replayer(workflows=[NotificationWorkflow], workflow_runner=workflow_runner(),
                        data_converter=encrypted_data_converter(keys))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
