"""``/v1/subscriptions``: a party's webhooks (issue 8, point 5; ``kbflow.notifications``).

A subscription belongs to the caller's party and OIN (several GIs each have their own):
only that OIN lists, reads and removes it. When a packet for the party is delivered,
kbflow POSTs a CloudEvent to each of its subscriptions (``NotificationWorkflow``); a
removed subscription gets nothing more, not even what was still being retried.

The URL is checked (``kbflow.notifications.webhook_url_problems``: https only, http only
to a loopback host, no user or password, at most 2048 characters; no host that is an IP
address in a private, link-local, multicast, reserved or unspecified range, nor a number
in a non-canonical form; no query value that looks like a V-nummer or a date) and never
echoed in a problem. A DNS name is checked where it is resolved, at send time
(``activities.notifications.destinations``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api import PREFIX
from api.bodies import json_object, validated
from api.context import ApiContext, ContextDep
from api.identity import Caller, CallerDep
from api.problems import ApiProblem, InvalidParam, ProblemType, responses
from encryption.storage import StorageError
from kbflow.notifications import (
    MAX_SUBSCRIPTIONS_PER_OIN,
    MAX_URL_LENGTH,
    SUBSCRIPTION_ID_PATTERN,
    new_subscription_id,
    webhook_url_problems,
)
from kbflow.process import Party
from store.interface import SubscriptionRecords, SubscriptionRow

router = APIRouter(tags=["subscriptions"])
T = TypeVar("T")

SubscriptionIdPath = Annotated[str, Path(alias="subscriptionId", pattern=SUBSCRIPTION_ID_PATTERN,
                                         description="The subscription's id, as kbflow made "
                                                     "it (sub- and 32 hex digits)")]


class SubscriptionRequest(BaseModel):
    """A webhook to register."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str = Field(max_length=MAX_URL_LENGTH, description=(
        "Where kbflow POSTs its CloudEvents (structured JSON mode): https://; http:// only "
        "to a loopback host (development); no user or password"),
        examples=["https://indigo.example.nl/kbflow/notifications"])


class Subscription(BaseModel):
    """A registered webhook."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=SUBSCRIPTION_ID_PATTERN, description="The subscription's id")
    url: str = Field(description="Where kbflow POSTs its CloudEvents")
    party: Party = Field(description="The party notified (the caller's)")
    created_at: dt.datetime = Field(description="When it was registered (UTC)")

    @classmethod
    def of(cls, row: SubscriptionRow) -> Subscription:
        return cls(id=row.subscription_id, url=row.url, party=Party(row.party),
                   created_at=dt.datetime.fromisoformat(row.created_at).astimezone(dt.UTC))


class Subscriptions(BaseModel):
    """The caller's webhooks, oldest first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscriptions: tuple[Subscription, ...]


def _records(api: ApiContext) -> SubscriptionRecords:
    return api.outbox.subscriptions


async def _stored(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` on a thread; a storage fault is a 503 problem (one line, no
    data)."""
    try:
        return await asyncio.to_thread(function, *args)
    except StorageError:
        raise ApiProblem(ProblemType.UNAVAILABLE, "the state store is unavailable; try "
                         "again later") from None


def _location(subscription_id: str) -> str:
    return f"{PREFIX}/subscriptions/{subscription_id}"


async def _own(api: ApiContext, caller: Caller, subscription_id: str) -> SubscriptionRow:
    """The caller's subscription ``subscription_id``.

    Raises:
        ApiProblem: 404 if there is none; 403 if it is another organisation's.
    """
    row = await _stored(_records(api).subscription, subscription_id)
    if row is None:
        raise ApiProblem(ProblemType.NOT_FOUND, f"subscription {subscription_id}: none such "
                         "(never made, or removed)")
    if row.oin != caller.oin:
        raise ApiProblem(ProblemType.FORBIDDEN, f"subscription {subscription_id}: a party "
                         "reads and removes only its own subscriptions (by OIN)")
    return row


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED, response_model=Subscription,
             responses={**responses(ProblemType.CONFLICT, ProblemType.UNAVAILABLE,
                                    ProblemType.TOO_LARGE, ProblemType.UNSUPPORTED_MEDIA_TYPE),
                        200: {"model": Subscription,
                              "description": "This OIN had registered this URL already"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": SubscriptionRequest.model_json_schema()}}}})
async def create_subscription(request: Request, caller: CallerDep, api: ContextDep,
                              response: Response) -> Subscription:
    """Register a webhook for the caller's party and OIN: ``201`` with its ``Location``
    (``200`` and the existing one if this OIN registered the URL before). When a packet
    for the caller is delivered, kbflow POSTs a CloudEvent (``nl.kbflow.packet.delivered``,
    ids only; ``dataref`` is the packet in the inbox) until the webhook answers 2xx. The
    body is read as every body of the API is (``api.bodies``: media type, size, JSON)."""
    body = validated(SubscriptionRequest, await json_object(request), "subscription")
    problems = webhook_url_problems(body.url)
    if problems:
        raise ApiProblem(ProblemType.INVALID_INPUT, "url: " + "; ".join(problems),
                         invalid_params=[InvalidParam(name="url", reason=reason)
                                         for reason in problems])
    records = _records(api)
    held = await _stored(records.subscription_rows, None, caller.oin)
    existing = next((row for row in held if row.url == body.url), None)
    if existing is None and len(held) >= MAX_SUBSCRIPTIONS_PER_OIN:
        raise ApiProblem(ProblemType.CONFLICT, f"url: an organisation holds at most "
                         f"{MAX_SUBSCRIPTIONS_PER_OIN} subscriptions; remove one first")
    row = existing
    if row is None:
        row = await _stored(records.add_subscription, SubscriptionRow(
            new_subscription_id(), caller.party.value, caller.oin, body.url,
            dt.datetime.now(dt.UTC).isoformat()))
    else:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = _location(row.subscription_id)
    return Subscription.of(row)


@router.get("/subscriptions", response_model=Subscriptions,
            responses=responses(ProblemType.UNAVAILABLE))
async def list_subscriptions(caller: CallerDep, api: ContextDep) -> Subscriptions:
    """The caller's own webhooks (of its OIN), oldest first."""
    rows = await _stored(_records(api).subscription_rows, None, caller.oin)
    return Subscriptions(subscriptions=tuple(Subscription.of(row) for row in rows))


@router.get("/subscriptions/{subscriptionId}", response_model=Subscription,
            responses=responses(ProblemType.NOT_FOUND, ProblemType.UNAVAILABLE))
async def read_subscription(subscription_id: SubscriptionIdPath, caller: CallerDep,
                            api: ContextDep) -> Subscription:
    """One of the caller's webhooks (``403`` for another organisation's)."""
    return Subscription.of(await _own(api, caller, subscription_id))


@router.delete("/subscriptions/{subscriptionId}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response,
               responses=responses(ProblemType.NOT_FOUND, ProblemType.UNAVAILABLE))
async def delete_subscription(subscription_id: SubscriptionIdPath, caller: CallerDep,
                              api: ContextDep) -> Response:
    """Remove one of the caller's webhooks (``403`` for another organisation's): no
    notification is sent to it any more, not even one being retried."""
    await _own(api, caller, subscription_id)
    await _stored(_records(api).remove_subscription, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
