"""``/v1/cases``: start a case (step 1), send it an event, read its status.

- ``POST /v1/cases``: the step-1 report, the ``CaseStart`` the CLI takes (with
  ``idempotency_key``, without ``case_ref``), validated as ``kbflow start`` validates it
  (``starter.inputs.case_start``, then plausible today). kbflow derives the ref from the
  key (``starter.cases.derived_case_ref``): ``201`` and ``Location`` for a new case, ``200``
  and the same ``Location`` for a repeat, ``409`` (idempotency-key-reused) for the key
  with another body.
- ``POST /v1/cases/{caseRef}/events/{event}``: one route per event of
  ``kbflow.case.RULES`` (kebab-case), its body the event's model (the JSON Schema of
  ``kbflow schema NAME``); ``200`` with the ``EventOutcome``, or the case's refusal as a
  problem by its ``RefusalCode`` (``REFUSALS``).
- ``GET /v1/cases/{caseRef}``: the ``CaseStatus``, to a party that takes part
  (``api.authorisation``).

A refused request changes nothing: every check here runs before Temporal is asked, and
the case's own refusals come from its update validator, which writes no history.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from activities.pseudonyms import Pseudonymiser
from api import PREFIX, authorisation
from api.bodies import invalid, json_object, param_of, plain_query, validated
from api.context import ApiContext, ContextDep
from api.identity import Caller, CallerDep
from api.problems import ApiProblem, InvalidParam, ProblemType, responses
from api.routes.documents import check_event_documents
from kbflow import case_refs
from kbflow.case import RULES, CaseStatus, EventOutcome, RefusalCode, Rule
from kbflow.case_refs import MODEL_PATTERN
from kbflow.events import AgencyEvent, CaseStart, CourtRulingEvent, Event
from kbflow.items import Measure
from kbflow.process import Party
from kbflow.reference import CASE, json_schema
from kbflow.settings import workflow_id
from starter.cases import (
    CaseError,
    EventPendingError,
    EventRefusedError,
    case_status,
    derived_case_ref,
    send_event,
    start_case,
)

router = APIRouter(tags=["cases"])

#: How long an event may take through the API (the case accepting it, then delivering
#: its packets); longer is 503 ``pending`` with ``Retry-After`` (a re-send is safe).
EVENT_WAIT = timedelta(seconds=30)
#: What ``Retry-After`` says for a pending event, in seconds.
RETRY_AFTER_SECONDS = 5

#: A case's refusal as a problem, by its ``RefusalCode``.
REFUSALS: dict[RefusalCode, ProblemType] = {
    RefusalCode.MALFORMED: ProblemType.INVALID_INPUT,
    RefusalCode.TOO_LARGE: ProblemType.TOO_LARGE,
    RefusalCode.UNKNOWN_EVENT: ProblemType.NOT_FOUND,
    RefusalCode.WRONG_SENDER: ProblemType.FORBIDDEN,
    RefusalCode.NOT_IN_FLOW: ProblemType.INVALID_INPUT,
    RefusalCode.NO_WEIGHING: ProblemType.CONFLICT,
    RefusalCode.UNKNOWN_PERSON: ProblemType.INVALID_INPUT,
    RefusalCode.CLOSED: ProblemType.CONFLICT,
    RefusalCode.NOT_NOW: ProblemType.CONFLICT,
    RefusalCode.NOT_AWAITED: ProblemType.CONFLICT,
    RefusalCode.V_NUMBER_TWICE: ProblemType.INVALID_INPUT,
    RefusalCode.V_NUMBER_CONTRADICTION: ProblemType.CONFLICT,
    RefusalCode.DUPLICATE_CONFLICT: ProblemType.IDEMPOTENCY_CONFLICT,
    RefusalCode.RULING_DATE: ProblemType.INVALID_INPUT,
    RefusalCode.ERASING: ProblemType.CONFLICT,
    RefusalCode.ERASED: ProblemType.CONFLICT,
}

CaseRefPath = Annotated[str, Path(alias="caseRef", pattern=MODEL_PATTERN,
                                  description="The case reference kbflow made, e.g. "
                                              "KB-2026-7K4M2XCH-R")]


def path_segment(event: Event) -> str:
    """The path segment of an event: its update name in kebab-case."""
    return event.value.replace("_", "-")


def checked_ref(case_ref: str) -> str:
    """``case_ref`` with its check character checked (a mistyped ref is 400, never
    looked up).

    Raises:
        ApiProblem: 400 naming ``caseRef`` and the rule.
    """
    try:
        return case_refs.check_case_ref(case_ref, allow_legacy=True)
    except case_refs.CaseRefError as error:
        reason = str(error).removeprefix("case ref: ")
        raise invalid([InvalidParam(name="caseRef", reason=reason)], "path") from None


def _body_schema(name: str) -> dict[str, Any]:
    """The request body of event ``name`` (or the case start) for the OpenAPI document:
    the JSON Schema of ``kbflow schema NAME`` with its definitions inlined."""
    return {"required": True,
            "content": {"application/json": {"schema": inline_defs(json_schema(name))}}}


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each ``$ref`` to its own ``$defs`` replaced by the definition
    (kbflow's models are not recursive), so that it stands alone inside the OpenAPI
    document, where ``#/$defs/…`` would point at the document's root."""
    definitions = schema.get("$defs", {})

    def resolved(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return {**resolved(definitions[ref.removeprefix("#/$defs/")]),
                        **resolved(rest)}
            return {key: resolved(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolved(item) for item in node]
        return node

    result: dict[str, Any] = resolved(schema)
    return result


# ---- start -------------------------------------------------------------------------------


class Started(BaseModel):
    """A case started (or found started by this same start before)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_ref: str = Field(description="The case ref kbflow derived from the idempotency key")
    already_started: bool = Field(description="True: this start was made before (200)")


def _pseudonymiser(api: ApiContext) -> Pseudonymiser:
    found = api.outbox.pseudonymise
    if isinstance(found, Pseudonymiser):
        return found
    try:
        return Pseudonymiser.load(api.settings)
    except (OSError, ValueError):
        raise ApiProblem(ProblemType.UNAVAILABLE, "the pseudonym key is unavailable "
                         "(KBFLOW_PSEUDONYM_KEY or the data dir's); no case can be "
                         "started") from None


def _start_problem(error: CaseError) -> ApiProblem:
    """A refused start as a problem (the message names the rule, never a value)."""
    text = str(error)
    if text.startswith("idempotency_key:"):
        return ApiProblem(ProblemType.IDEMPOTENCY_CONFLICT, text)
    if text.startswith("child "):
        return ApiProblem(ProblemType.CONFLICT, text.replace(
            "add --second-case", "add the query parameter secondCase=true"))
    if "cannot reach Temporal" in text or "Temporal error" in text:
        return ApiProblem(ProblemType.UNAVAILABLE, text.split(";")[0])
    return ApiProblem(ProblemType.CONFLICT, text)


#: An unknown case: the ref as sent is not repeated (any 6-12 capitals or digits match the
#: pattern of refs made before check characters, a V-nummer-like value too).
NO_SUCH_CASE = "caseRef: no such case"
_OTHER_CASE = re.compile(r"open case (\S+);")
_STARTED_CASE = re.compile(r"another case start \((KB-[^)]+)\)")


async def _start_problem_for(api: ApiContext, caller: Caller, error: CaseError) -> ApiProblem:
    """``_start_problem``, but the ref of a child's other open case, or of the case an
    idempotency key started, only to a caller that takes part in it: to any other
    reporter it would say which case a child is in."""
    problem = _start_problem(error)
    other = _OTHER_CASE.search(problem.detail)
    if other is not None and not await authorisation.takes_part(api, caller, other[1]):
        problem = ApiProblem(problem.kind, problem.detail.replace(
            f"open case {other[1]};", "an open case (in which "
            f"{caller.party.value} takes no part);"))
    started = _STARTED_CASE.search(problem.detail)
    if started is not None and not await authorisation.takes_part(api, caller, started[1]):
        problem = ApiProblem(problem.kind, problem.detail.replace(
            f" ({started[1]})", f" (a case {caller.party.value} takes no part in)"))
    return problem


@router.post(
    "/cases", status_code=201, response_model=Started, openapi_extra={
        "requestBody": _body_schema(CASE),
        "responses": {"201": {"headers": {"Location": {
            "description": "/v1/cases/{caseRef}", "schema": {"type": "string"}}}}}},
    responses={**responses(ProblemType.CONFLICT, ProblemType.IDEMPOTENCY_CONFLICT,
                           ProblemType.TOO_LARGE, ProblemType.UNSUPPORTED_MEDIA_TYPE,
                           ProblemType.UNAVAILABLE),
               200: {"model": Started, "description": "Started before by this same start"}},
    dependencies=[Depends(plain_query("secondCase"))])
async def start(
    request: Request, response: Response, caller: CallerDep, api: ContextDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key",
        description="If given, must equal the body's idempotency_key")] = None,
    second_case: Annotated[Literal["true", "false"], Query(
        alias="secondCase", description="true: start the case even though a child in it "
                                        "already has an open case")] = "false",
) -> Started:
    """Start a case with its step-1 report (only VT, COA, AVIM or IND, as itself).

    The body is the CaseStart of ``kbflow start`` (or a scenario file, whose ``case`` is
    used): with ``idempotency_key``, without ``case_ref``; kbflow derives the ref from the
    key, so a repeat returns the same case.
    """
    authorisation.require_reporter(caller)
    document = await json_object(request)
    if isinstance(document.get("case"), dict):  # a scenario file, as `kbflow start` takes
        document = document["case"]
    params = []
    if "case_ref" in document:
        params.append(InvalidParam(name="case_ref",
                                   reason="kbflow generates case refs; leave it out"))
    try:
        checked = validated(CaseStart, {**document, "case_ref": case_refs.new_case_ref()},
                            CASE)
    except ApiProblem as problem:
        if problem.kind is not ProblemType.INVALID_INPUT:
            raise
        raise invalid([*params, *problem.invalid_params]) from None
    if params:
        raise invalid(params)
    implausible = checked.implausibility(dt.date.today())
    if implausible is not None:
        raise invalid([param_of(implausible)])
    assert checked.idempotency_key is not None  # REQUIRED_WHEN_SENT
    if idempotency_key is not None and idempotency_key != checked.idempotency_key:
        raise invalid([InvalidParam(name="Idempotency-Key", reason="must equal the body's "
                                    "idempotency_key")], "header")
    authorisation.require_as_itself(caller, "reporter", checked.reporter)
    case_ref = derived_case_ref(_pseudonymiser(api), checked.idempotency_key)
    case = checked.model_copy(update={"case_ref": case_ref})
    try:
        started = await start_case(api.client, api.settings, case,
                                   open_cases_in=None if second_case == "true" else api.outbox)
    except CaseError as error:
        raise await _start_problem_for(api, caller, error) from None
    await authorisation.record(api, case_ref, caller.party, caller.oin)
    response.headers["Location"] = f"{PREFIX}/cases/{case_ref}"
    if started.already_started:
        response.status_code = 200
    return Started(case_ref=case_ref, already_started=started.already_started)


# ---- events ------------------------------------------------------------------------------


def _refusal_problem(error: EventRefusedError) -> ApiProblem:
    kind = ProblemType.CONFLICT if error.code is None else REFUSALS.get(
        error.code, ProblemType.CONFLICT)
    detail = str(error).removeprefix("refused: ")
    if kind is ProblemType.INVALID_INPUT:
        return invalid([param_of(part) for part in detail.split("; ")], "event")
    return ApiProblem(kind, detail)


def _case_problem(case_ref: str, error: CaseError) -> ApiProblem:
    text = str(error)
    if "unknown case" in text:
        return ApiProblem(ProblemType.NOT_FOUND, NO_SUCH_CASE)
    if "closed" in text or "erased" in text:
        return ApiProblem(ProblemType.CONFLICT, text)
    return ApiProblem(ProblemType.UNAVAILABLE, text.split(";")[0])


async def _gi_named(api: ApiContext, body: AgencyEvent) -> str | None:
    """The OIN of the GI an OTS ruling names (required, and a GI of the OIN table), or
    None for another event.

    Raises:
        ApiProblem: 400 naming ``gi.oin``.
    """
    if not isinstance(body, CourtRulingEvent) or body.measure is not Measure.OTS:
        return None
    assert body.gi is not None  # the model requires it for an OTS
    if body.gi.oin is None:
        raise invalid([InvalidParam(name="gi.oin", reason="required through the API for an "
                                    "OTS: the OIN of the GI that carries it out")])
    entry = api.parties.party_of(body.gi.oin)
    if entry is None or entry.party is not Party.GI:
        raise invalid([InvalidParam(name="gi.oin", reason="not the OIN of a GI in kbflow's "
                                    "OIN table (parties.json)")])
    return body.gi.oin


def _event_route(rule: Rule) -> Callable[..., Awaitable[EventOutcome]]:
    name = rule.event.value

    async def send(case_ref: CaseRefPath, request: Request, caller: CallerDep,
                   api: ContextDep) -> EventOutcome:
        authorisation.require_sender(caller, rule)
        case_ref = checked_ref(case_ref)
        document = await json_object(request)
        body = validated(rule.model, document, name)
        authorisation.require_as_itself(caller, "sender", body.sender)
        gi_oin = await _gi_named(api, body)
        if not await asyncio.to_thread(api.keys.has_key, workflow_id(case_ref)):
            raise ApiProblem(ProblemType.NOT_FOUND, NO_SUCH_CASE)
        # every document the event references: one of this case, uploaded by the sender
        await check_event_documents(api, caller, case_ref, body)
        try:
            outcome = await send_event(api.client, case_ref, name, body, timeout=EVENT_WAIT)
        except EventRefusedError as error:
            raise _refusal_problem(error) from None
        except EventPendingError as error:
            raise ApiProblem(ProblemType.PENDING, str(error).replace(
                "re-send the same file", "re-send the same body"),
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except CaseError as error:
            raise _case_problem(case_ref, error) from None
        await authorisation.record(api, case_ref, caller.party, caller.oin)
        if gi_oin is not None:
            await authorisation.record(api, case_ref, Party.GI, gi_oin)
        return outcome

    send.__name__ = f"send_{name}"
    send.__doc__ = (f"Send the case the event '{name}' ({rule.model.__doc__ or ''}). Only "
                    f"{', '.join(p.value for p in rule.senders)}, as itself.")
    return send


for _rule in RULES.values():
    router.add_api_route(
        f"/cases/{{caseRef}}/events/{path_segment(_rule.event)}", _event_route(_rule),
        methods=["POST"], response_model=EventOutcome, name=f"send_{_rule.event.value}",
        summary=f"Send '{_rule.event.value}'",
        openapi_extra={"requestBody": _body_schema(_rule.event.value)},
        responses=responses(ProblemType.NOT_FOUND, ProblemType.CONFLICT,
                            ProblemType.IDEMPOTENCY_CONFLICT, ProblemType.TOO_LARGE,
                            ProblemType.UNSUPPORTED_MEDIA_TYPE, ProblemType.PENDING),
        dependencies=[Depends(plain_query())])


# ---- status ------------------------------------------------------------------------------


@router.get("/cases/{caseRef}", response_model=CaseStatus,
            responses=responses(ProblemType.NOT_FOUND, ProblemType.CONFLICT,
                                ProblemType.UNAVAILABLE),
            dependencies=[Depends(plain_query())])
async def read_case(case_ref: CaseRefPath, caller: CallerDep, api: ContextDep) -> CaseStatus:
    """The case at a glance (no personal data): phase, steps done, what is awaited; only
    to a party that takes part in it."""
    case_ref = checked_ref(case_ref)
    if not await asyncio.to_thread(api.keys.has_key, workflow_id(case_ref)):
        raise ApiProblem(ProblemType.NOT_FOUND, NO_SUCH_CASE)
    await authorisation.require_takes_part(api, caller, case_ref)
    try:
        return await case_status(api.client, case_ref)
    except CaseError as error:
        raise _case_problem(case_ref, error) from None


__all__ = ["REFUSALS", "router"]
