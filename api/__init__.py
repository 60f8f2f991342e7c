"""The agencies' HTTP API (``kbflow api``): cases, events, inboxes, documents and
notifications for KBPS (RvdK), INDIGO (IND), ISTV (DT&V) and the other parties' systems.

It follows the NL API Design Rules (major version in the URI, ``API-Version`` on every
response, ``application/problem+json`` errors, 400 for invalid input listing every error,
the OpenAPI document published at ``/v1/openapi.json`` without authentication) and the
Digikoppeling REST API profile: mutual TLS, the caller named by the OIN in its client
certificate's subject ``serialNumber`` (``api.identity``).

Layout: ``api.app`` assembles the application from the routers in ``api.routes``;
``api.identity`` says who calls; ``api.problems`` turns every error into a problem;
``api.tls`` reads the TLS material and the OIN table, ``api.certs`` makes a development
set; ``api.server`` serves it with uvicorn.
"""

#: The API's full version, sent as ``API-Version`` on every response (ADR); its major
#: version is the ``/v1`` of every path.
API_VERSION = "1.0.0"
#: The prefix of every path.
PREFIX = "/v1"
