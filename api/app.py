"""The API application: ``create_app`` assembles the routers of ``api.routes`` with the
identity (``api.identity``), the problems (``api.problems``), the ``API-Version`` header
and the OpenAPI document at ``/v1/openapi.json`` (open to all, ADR). What the routes use
is the ``api.context.ApiContext`` it is given.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from api import API_VERSION, PREFIX, problems, trace
from api.context import ApiContext
from api.routes import cases, documents, inbox, subscriptions

log = structlog.get_logger("kbflow.api")
OPENAPI_PATH = f"{PREFIX}/openapi.json"
#: The committed OpenAPI document; CI fails when the served one differs
#: (``tests/test_api_openapi.py``; ``kbflow api --openapi`` prints it).
OPENAPI_FILE = Path(__file__).with_name("openapi.json")


def create_app(api_context: ApiContext | None) -> FastAPI:
    """The API application over ``api_context`` (None: only to render the OpenAPI
    document)."""
    app = FastAPI(
        title="kbflow: the agencies' API",
        version=API_VERSION,
        summary="Cases, events, inboxes, documents and notifications of the RvdK, IND and "
                "DT&V protocol for children under a child-protection measure",
        openapi_url=OPENAPI_PATH, docs_url=None, redoc_url=None,
        # a path with a trailing slash is no resource (404 problem), not a redirect to a
        # URL built from the request's Host header
        redirect_slashes=False,
    )
    app.state.context = api_context
    problems.install(app)
    trace.install(app)  # each request a span: traceparent in, traceparent out

    @app.middleware("http")
    async def api_version(request: Request, call_next: Any) -> Response:
        began = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["API-Version"] = API_VERSION
        # one line per request for ops: the route's template (never the path or query as
        # sent: a caller may have typed personal data there), the caller's party, status
        caller = getattr(request.state, "caller", None)
        log.info("api request", method=request.method,
                 route=problems.instance_of(request) or "(no route)",
                 status=response.status_code,
                 party=None if caller is None else caller.party.value,
                 ms=round((time.perf_counter() - began) * 1000, 1))
        return response

    app.include_router(cases.router, prefix=PREFIX)
    app.include_router(inbox.router, prefix=PREFIX)
    app.include_router(documents.router, prefix=PREFIX)
    app.include_router(subscriptions.router, prefix=PREFIX)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _as_answered(get_openapi(
                title=app.title, version=app.version, summary=app.summary,
                routes=app.routes))
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    return app


def _as_answered(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's OpenAPI document made to say what the API answers: no ``422`` (invalid
    input is a ``400`` problem, ``api.problems``), each problem as
    ``application/problem+json`` with the ``Problem`` schema, and every operation behind
    mutual TLS (OpenAPI 3.1's ``mutualTLS`` scheme; only this document is open)."""
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for item in document["paths"].values():
        for operation in item.values():
            answers = operation.get("responses", {})
            answers.pop("422", None)
            for answer in answers.values():
                content = answer.get("content", {})
                if problems.MEDIA_TYPE in content:
                    content.pop("application/json", None)
                    content[problems.MEDIA_TYPE] = problem
            operation["security"] = [{"mutualTLS": []}]
    components = document.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    components["securitySchemes"] = {"mutualTLS": {
        "type": "mutualTLS",
        "description": "A client certificate (PKIoverheid in production) whose subject "
                       "serialNumber is the calling organisation's OIN, listed in kbflow's "
                       "OIN table (Digikoppeling REST API profile)"}}
    return document


def openapi_document() -> str:
    """The OpenAPI document as committed: the served one, as indented JSON."""
    return json.dumps(create_app(None).openapi(), indent=2, sort_keys=True) + "\n"
