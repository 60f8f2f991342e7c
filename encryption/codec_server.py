"""The remote codec for the Temporal Web UI and CLI (``kbflow codec-server``).

Temporal's remote-codec contract: ``POST /encode`` and ``POST /decode`` take and return
``{"payloads": [{"metadata": {name: base64}, "data": base64}, …]}``. Every request is
authenticated with a token, either as ``Authorization: Bearer <token>`` (the ``temporal``
CLI's ``--codec-auth``) or in the path, ``/t/<token>/decode`` (a codec endpoint an
operator sets in their own browser's UI settings). CORS admits only the UI's origins
(``ui_origins``), with the ``X-Namespace``, ``Authorization`` and ``Content-Type``
headers; a request from any other origin is refused (403).

**Decoding is governed** (issue 7): ``/decode`` takes only an operator's own token
(``encryption.operators``, issued with ``kbflow operator issue``); none, an unknown or a
revoked one gets 401. Every decode is written to the processing log before it is
answered (``activities.outbox_store.DecodeLog``): operator id, case (from each payload's
``kbflow-key-id``, through the key store), time and payload count, one entry per case per
request. If the log cannot be written the answer is 503 and nothing is decoded.

**Encoding is no disclosure**: ``/encode`` turns the caller's own plaintext into
ciphertext and reveals nothing stored, so it is not logged, and it takes an operator's
token or the services' token (``KBFLOW_CODEC_TOKEN``, or for development
``<data dir>/codec.token``, created mode 0600), which decodes nothing (403). No token
reaches a log: the access log shows ``/t/<token>/…`` (``access_log_config``).

``/encode`` has no workflow context (the remote-codec protocol sends none), so what it
encrypts goes under the system key, not a case's data key: it is not crypto-shredded with
a case. Send agency events with ``kbflow event``, not through the UI or the CLI's codec.

Errors are ``application/problem+json`` (RFC 9457: ``type``, ``title``, ``status``,
``detail``); none repeats a payload or a token.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hmac
import logging
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.api.common.v1 import Payload

from activities.outbox_store import DecodeLog
from encryption.codec import ENCODING, KEY_ID, CaseCodec
from encryption.keys import KeyStore, KeyUnavailable
from encryption.operators import OperatorStore
from encryption.secret_files import read_or_create_secret
from encryption.storage import StorageError
from kbflow.processing_log import DecodeEntry
from kbflow.settings import CODEC_TOKEN_ENV, Settings, case_ref_of

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
    """The services' codec token (``/encode`` only) from ``settings.codec_token``
    (``KBFLOW_CODEC_TOKEN``), else from (or new in) ``settings.codec_token_path``."""
    if settings.codec_token:
        return settings.codec_token
    return read_or_create_secret(settings.codec_token_path, lambda: secrets.token_urlsafe(32))


def create_app(keys: KeyStore, operators: OperatorStore, decode_log: DecodeLog,
               ui_origins: list[str], service_token: str | None = None) -> FastAPI:
    """The codec server app.

    Args:
        keys: the key store shared with the worker (read on every decode, never from a
            cache).
        operators: the operators' tokens (read on every request: a revoked token is
            refused at once).
        decode_log: where every decode is recorded before it is answered.
        ui_origins: browser origins allowed to call (the Temporal UI's), e.g.
            ``["http://localhost:8233"]``.
        service_token: the services' token, accepted by ``/encode`` only; ``None``: none.
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
    uncached = keys.without_cache()
    codec = CaseCodec(uncached)

    @app.exception_handler(StarletteHTTPException)
    async def _problem(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes the input; for /encode that is plaintext.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
        return problem(422, "invalid request body", errors=errors)

    def origin_allowed(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin not in ui_origins:
            raise HTTPException(status_code=403, detail="origin not allowed")

    def authenticate(request: Request, presented: str | None, operation: str) -> None:
        """Put the caller's operator id (``None`` for the services' token) on
        ``request.state.operator``, or refuse: 401 without a live token, 403 for the
        services' token on ``/decode``."""
        if presented:
            operator = operators.authenticate(presented)
            if operator is not None:
                request.state.operator = operator
                return
            if service_token is not None and hmac.compare_digest(presented.encode(),
                                                                 service_token.encode()):
                if operation == "decode":
                    raise HTTPException(status_code=403, detail=(
                        "decoding needs an operator's own token (kbflow operator issue); "
                        "the services' codec token only encodes"))
                request.state.operator = None
                return
        raise HTTPException(status_code=401, detail="an operator's codec token is required",
                            headers={"WWW-Authenticate": "Bearer"})

    def bearer(operation: str) -> Callable[..., None]:
        def check(request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> None:
            origin_allowed(request)
            scheme, _, presented = (authorization or "").partition(" ")
            authenticate(request, presented.strip() if scheme.lower() == "bearer" else None,
                         operation)
        return check

    def in_path(operation: str) -> Callable[..., None]:
        def check(request: Request, token_in_path: str) -> None:
            origin_allowed(request)
            authenticate(request, token_in_path, operation)
        return check

    def protos(body: Payloads, operation: str) -> list[Payload]:
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
        return payloads

    async def run(operation: str, body: Payloads, operator: str | None) -> Payloads:
        payloads = protos(body, operation)
        try:
            if operation == "encode":
                result = await codec.encode(payloads)
            else:
                result = await codec.decode(payloads)
                assert operator is not None  # authenticate() lets only operators decode
                record_decode(operator, payloads)
        except KeyUnavailable as error:  # e.g. "data key dk-…: destroyed (case erased)"
            raise HTTPException(status_code=422,
                                detail=f"cannot {operation}: {error}") from None
        except ValueError as error:  # tampered ciphertext
            raise HTTPException(status_code=422,
                                detail=f"cannot {operation}: {error}") from None
        return Payloads(payloads=[JsonPayload.from_proto(p) for p in result])

    def record_decode(operator: str, payloads: list[Payload]) -> None:
        """One processing-log entry per case among the decoded payloads; 503 if the log
        cannot be written (the decoded payloads are then not sent)."""
        by_key = Counter(p.metadata[KEY_ID].decode() for p in payloads
                         if p.metadata.get("encoding") == ENCODING)
        if not by_key:
            return  # nothing encrypted, nothing disclosed
        counts: Counter[str] = Counter()
        for key_id, count in by_key.items():  # one key-store lookup per key, not payload
            counts[uncached.scope_of(key_id) or "unknown"] += count
        request_id, at = str(uuid.uuid4()), dt.datetime.now(dt.UTC)
        try:
            decode_log.record([
                DecodeEntry(request_id=request_id, operator_id=operator,
                            case_ref=case_ref_of(scope), scope=scope, payload_count=count,
                            at=at)
                for scope, count in sorted(counts.items())])
        except StorageError as error:
            raise HTTPException(status_code=503, detail=(
                f"cannot record the decode in the processing log ({error}); nothing "
                "was decoded")) from None

    def routes(operation: str) -> None:
        async def endpoint(request: Request, body: Payloads) -> Payloads:
            return await run(operation, body, request.state.operator)

        app.post(f"/{operation}", response_model=Payloads,
                 dependencies=[Depends(bearer(operation))])(endpoint)
        app.post(f"/t/{{token_in_path}}/{operation}", response_model=Payloads,
                 dependencies=[Depends(in_path(operation))])(endpoint)

    routes("encode")
    routes("decode")
    return app


def problem(status: int, detail: str, *, headers: Mapping[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """An RFC 9457 problem (``application/problem+json``) with ``status`` and ``detail``."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return JSONResponse(status_code=status, media_type="application/problem+json",
                        headers=dict(headers or {}),
                        content={"type": "about:blank", "title": title, "status": status,
                                 "detail": detail, **extra})


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
