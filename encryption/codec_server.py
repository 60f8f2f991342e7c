"""The remote codec for the Temporal Web UI and CLI (``kbflow codec-server``).

Temporal's remote-codec contract: ``POST /encode`` and ``POST /decode`` take and return
``{"payloads": [{"metadata": {name: base64}, "data": base64}, …]}``. Every request is
authenticated with the codec token, either as ``Authorization: Bearer <token>`` (the
``temporal`` CLI's ``--codec-auth``) or in the path, ``/t/<token>/decode`` (a codec
endpoint an operator sets in their own browser's UI settings). CORS admits only the UI's
origins (``ui_origins``), with the ``X-Namespace``, ``Authorization`` and ``Content-Type``
headers; a request from any other origin is refused (403).

The token comes from ``KBFLOW_CODEC_TOKEN`` or, for development, ``<data dir>/codec.token``
(created, mode 0600). It never reaches a log: the access log shows ``/t/<token>/…``
(``access_log_config``).

``/encode`` has no workflow context (the remote-codec protocol sends none), so what it
encrypts goes under the system key, not a case's data key: it is not crypto-shredded with
a case. Send agency events with ``kbflow event``, not through the UI or the CLI's codec.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import logging
import re
import secrets
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payload

from encryption.codec import ENCODING, KEY_ID, CaseCodec
from encryption.keys import KeyStore, KeyUnavailable
from encryption.secret_files import read_or_create_secret
from kbflow.settings import CODEC_TOKEN_ENV, Settings

TOKEN_ENV = CODEC_TOKEN_ENV  # the name importers know it by
DEFAULT_UI_ORIGIN = "http://localhost:8233"
#: The origins ``kbflow codec-server`` admits by default: the dev server's Web UI, by
#: either loopback name (``kbflow server`` prints the first).
DEFAULT_UI_ORIGINS = (DEFAULT_UI_ORIGIN, "http://127.0.0.1:8233")
DEFAULT_PORT = 8081
_PATH_TOKEN = re.compile(r"/t/[^/?]*")


class JsonPayload(BaseModel):
    """A payload in protobuf-JSON form (bytes as base64)."""

    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = ""

    def to_proto(self) -> Payload:
        """The protobuf payload.

        Raises:
            binascii.Error: a value is not base64.
        """
        return Payload(metadata={k: base64.b64decode(v, validate=True)
                                 for k, v in self.metadata.items()},
                       data=base64.b64decode(self.data, validate=True))

    @classmethod
    def from_proto(cls, payload: Payload) -> JsonPayload:
        return cls(metadata={k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
                   data=base64.b64encode(payload.data).decode())


class Payloads(BaseModel):
    """Body of a codec request and response."""

    payloads: list[JsonPayload] = Field(default_factory=list)  # "{}" is an empty list


def load_token(settings: Settings) -> str:
    """The codec token from ``settings.codec_token`` (``KBFLOW_CODEC_TOKEN``), else from (or
    new in) ``settings.codec_token_path``."""
    if settings.codec_token:
        return settings.codec_token
    return read_or_create_secret(settings.codec_token_path, lambda: secrets.token_urlsafe(32))


def create_app(keys: KeyStore, token: str, ui_origins: list[str]) -> FastAPI:
    """The codec server app.

    Args:
        keys: the key store shared with the worker (read on every decode, never from a
            cache).
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
    # No cached data key: an erased case's payloads are refused the moment its key is
    # destroyed (by the worker or `kbflow erase`, other processes), not a cache later.
    codec = CaseCodec(keys.without_cache())

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes the input; for /encode that is plaintext.
        detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    def origin_allowed(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin not in ui_origins:
            raise HTTPException(status_code=403, detail="origin not allowed")

    def check(presented: str | None) -> None:
        if presented is None or not hmac.compare_digest(presented.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="codec token required",
                                headers={"WWW-Authenticate": "Bearer"})

    # Dependencies run before the body is read: a request without the token gets 401 (a
    # foreign origin 403) whatever it sent.
    def bearer_token(request: Request,
                     authorization: Annotated[str | None, Header()] = None) -> None:
        origin_allowed(request)
        scheme, _, presented = (authorization or "").partition(" ")
        check(presented.strip() if scheme.lower() == "bearer" else None)

    def path_token(request: Request, token_in_path: str) -> None:
        origin_allowed(request)
        check(token_in_path)

    async def run(operation: str, body: Payloads) -> Payloads:
        payloads = []
        for index, payload in enumerate(body.payloads):
            try:
                proto = payload.to_proto()
            except binascii.Error:
                raise HTTPException(status_code=422,
                                    detail=f"payload {index}: not base64") from None
            if (operation == "decode" and proto.metadata.get("encoding") == ENCODING
                    and not proto.metadata.get(KEY_ID)):
                raise HTTPException(status_code=422,
                                    detail=f"payload {index}: no {KEY_ID} in its metadata")
            payloads.append(proto)
        try:
            if operation == "encode":
                result = await codec.encode(payloads)
            else:
                result = await codec.decode(payloads)
        except KeyUnavailable as error:  # e.g. "data key dk-…: destroyed (case erased)"
            raise HTTPException(status_code=422,
                                detail=f"cannot {operation}: {error}") from None
        except ValueError as error:  # tampered ciphertext
            raise HTTPException(status_code=422,
                                detail=f"cannot {operation}: {error}") from None
        return Payloads(payloads=[JsonPayload.from_proto(p) for p in result])

    def routes(operation: str) -> None:
        async def endpoint(body: Payloads) -> Payloads:
            return await run(operation, body)

        app.post(f"/{operation}", response_model=Payloads,
                 dependencies=[Depends(bearer_token)])(endpoint)
        app.post(f"/t/{{token_in_path}}/{operation}", response_model=Payloads,
                 dependencies=[Depends(path_token)])(endpoint)

    routes("encode")
    routes("decode")
    return app


def redact_token(path: str) -> str:
    """``path`` with a path token replaced: ``/t/<token>/decode``."""
    return _PATH_TOKEN.sub("/t/<token>", path)


class TokenRedactingFilter(logging.Filter):
    """Keeps the codec token out of uvicorn's access log (its third argument is the path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_token(args[2]), *args[3:])
        return True


def access_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with ``TokenRedactingFilter`` on the access log,
    everything on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_token"] = {"()": TokenRedactingFilter}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_token"]
    return config
