"""Notifications to the parties' webhooks: a CloudEvent per delivered packet and
subscription (issue 8, point 5). Pure: no Temporal, no I/O.

A party registers a webhook (a subscription: ``POST /v1/subscriptions``); when a packet for
it is delivered, kbflow POSTs one CloudEvent 1.0 in the NL GOV profile (REFERENCES.md) to
each of the party's subscriptions, in structured JSON mode
(``application/cloudevents+json``):

- ``id``: ``event_id(packet_id, subscription_id)``, a UUID 5, the same on every attempt
  and every retry of the delivery, so a receiver can count (and deduplicate) by it;
- ``source``: ``urn:nld:oin:<kbflow's OIN>:systeem:kbflow`` (``source_of``);
- ``type``: ``nl.kbflow.packet.delivered`` (a breaking change gets ``.v2``);
- ``time`` (UTC), ``datacontenttype`` ``application/json``;
- ``dataref``: the packet in the inbox, ``<KBFLOW_API_URL>/v1/inbox/<packetId>``: notify,
  then pull over the authenticated API;
- ``data``: ids only (``packetId``, ``caseRef``, ``step``).

No attribute holds personal data: the models are ``kbflow.public.Public`` (no free
``str``), so they also stay plaintext in Temporal. The webhook's URL is not in them: the
notification names its subscription by id, and the URL is read from the store when it is
sent (a subscription removed meanwhile is then dropped).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
import uuid
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from kbflow.process import Party, Step
from kbflow.public import PUBLIC_ID, CaseRef, Public

#: The CloudEvent type of a delivered packet (reverse DNS by domain, NL GOV profile).
PACKET_DELIVERED: Literal["nl.kbflow.packet.delivered"] = "nl.kbflow.packet.delivered"
#: The structured content mode's media type (CloudEvents HTTP binding, JSON format).
CLOUDEVENTS_JSON = "application/cloudevents+json"
#: The UUID 5 namespace of event ids (fixed: an event id never changes between releases).
EVENT_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-5e2a-9c1b-6b62666c6f77")
#: The longest webhook URL accepted (characters).
MAX_URL_LENGTH = 2048
#: The most subscriptions one organisation (OIN) may hold.
MAX_SUBSCRIPTIONS_PER_OIN = 10
#: A subscription id: ``sub-`` and 32 hex digits (made by kbflow, never chosen).
SUBSCRIPTION_ID_PATTERN = r"^sub-[0-9a-f]{32}$"

#: An id kbflow made (a packet id, an event id, a subscription id, the source URN and the
#: dataref built from configuration and ids): never personal data.
KbflowId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH),
                     PUBLIC_ID]


def event_id(packet_id: str, subscription_id: str) -> str:
    """The CloudEvent id of ``packet_id``'s notification to ``subscription_id``: a UUID 5,
    deterministic, so a retried delivery makes the same event (and the same
    ``NotificationWorkflow`` id)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{packet_id}\n{subscription_id}"))


def notification_workflow_id(event: str) -> str:
    """The workflow id of the notification with CloudEvent id ``event``: starting it twice
    starts it once."""
    return f"kb-notification-{event}"


def source_of(oin: str) -> str:
    """The CloudEvent ``source`` of kbflow with OIN ``oin`` (NL GOV profile)."""
    return f"urn:nld:oin:{oin}:systeem:kbflow"


def inbox_url(api_base_url: str, packet_id: str) -> str:
    """The packet in its recipient's inbox: the ``dataref`` (notify, then pull)."""
    return f"{api_base_url.rstrip('/')}/v1/inbox/{packet_id}"


class PacketDelivered(Public):
    """The ``data`` of a ``nl.kbflow.packet.delivered`` event: ids only."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    packet_id: KbflowId = Field(alias="packetId", description="The packet, in the inbox")
    case_ref: CaseRef = Field(alias="caseRef", description="The case the packet belongs to")
    step: Step = Field(description="The protocol step of the packet (PROCESS.md §3)")


class CloudEvent(Public):
    """A CloudEvent 1.0 (NL GOV profile) as sent in structured JSON mode; no personal data
    in any attribute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: KbflowId = Field(description="Unique per source; the same on every retry")
    source: KbflowId = Field(description="urn:nld:oin:<kbflow's OIN>:systeem:kbflow")
    type: Literal["nl.kbflow.packet.delivered"] = PACKET_DELIVERED
    time: dt.datetime = Field(description="When the packet was delivered (UTC)")
    datacontenttype: Literal["application/json"] = "application/json"
    dataref: KbflowId = Field(description="The packet in the recipient's inbox")
    data: PacketDelivered

    @field_validator("time")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("must have an offset")
        return value.astimezone(dt.UTC)

    def body(self) -> bytes:
        """The structured-mode HTTP body (JSON, the data's keys in camelCase)."""
        return self.model_dump_json(by_alias=True).encode()


def packet_delivered(*, packet_id: str, case_ref: str, step: Step, subscription_id: str,
                     oin: str, api_base_url: str, at: dt.datetime) -> CloudEvent:
    """The CloudEvent telling ``subscription_id`` that ``packet_id`` was delivered at
    ``at`` (any offset; the event says UTC)."""
    return CloudEvent(
        id=event_id(packet_id, subscription_id), source=source_of(oin),
        time=at.astimezone(dt.UTC), dataref=inbox_url(api_base_url, packet_id),
        data=PacketDelivered(packet_id=packet_id, case_ref=case_ref, step=step))


