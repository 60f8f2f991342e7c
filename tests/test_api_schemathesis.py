"""Schemathesis against the served OpenAPI document (issue 8): every operation, with
valid and invalid data generated from its schema, over real mutual TLS to the API on a
running worker. No response may be a 5xx, and every response must conform to the
document: its status, content type, headers and body schema; data that breaks the schema
must be refused (4xx).

The API runs in the test's event loop; schemathesis (sync, ``requests``) runs in a thread
and calls it over the network. Path parameters are fixed to a real case where the
operation has a ``caseRef``, so that generated bodies reach the case's rules, not only
its 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.client import Client
from temporalio.worker import Worker

from activities.outbox_store import OutboxStore
from api.certs import init_dev_certs
from api.tls import TlsFiles
from encryption.keys import KeyStore
from kbflow.process import Party
from kbflow.settings import Settings
from starter.cases import start_case
from tests.api_harness import ApiEndpoint, api_context_for, serve_api
from tests.factories import case_start

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
#: Generated requests per operation and generation mode (a few seconds per operation).
EXAMPLES = 12
#: Who calls: each operation as one of these, in turn (a sender, a recipient, a reporter
#: and a party outside most cases), so that both allowed and forbidden calls are made.
CALLERS = (Party.RVDK, Party.IND, Party.DTV, Party.VT)


def _caller(base_url: str, session: requests.Session,
            checks: list[Callable[..., Any]]) -> Callable[[schemathesis.Case], None]:
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, session=session, checks=checks,
                               verify=session.verify, cert=session.cert)
    return run


def _session(files: TlsFiles, party: Party) -> requests.Session:
    session = requests.Session()
    session.cert = (str(files.client_certificate(party)), str(files.client_key(party)))
    session.verify = str(files.ca)
    return session


def _fuzz(endpoint: ApiEndpoint, document: dict[str, Any],
          path_parameters: dict[str, str]) -> list[str]:
    """Run every operation of ``document``, each as the next of ``CALLERS``; the
    failures, one line each."""
    schema = schemathesis.openapi.from_dict(document)
    sessions = [_session(endpoint.files, party) for party in CALLERS]
    failures: list[str] = []
    for number, result in enumerate(schema.get_all_operations()):
        session = sessions[number % len(sessions)]
        if isinstance(result, Err):
            failures.append(f"the document has an invalid operation: {result.err()}")
            continue
        operation = result.ok()
        fixed = {name: value for name, value in path_parameters.items()
                 if name in operation.path}
        for mode, checks in ((GenerationMode.POSITIVE, CHECKS),
                             (GenerationMode.NEGATIVE, [*CHECKS, negative_data_rejection])):
            # negative data: every parameter may be the broken one
            given = fixed if mode is GenerationMode.POSITIVE else {}
            strategy = operation.as_strategy(mode, path_parameters=given or None)
            run = _caller(endpoint.base_url, session, checks)
            test = hypothesis.settings(
                max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )(hypothesis.given(case=strategy)(run))
            try:
                test()
            except hypothesis.errors.Unsatisfiable:
                continue  # no invalid request of this mode exists for the operation
            except (Exception, BaseExceptionGroup) as failure:  # one per failing check
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): "
                                f"{str(failure).splitlines()[0] if str(failure) else failure!r}")
    return failures


async def test_schemathesis_finds_no_5xx_and_no_response_off_the_schema(
        client: Client, worker: Worker, store: OutboxStore, keys: KeyStore,
        tmp_path: Path) -> None:
    files: TlsFiles = init_dev_certs(tmp_path / "api-tls")
    case = case_start(reporter=Party.VT, idempotency_key="schemathesis-case-0001")
    await start_case(client, Settings(data_dir=store.path.parent,
                                      task_queue=worker.task_queue), case)
    async with serve_api(api_context_for(client, store, keys, files), files) as endpoint:
        async with endpoint.anonymous() as anonymous:
            document = (await anonymous.get("/v1/openapi.json")).json()
        assert document["paths"], "the document lists the API's operations"
        failures = await asyncio.to_thread(_fuzz, endpoint, document,
                                           {"caseRef": case.case_ref})
    assert not failures, json.dumps(failures, indent=2)


def test_a_response_off_the_schema_is_caught() -> None:
    """The control: the checks this test relies on do fail a non-conforming response."""
    document = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
                "paths": {"/x": {"get": {"responses": {"200": {
                    "description": "ok", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["a"],
                        "properties": {"a": {"type": "integer"}}}}}}}}}}}
    schema = schemathesis.openapi.from_dict(document)
    [result] = schema.get_all_operations()
    assert isinstance(result, Ok)
    operation = result.ok()
    case = operation.Case()
    response = requests.Response()
    response.status_code = 200
    response._content = b'{"a": "not an integer"}'
    response.headers["Content-Type"] = "application/json"
    response.request = requests.Request("GET", "http://127.0.0.1/x").prepare()
    with pytest.raises(BaseExceptionGroup) as caught:
        case.validate_response(response, checks=[response_schema_conformance])
    assert any("Response violates schema" in str(failure)
               for failure in caught.value.exceptions)
