"""Who calls: the organisation named by the OIN in its client certificate (Digikoppeling).

The server (``api.server``) asks every client for a certificate and verifies it against
``ca.crt`` during the handshake; a certificate from another CA never gets this far. A
verified certificate reaches the application in the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, the client's first). Its
subject ``serialNumber`` is the caller's OIN, which the OIN table (``parties.json``)
maps to a party.

No certificate: 401 (only ``/v1/openapi.json`` is open to all). A certificate whose
subject has no OIN, or an OIN the table does not know: 403. Behind an FSC Inway
(``api.fsc``) the caller's OIN is the ``sub`` of the Inway's forwarded token instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from cryptography import x509
from fastapi import Depends, Request

from api import fsc
from api.problems import ApiProblem, ProblemType
from api.tls import PartyTable, oin_of
from kbflow.process import Party


@dataclass(frozen=True)
class Caller:
    """The calling organisation: its party, its OIN, and (for a GI) which one."""

    party: Party
    oin: str
    name: str = ""


def client_certificate(request: Request) -> x509.Certificate | None:
    """The verified client certificate of ``request``'s connection, or None."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    if not chain:
        return None
    return x509.load_pem_x509_certificate(chain[0].encode())


def party_table(request: Request) -> PartyTable:
    """The OIN table the application was made with (``api.app.create_app``)."""
    table = request.app.state.context.parties
    assert isinstance(table, PartyTable)
    return table


def caller(request: Request) -> Caller:
    """The caller, from its client certificate (a FastAPI dependency); in FSC mode
    (``KBFLOW_API_FSC_PUBLIC_KEYS``, ``api.fsc``) from the ``sub`` of the verified
    ``Fsc-Authorization`` token bound to that certificate (the Inway's).

    Raises:
        ApiProblem: 401 without a certificate, or in FSC mode without a valid token; 403
            for one without an OIN, or with an OIN the table does not know.
    """
    certificate = client_certificate(request)
    if certificate is None:
        raise ApiProblem(ProblemType.UNAUTHENTICATED,
                         "a client certificate is required (mutual TLS, Digikoppeling); "
                         "only /v1/openapi.json is open without one")
    fsc_keys = fsc.keys_file(request)
    # FSC mode: the certificate is the Inway's; the caller is its token's sub (api.fsc)
    oin = oin_of(certificate) if fsc_keys is None else fsc.caller_oin(
        request, certificate, fsc_keys)
    if oin is None:
        raise ApiProblem(ProblemType.UNKNOWN_OIN, "the client certificate's subject has no "
                         "serialNumber of 20 digits (the organisation's OIN)")
    entry = party_table(request).party_of(oin)
    if entry is None:
        raise ApiProblem(ProblemType.UNKNOWN_OIN, f"OIN {oin} is no party of this kbflow "
                         "(parties.json)")
    found = Caller(entry.party, entry.oin, entry.name)
    request.state.caller = found  # for the request's log line (api.app)
    return found


#: A route parameter that is the authenticated caller.
CallerDep = Annotated[Caller, Depends(caller)]