class Notification(Public):
    """A ``NotificationWorkflow``'s input: the event, to whom (by subscription id, never
    the URL), and how its retries back off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_id: KbflowId
    recipient: Party
    event: CloudEvent
    retry_maximum_seconds: int = Field(ge=1, description="The longest wait between two "
                                                         "attempts (backoff from 1 s, x2)")
    give_up_after_seconds: int = Field(ge=1, description="How long it is tried in all")


class NotificationResult(enum.StrEnum):
    """How a notification ended."""

    DELIVERED = "delivered"  # the receiver answered 2xx
    DROPPED = "dropped"  # the subscription was removed before it was delivered
    FAILED = "failed"  # no 2xx within the time given (``give_up_after_seconds``)


class NotificationOutcome(Public):
    """What a ``NotificationWorkflow`` did (its result; no personal data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: KbflowId
    result: NotificationResult
    attempts: int | None = Field(default=None, ge=0, description="POSTs tried (0: dropped "
                                 "before any; None: not known, when it failed)")
    status_code: int | None = Field(default=None, description="The receiver's last answer")


# ---- subscriptions -------------------------------------------------------------------------


def new_subscription_id() -> str:
    """A fresh subscription id (``sub-`` + 32 hex digits)."""
    return f"sub-{uuid.uuid4().hex}"


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: A label WHATWG URL parsers read as a number (decimal, or hex with ``0x``): a host whose
#: last label is one is an IPv4 address to a browser, curl or httpx, in whatever form.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
#: A V-nummer (ten digits) or anything that looks like a date of birth: never in a URI
#: (the rule of ``api.bodies.plain_query``).
_SENSITIVE_IN_URI = re.compile(r"(?<![0-9])[0-9]{10}(?![0-9])|[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: Why an address is refused (``forbidden_address``; it names the rule, not the address).
FORBIDDEN_ADDRESS = ("an address in a private, link-local, multicast, reserved or "
                     "unspecified range (only public addresses, and loopback for "
                     "development)")


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _embedded(address: IpAddress) -> list[IpAddress]:
    """``address`` and the IPv4 addresses it carries (IPv4-mapped, 6to4, Teredo), each of
    which a packet to it may reach."""
    found: list[IpAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
    return found


def forbidden_address(address: IpAddress) -> bool:
    """Whether a webhook may not be sent to ``address`` (server-side request forgery):
    any address in (or carrying, as IPv4-mapped, 6to4 or Teredo) a private, link-local,
    multicast, reserved, unspecified or otherwise non-global range. Loopback (127.0.0.0/8,
    ``::1`` and ``::ffff:127.0.0.0/104``) is allowed: development and tests."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if address.is_loopback or (mapped is not None and mapped.is_loopback):
        return False
    inner = _embedded(address)
    return any(candidate.is_private or candidate.is_link_local or candidate.is_multicast
               or candidate.is_reserved or candidate.is_unspecified
               or not candidate.is_global for candidate in inner)


def host_problem(host: str) -> str | None:
    """Why a webhook may not name ``host`` (lower case, without brackets), or None: an IP
    address literal that is ``forbidden_address``, a number in any form but the canonical
    dotted quad (``0x7f000001``, ``2130706433``, ``0177.0.0.1``, ``127.1``: each a valid
    address to some client), or an IPv6 literal that is not one. A DNS name passes here
    and is checked where it is resolved (``activities.notifications``)."""
    if ":" in host:
        try:
            address: IpAddress = ipaddress.IPv6Address(host)
        except ValueError:
            return "must have a valid IPv6 address in brackets"
    elif _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            return ("must write an IPv4 address as four decimal numbers (no hex, octal, "
                    "bare integer or shortened form)")
    elif "%" in host:
        return "must not percent-encode the host (a punycode name, or an address)"
    else:
        return None
    return f"must not be {FORBIDDEN_ADDRESS}" if forbidden_address(address) else None


def webhook_url_problems(url: str) -> list[str]:
    """Why ``url`` cannot be a webhook (empty: it can). Each reason names the rule and
    never repeats the URL:

    - at most ``MAX_URL_LENGTH`` characters;
    - ``https://`` with a host; ``http://`` only to a loopback host (``localhost``,
      127.0.0.0/8, ``::1``: development and tests);
    - a host that is no IP address in a private, link-local, multicast, reserved or
      unspecified range, and no number in a non-canonical form (``host_problem``:
      server-side request forgery);
    - no user or password in it (a credential would be stored and logged as an address);
    - no query value that looks like a V-nummer or a date (personal data never goes in a
      URI);
    - no fragment (it is never sent); a valid port; ASCII only, without spaces or
      control characters (what is stored is what is requested).
    """
    if len(url) > MAX_URL_LENGTH:
        return [f"at most {MAX_URL_LENGTH} characters"]
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return ["not a URL with a valid host and port"]
    problems = []
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        problems.append("must be an https:// URL with a host")
    elif parts.scheme == "http" and not _loopback(host):
        problems.append("must be https://; http:// only to a loopback host (development)")
    if host and (reason := host_problem(host)):
        problems.append(f"host: {reason}")
    if parts.username is not None or parts.password is not None:
        problems.append("must not hold a user or password")
    if any(_SENSITIVE_IN_URI.search(text) for pair in parse_qsl(parts.query, True)
           for text in pair):
        problems.append("query: looks like a V-nummer or a date: personal data never goes "
                        "in a URI")
    if parts.fragment:
        problems.append("must not have a fragment")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        problems.append("must not hold spaces or control characters")
    if not url.isascii():
        problems.append("must be ASCII (a punycode host, a percent-encoded path)")
    return problems
