"""The remote codec for the Temporal Web UI and CLI (``kbflow codec-server``).

Temporal's remote-codec contract: ``POST /encode`` and ``POST /decode`` take and return
``{"payloads": [{"metadata": {name: base64}, "data": base64}, …]}``. Every request is
authenticated with the codec token, either as ``Authorization: Bearer <token>`` (the
``temporal`` CLI's ``--codec-auth``) or in the path, ``/t/<token>/decode`` (a codec
endpoint an operator sets in their own browser's UI settings). CORS admits only the UI's
origin, with the ``X-Namespace`` and ``Authorization`` headers; a request from any other
origin is refused (403).

The token comes from ``KBFLOW_CODEC_TOKEN`` or, for development, ``<data dir>/codec.token``
(created, mode 0600).
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payload

from encryption.codec import CaseCodec
from encryption.keys import KeyStore, KeyUnavailable

TOKEN_ENV = "KBFLOW_CODEC_TOKEN"
DEFAULT_UI_ORIGIN = "http://localhost:8233"


class JsonPayload(BaseModel):
    """A payload in protobuf-JSON form (bytes as base64)."""

    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = ""

    def to_proto(self) -> Payload:
        return Payload(metadata={k: base64.b64decode(v) for k, v in self.metadata.items()},
                       data=base64.b64decode(self.data))

    @classmethod
    def from_proto(cls, payload: Payload) -> JsonPayload:
        return cls(metadata={k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
                   data=base64.b64encode(payload.data).decode())


class Payloads(BaseModel):
    """Body of a codec request and response."""

    payloads: list[JsonPayload]


def load_token(data_dir: Path) -> str:
    """The codec token from ``KBFLOW_CODEC_TOKEN``, else from (or new in) the data dir."""
    configured = os.environ.get(TOKEN_ENV)
    if configured:
        return configured
    path = data_dir / "codec.token"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as token_file:
            token_file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def create_app(keys: KeyStore, token: str, ui_origins: list[str]) -> FastAPI:
    """The codec server app.

    Args:
        keys: the key store shared with the worker.
        token: the secret every request must present.
        ui_origins: browser origins allowed to call (the Temporal UI's), e.g.
            ``["http://localhost:8233"]``.
    """
    app = FastAPI(title="kbflow codec server", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=ui_origins,
        allow_methods=["POST"],
        allow_headers=["X-Namespace", "Authorization", "Content-Type"],
        allow_credentials=True,
    )
    codec = CaseCodec(keys)

    def authorise(request: Request, presented: str | None) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin not in ui_origins:
            raise HTTPException(status_code=403, detail="origin not allowed")
        if presented is None or not hmac.compare_digest(presented.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="codec token required",
                                headers={"WWW-Authenticate": "Bearer"})

    def bearer(authorization: str | None) -> str | None:
        if authorization and authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        return None

    async def run(operation: str, body: Payloads) -> Payloads:
        payloads = [payload.to_proto() for payload in body.payloads]
        try:
            if operation == "encode":
                result = await codec.encode(payloads)
            else:
                result = await codec.decode(payloads)
        except (KeyUnavailable, ValueError) as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return Payloads(payloads=[JsonPayload.from_proto(p) for p in result])

    def routes(operation: str) -> None:
        async def with_bearer(request: Request, body: Payloads,
                              authorization: Annotated[str | None, Header()] = None
                              ) -> Payloads:
            authorise(request, bearer(authorization))
            return await run(operation, body)

        async def with_path_token(request: Request, body: Payloads,
                                  token_in_path: str) -> Payloads:
            authorise(request, token_in_path)
            return await run(operation, body)

        app.post(f"/{operation}", response_model=Payloads)(with_bearer)
        app.post(f"/t/{{token_in_path}}/{operation}", response_model=Payloads)(with_path_token)

    routes("encode")
    routes("decode")
    return app
