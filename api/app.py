"""The API application: ``create_app`` assembles the routers of ``api.routes`` with the
identity (``api.identity``), the problems (``api.problems``), the ``API-Version`` header
and the OpenAPI document at ``/v1/openapi.json`` (open to all, ADR). What the routes use
is the ``api.context.ApiContext`` it is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from api import API_VERSION, PREFIX, problems, trace
from api.context import ApiContext
from api.routes import cases, documents, inbox, subscriptions

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
    )
    app.state.context = api_context
    problems.install(app)
    trace.install(app)  # each request a span: traceparent in, traceparent out

    @app.middleware("http")
    async def api_version(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["API-Version"] = API_VERSION
        return response

    app.include_router(cases.router, prefix=PREFIX)
    app.include_router(inbox.router, prefix=PREFIX)
    app.include_router(documents.router, prefix=PREFIX)
    app.include_router(subscriptions.router, prefix=PREFIX)
    return app


def openapi_document() -> str:
    """The OpenAPI document as committed: the served one, as indented JSON."""
    return json.dumps(create_app(None).openapi(), indent=2, sort_keys=True) + "\n"
