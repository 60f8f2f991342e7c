"""``kbflow api``: the API served by uvicorn over mutual TLS (``api.tls``).

uvicorn does not (yet) hand the client certificate to the application, so the one piece
of glue here is ``_TlsH11Protocol``: uvicorn's own HTTP/1.1 protocol that adds the ASGI TLS
extension (``scope["extensions"]["tls"]``, with ``client_cert_chain``: the verified
client certificate as PEM) to every request of a connection. The TLS handshake itself,
and the verification of the client certificate against ``ca.crt``, are Python's ``ssl``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.tls import TlsFiles, server_context

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class _WithTls:
    """An ASGI wrapper that adds one connection's TLS extension to each request's scope."""

    def __init__(self, app: App, tls: dict[str, Any]) -> None:
        self.app, self.tls = app, tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.tls}
        await self.app(scope, receive, send)


class _TlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding the ASGI TLS extension (module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        der = ssl_object.getpeercert(binary_form=True)
        chain = [] if not der else [ssl.DER_cert_to_PEM_cert(der)]
        self.app = _WithTls(self.app, {
            "client_cert_chain": chain, "server_cert": None, "client_cert_name": None,
            "client_cert_error": None, "tls_version": None, "cipher_suite": None})


def config(app: Any, files: TlsFiles, address: str, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` on ``address`` (``host:port``) with the TLS
    context of ``files``.

    Raises:
        api.tls.TlsMaterialError: a file of ``files`` is missing or malformed.
    """
    context = server_context(files)
    # uvicorn's access log writes each request's query string, where a client may have
    # put a V-nummer by mistake (the API refuses it, but the line would be written).
    options.setdefault("access_log", False)
    host, _, port = address.rpartition(":")
    return uvicorn.Config(app, host=host.strip("[]"), port=int(port), http=_TlsH11Protocol,
                          ssl_context_factory=lambda _config, _default: context, **options)


class ListenError(OSError):
    """The API's address cannot be listened on; the message names the address, the
    variable and the reason."""


def listen(address: str) -> socket.socket:
    """A socket bound to ``address`` (``host:port``), listening, for uvicorn
    (``Server.run(sockets=…)``): a port in use fails here, in one line, before anything
    is served.

    Raises:
        ListenError: in use, not allowed, or no such address.
    """
    host, _, port = address.rpartition(":")
    try:
        return socket.create_server((host.strip("[]"), int(port)), reuse_port=False,
                                    family=socket.AF_INET6 if ":" in host.strip("[]")
                                    else socket.AF_INET, backlog=2048)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ListenError(f"cannot listen on {address} (KBFLOW_API_ADDRESS): "
                          f"{reason.split(' (while')[0]}") from None
