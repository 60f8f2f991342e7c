"""Every error of the API as ``application/problem+json`` (RFC 9457; NL API Design Rules).

A problem has ``type`` (a URN naming the kind: ``ProblemType``), ``title`` (the kind in
words), ``status``, ``detail`` (this occurrence, naming the field or rule and the reason,
never a personal value) and, for invalid input, ``invalidParams``: every field that broke
a rule, each with ``name`` (a JSON path such as ``persons[0].date_of_birth``) and
``reason``. Invalid input is always 400 (ADR), listing all errors at once.

``ApiProblem`` is the one exception a route raises; ``install`` maps it, FastAPI's
validation errors and Starlette's HTTP errors (404 for an unknown path, 405, …) to
problems, and anything unexpected to a 500 problem without its message (logged with its
type only): no traceback and no value ever reaches a caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import API_VERSION, PREFIX

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("kbflow.api")


class ProblemType(Enum):
    """The kinds of problem, each with its status and title. ``type`` is
    ``urn:kbflow:problem:<slug>``."""

    # slug, status, title
    INVALID_INPUT = ("invalid-input", 400, "The request is invalid")
    UNAUTHENTICATED = ("unauthenticated", 401, "No client certificate")
    FORBIDDEN = ("forbidden", 403, "Not allowed for this party")
    UNKNOWN_OIN = ("unknown-oin", 403, "The certificate's OIN is no known party")
    NOT_FOUND = ("not-found", 404, "Not found")
    METHOD_NOT_ALLOWED = ("method-not-allowed", 405, "Method not allowed")
    CONFLICT = ("conflict", 409, "Conflicts with the case's state")
    IDEMPOTENCY_CONFLICT = ("idempotency-key-reused", 409,
                            "The idempotency key was used for another request")
    TOO_LARGE = ("too-large", 413, "The body is too large")
    UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", 415, "Unsupported media type")
    PENDING = ("pending", 503, "Accepted by Temporal but not applied yet")
    UNAVAILABLE = ("unavailable", 503, "A service kbflow needs is unavailable")
    INTERNAL = ("internal", 500, "Internal error")
    GONE = ("gone", 410, "Gone: the case was erased")
    FSC_UNAUTHENTICATED = ("fsc-unauthenticated", 401,
                           "No valid FSC access token (Fsc-Authorization)")

    @property
    def slug(self) -> str:
        return str(self.value[0])

    @property
    def status(self) -> int:
        return int(self.value[1])

    @property
    def title(self) -> str:
        return str(self.value[2])

    @property
    def uri(self) -> str:
        return f"urn:kbflow:problem:{self.slug}"


class InvalidParam(BaseModel):
    """One field that broke a rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The field, as a JSON path (e.g. persons[0].name), or a "
                                  "header or query parameter's name")
    reason: str = Field(description="The rule it broke; never its value")


class Problem(BaseModel):
    """An error (RFC 9457), as every error response's body."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    type: str = Field(description="A URN naming the kind of problem")
    title: str
    status: int
    detail: str = Field(description="This occurrence: the field or rule and the reason")
    instance: str | None = Field(default=None, description="The path template of the "
                                 "request's resource (e.g. /v1/cases/{caseRef}); never the "
                                 "path as sent")
    invalid_params: tuple[InvalidParam, ...] = Field(default=(), alias="invalidParams")


class ApiProblem(Exception):
    """Raised by a route: answered as a problem of ``kind`` with ``detail`` (one line
    naming the field or rule and the reason, never a personal value)."""

    def __init__(self, kind: ProblemType, detail: str, *,
                 invalid_params: Sequence[InvalidParam] = (),
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail
        self.invalid_params = tuple(invalid_params)
        self.headers = headers or {}


def problem_response(kind: ProblemType, detail: str, instance: str | None = None, *,
                     invalid_params: Sequence[InvalidParam] = (),
                     headers: dict[str, str] | None = None) -> JSONResponse:
    """The response of a problem. A ``503`` says when to try again (``Retry-After``, 5 s
    unless ``headers`` give it)."""
    if kind.status == 503:
        headers = {"Retry-After": "5", **(headers or {})}
    body = Problem(type=kind.uri, title=kind.title, status=kind.status, detail=detail,
                   instance=instance, invalid_params=tuple(invalid_params))
    return JSONResponse(body.model_dump(mode="json", by_alias=True, exclude_none=True,
                                        exclude_defaults=False),
                        status_code=kind.status, media_type=MEDIA_TYPE, headers=headers)


def instance_of(request: Request) -> str | None:
    """A problem's ``instance``: the path template of the route the request matched (e.g.
    ``/v1/cases/{caseRef}``), never the path as sent, which may hold anything a caller
    typed (a name, a V-nummer); None for a path that matched no route."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    # every router is included under the version prefix; FastAPI's route objects hold
    # their path with or without it, depending on its version
    return path if path.startswith(PREFIX) else PREFIX + path


def json_path(location: Sequence[int | str]) -> str:
    """A validation error's location as a JSON path: ``persons[0].name``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _validation_params(errors: Sequence[Any]) -> list[InvalidParam]:
    params = []
    for error in errors:
        location = list(error.get("loc", ()))
        if location and location[0] in ("body", "query", "path", "header"):
            location = location[1:]
        # pydantic's message names the rule; its "input" (the value) is never used
        params.append(InvalidParam(name=json_path(location), reason=str(error.get("msg"))))
    return params


_BY_STATUS = {kind.status: kind for kind in (
    ProblemType.NOT_FOUND, ProblemType.METHOD_NOT_ALLOWED,
    ProblemType.TOO_LARGE, ProblemType.UNSUPPORTED_MEDIA_TYPE, ProblemType.UNAUTHENTICATED)}


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem (module docstring)."""

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiProblem)
        return problem_response(error.kind, error.detail, instance_of(request),
                                invalid_params=error.invalid_params, headers=error.headers)

    async def on_invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        params = _validation_params(error.errors())
        return problem_response(
            ProblemType.INVALID_INPUT,
            f"{len(params)} invalid parameter(s): " + ", ".join(p.name for p in params),
            instance_of(request), invalid_params=params)

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        kind = _BY_STATUS.get(error.status_code, ProblemType.INVALID_INPUT
                              if error.status_code == 400 else ProblemType.INTERNAL)
        detail = kind.title if kind is not ProblemType.NOT_FOUND else (
            "no resource at this path (see /v1/openapi.json)")
        return problem_response(kind, detail, instance_of(request),
                                headers=getattr(error, "headers", None))

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        route = request.scope.get("route")
        log.error("api: unexpected %s on %s %s", type(error).__name__, request.method,
                  getattr(route, "path", "?"))
        # answered by Starlette's outermost middleware, outside the app's own: it sets
        # the API-Version header every answer carries (ADR) itself
        return problem_response(ProblemType.INTERNAL, "an unexpected error; see the API's "
                                "log (no detail is given here)", instance_of(request),
                                headers={"API-Version": API_VERSION})

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


#: What the OpenAPI document says each route may answer besides its success.
def responses(*kinds: ProblemType) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problems a route may answer (always 400, 401, 403,
    and 500)."""
    found: dict[int | str, dict[str, Any]] = {}
    for kind in (ProblemType.INVALID_INPUT, ProblemType.UNAUTHENTICATED,
                 ProblemType.FORBIDDEN, ProblemType.INTERNAL, *kinds):
        found[kind.status] = {"model": Problem, "description": kind.title,
                              "content": {MEDIA_TYPE: {}}}
    return found
