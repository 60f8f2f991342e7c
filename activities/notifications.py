"""Notifications' I/O: starting a ``NotificationWorkflow`` per delivered packet and
subscription (``Notifier``, called by ``DeliveryActivities.deliver_packet``), and POSTing
the CloudEvent to the webhook (``NotificationActivities.send_notification``).

Durability is Temporal's: a notification is a workflow whose id is derived from its event
id (``kbflow.notifications.notification_workflow_id``), started with
``REJECT_DUPLICATE``, so a delivery retried after a crash starts nothing twice (the
``WorkflowAlreadyStartedError`` is the expected answer), and a worker or API restart loses
nothing: the workflow waits in Temporal until a worker runs its activity. The activity
succeeds only on a 2xx answer; Temporal retries it with backoff (``NotificationSettings``).

Server-side request forgery: the API refuses a webhook whose host is an address outside
the public ranges (``kbflow.notifications.host_problem``); here, at send time, the URL is
checked again and a DNS name is resolved (``socket.getaddrinfo``, on a thread), refused
if any of its addresses is such an address (DNS rebinding), and the POST goes to the
address checked (the name stays in ``Host`` and the TLS server name), so a second lookup
cannot point it elsewhere.

A receiver that is down or answers non-2xx is expected: those failures are
``ApplicationErrorCategory.BENIGN`` (the SDK logs them at DEBUG, without a traceback at
the worker's INFO level, and does not count them as failures); kbflow writes its own
one-line warning. Log lines carry event, subscription, packet and case ids and the party,
never the webhook's URL or any personal data; httpx's own request lines (INFO, with the
full URL) are kept out (``quiet_http_client``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import httpx
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    ApplicationErrorCategory,
    WorkflowAlreadyStartedError,
)

from api.tls import TlsFiles, own_oin
from kbflow.notifications import (
    CLOUDEVENTS_JSON,
    Notification,
    NotificationOutcome,
    NotificationResult,
    forbidden_address,
    notification_workflow_id,
    packet_delivered,
    webhook_url_problems,
)
from kbflow.packets import Packet
from kbflow.process import Party
from kbflow.settings import Settings
from store import open_store
from store.interface import AcknowledgementRecords, SubscriptionRecords, SubscriptionRow

log = structlog.get_logger(__name__)

#: The workflow type started per notification (``workflows.notification_workflow``).
NOTIFICATION_WORKFLOW = "NotificationWorkflow"
#: How long one POST may take (seconds): connecting, sending and the answer.
POST_TIMEOUT = 10.0
#: The longest wait between two attempts (the backoff starts at 1 s and doubles).
RETRY_MAXIMUM_INTERVAL = dt.timedelta(minutes=10)
#: How long a notification is tried in all; then the workflow records it as failed.
GIVE_UP_AFTER = dt.timedelta(days=7)


def no_case_record(case_ref: str, party: Party) -> Collection[str] | None:
    """A ``NotificationSettings.case_oins`` that knows no OIN per case: every subscription
    of a party other than the GI is notified, and no GI's (which of the several GIs
    carries out the case would not be known)."""
    return None


def recorded_case_oins(records: Callable[[], AcknowledgementRecords]
                       ) -> Callable[[str, Party], Collection[str] | None]:
    """The ``NotificationSettings.case_oins`` of a worker: for the GI, the OINs the API
    recorded for the case (``api.authorisation``: the GI an OTS ruling named by its
    OIN); for any other party None (each of its subscriptions hears of its packets)."""

    def case_oins(case_ref: str, party: Party) -> Collection[str] | None:
        if party is not Party.GI:
            return None
        return {row.oin for row in records().case_parties(case_ref)
                if row.party == Party.GI.value}

    return case_oins


@dataclass(frozen=True)
class NotificationSettings:
    """How a worker notifies.

    Attributes:
        oin: kbflow's own OIN (the events' ``source``).
        api_base_url: the API's public base URL (the events' ``dataref``).
        retry_maximum: the longest wait between two attempts (tests lower it).
        give_up_after: how long a notification is tried in all.
        tls: the API's TLS folder: an ``https://`` webhook is verified against the
            system's CAs and ``ca.crt``, and kbflow shows its ``server.crt`` as its
            client certificate (Digikoppeling: both sides authenticated).
        case_oins: which OINs of ``party`` take part in a case (None: not on record).
            A subscription is notified only if its OIN is among them; with None, every
            subscription of a party other than the GI is, and none of the GI's.
    """

    oin: str
    api_base_url: str
    retry_maximum: dt.timedelta = RETRY_MAXIMUM_INTERVAL
    give_up_after: dt.timedelta = GIVE_UP_AFTER
    tls: TlsFiles | None = None
    case_oins: Callable[[str, Party], Collection[str] | None] = field(
        default=no_case_record)

    @classmethod
    def from_settings(cls, settings: Settings) -> NotificationSettings:
        """kbflow's OIN from the API's server certificate (``KBFLOW_API_TLS_DIR``), the
        API's URL (``KBFLOW_API_URL``), and the GIs of each case as the API recorded them
        in the state store (``recorded_case_oins``).

        Raises:
            api.tls.TlsMaterialError: the certificate is missing, unreadable or has no OIN.
        """
        files = TlsFiles(settings.api_tls_path)
        return cls(oin=own_oin(files), api_base_url=settings.api_base_url, tls=files,
                   case_oins=recorded_case_oins(
                       lambda: open_store(settings).acknowledgements))


class Notifier:
    """Starts the notifications of delivered packets (one ``NotificationWorkflow`` per
    packet and subscription), through the worker's own client."""

    def __init__(self, client: Client, config: NotificationSettings) -> None:
        self.client, self.config = client, config

    def recipients(self, packet: Packet, rows: list[SubscriptionRow]) -> list[SubscriptionRow]:
        """The subscriptions of ``rows`` (the packet recipient's) that hear of ``packet``
        (``NotificationSettings.case_oins``)."""
        taking_part = self.config.case_oins(packet.case_ref, packet.recipient)
        if taking_part is None:
            return [] if packet.recipient is Party.GI else rows
        return [row for row in rows if row.oin in taking_part]

    async def notify(self, packet: Packet, rows: list[SubscriptionRow], task_queue: str,
                     at: dt.datetime) -> int:
        """Start the notification of ``packet`` to each of ``rows`` that hears of it, once
        per event id.

        Returns:
            How many were started now (the others had been started before).

        Raises:
            temporalio.service.RPCError: Temporal could not be reached (the delivery
                activity fails and is retried; what was started stays started).
        """
        started = 0
        for row in self.recipients(packet, rows):
            event = packet_delivered(
                packet_id=packet.packet_id, case_ref=packet.case_ref, step=packet.step,
                subscription_id=row.subscription_id, oin=self.config.oin,
                api_base_url=self.config.api_base_url, at=at)
            notification = Notification(
                subscription_id=row.subscription_id, recipient=packet.recipient, event=event,
                retry_maximum_seconds=max(1, int(self.config.retry_maximum.total_seconds())),
                give_up_after_seconds=max(1, int(self.config.give_up_after.total_seconds())))
            try:
                await self.client.start_workflow(
                    NOTIFICATION_WORKFLOW, notification, id=notification_workflow_id(event.id),
                    task_queue=task_queue, result_type=NotificationOutcome,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
            except WorkflowAlreadyStartedError:
                continue  # a retried delivery: this event is on its way already
            started += 1
            log.info("notification started", event_id=event.id,
                     subscription_id=row.subscription_id, recipient=packet.recipient.value,
                     case_ref=packet.case_ref, packet_id=packet.packet_id)
        return started


def client_tls(files: TlsFiles | None) -> ssl.SSLContext:
    """The TLS context of POSTs to ``https://`` webhooks: the system's CAs (and
    ``ca.crt``), with kbflow's server certificate as client certificate if ``files``."""
    context = ssl.create_default_context()
    if files is not None:
        if files.ca.is_file():
            context.load_verify_locations(cafile=files.ca)
        if files.server_certificate.is_file() and files.server_key.is_file():
            context.load_cert_chain(files.server_certificate, files.server_key)
    return context


def quiet_http_client() -> None:
    """Keep httpx's logger at WARNING or above: at INFO it writes a line per request with
    the full URL (a webhook's path and query are the agency's choice, and are never
    logged)."""
    http_log = logging.getLogger("httpx")
    if http_log.getEffectiveLevel() < logging.WARNING:
        http_log.setLevel(logging.WARNING)


class WebhookForbidden(Exception):
    """The webhook's URL or the addresses its host resolves to are not allowed (the
    message names the rule, never the URL or an address)."""


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope is no address


def destinations(url: str) -> list[tuple[str, dict[str, str]]]:
    """Where a POST to ``url`` may go: ``(url to request, extensions)`` per address, in
    the resolver's order. An IP address literal is requested as it is; a DNS name is
    resolved once (``socket.getaddrinfo``; blocking: call it on a thread) and each
    address is requested directly, the name kept in ``Host`` and as the TLS server name
    (``sni_hostname``), so the address checked is the one connected to.

    Raises:
        WebhookForbidden: ``url`` breaks a rule of ``webhook_url_problems`` (stored before
            a rule existed), its host is no valid DNS name, or it resolves to a
            ``forbidden_address``.
        OSError: the name does not resolve (``socket.gaierror``): unreachable for now.
    """
    problems = webhook_url_problems(url)
    if problems:
        raise WebhookForbidden("the webhook's URL is no longer allowed: "
                               + "; ".join(problems))
    try:
        request = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError):  # urlsplit takes it, httpx not: never sendable
        raise WebhookForbidden("the webhook's URL is not one the HTTP client takes") from None
    host = request.raw_host.decode("ascii")  # as sent: punycode, not decoded
    try:
        _address(host)
    except ValueError:
        pass
    else:
        return [(url, {})]  # a literal: checked by webhook_url_problems
    port = request.port or (443 if request.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:  # a label over 63 characters: it never resolves
        raise WebhookForbidden("the webhook's host is no valid DNS name") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if any(forbidden_address(_address(text)) for text in addresses):
        raise WebhookForbidden("the webhook's host resolves to a private, link-local, "
                               "multicast, reserved or unspecified address (only public "
                               "addresses, and loopback for development)")
    return [(str(request.copy_with(host=text)), {"sni_hostname": host})
            for text in addresses]


def _benign(message: str, status_code: int | None, kind: str, *,
            non_retryable: bool = False) -> ApplicationError:
    """An expected failure of a POST (``ApplicationErrorCategory.BENIGN``: no SDK
    warning, no traceback, not a failure in the metrics)."""
    return ApplicationError(message, {"status_code": status_code}, type=kind,
                            non_retryable=non_retryable,
                            category=ApplicationErrorCategory.BENIGN)


class NotificationActivities:
    """The POST of a notification, bound to the webhooks' store."""

    def __init__(self, subscriptions: Callable[[], SubscriptionRecords],
                 config: NotificationSettings | None = None) -> None:
        self._subscriptions = subscriptions
        self._tls = client_tls(None if config is None else config.tls)
        quiet_http_client()

    @activity.defn
    async def send_notification(self, notification: Notification) -> NotificationOutcome:
        """POST ``notification``'s CloudEvent (structured JSON mode) to its webhook, at an
        address ``destinations`` allows.

        Returns:
            ``delivered`` on a 2xx answer; ``dropped`` if the subscription was removed
            (nothing is sent).

        Raises:
            ApplicationError: ``ReceiverUnreachable`` (the name does not resolve, no answer
                within ``POST_TIMEOUT``, refused, TLS failed) or ``ReceiverRefused`` (any
                answer but 2xx, redirects included): retried by the workflow's retry
                policy; ``WebhookForbidden`` (the URL, or an address its host resolves
                to, is not allowed): not retried, the notification ends ``failed``. All
                benign (module docstring); none names the URL.
        """
        event = notification.event
        attempt = activity.info().attempt
        row = await asyncio.to_thread(self._subscriptions().subscription,
                                      notification.subscription_id)
        context = {"event_id": event.id, "subscription_id": notification.subscription_id,
                   "recipient": notification.recipient.value, "attempt": attempt,
                   "workflow_id": activity.info().workflow_id}
        if row is None or row.party != notification.recipient.value:
            log.info("notification dropped: the subscription was removed", **context)
            return NotificationOutcome(event_id=event.id, result=NotificationResult.DROPPED,
                                       attempts=attempt - 1)
        try:
            targets = await asyncio.to_thread(destinations, row.url)
        except WebhookForbidden as refusal:
            log.warning("notification refused: the webhook is not allowed",
                        reason=str(refusal), **context)
            raise _benign(f"notification {event.id}: {refusal}", None, "WebhookForbidden",
                          non_retryable=True) from None
        except OSError as error:
            log.warning("notification attempt failed: receiver unreachable",
                        error=type(error).__name__, **context)
            raise _benign(f"notification {event.id}: the receiver is unreachable (its "
                          f"name does not resolve: {type(error).__name__})", None,
                          "ReceiverUnreachable") from None
        response = await self._post(targets, row.url, event.body(), context, event.id)
        if not 200 <= response.status_code < 300:
            log.warning("notification attempt failed: receiver refused",
                        status_code=response.status_code, **context)
            raise _benign(
                f"notification {event.id}: the receiver answered {response.status_code}",
                response.status_code, "ReceiverRefused")
        log.info("notification delivered", status_code=response.status_code, **context)
        return NotificationOutcome(event_id=event.id, result=NotificationResult.DELIVERED,
                                   attempts=attempt, status_code=response.status_code)

    async def _post(self, targets: list[tuple[str, dict[str, str]]], url: str, body: bytes,
                    context: Mapping[str, object], event: str) -> httpx.Response:
        """POST ``body`` to the first of ``targets`` that takes a connection (``url``'s
        host and port as ``Host``).

        Raises:
            ApplicationError: ``ReceiverUnreachable`` (benign) if none answers.
        """
        headers = {"Content-Type": f"{CLOUDEVENTS_JSON}; charset=utf-8",
                   "Host": httpx.URL(url).netloc.decode("ascii")}
        failure = "no address"
        async with httpx.AsyncClient(timeout=POST_TIMEOUT, verify=self._tls,
                                     follow_redirects=False, trust_env=False) as http:
            for target, extensions in targets:
                try:
                    return await http.post(target, content=body, headers=headers,
                                           extensions=extensions)
                except httpx.ConnectError as error:
                    failure = type(error).__name__  # the next address, if any
                except httpx.HTTPError as error:
                    failure = type(error).__name__
                    break
        log.warning("notification attempt failed: receiver unreachable", error=failure,
                    **context)
        raise _benign(f"notification {event}: the receiver is unreachable ({failure})",
                      None, "ReceiverUnreachable")
