"""The OpenAPI document: committed in ``api/openapi.json``, equal to the one served at
``/v1/openapi.json`` (NL API Design Rules: published, and kept under version control)."""

from __future__ import annotations

import json

from api.app import OPENAPI_FILE, openapi_document


def test_the_committed_openapi_document_is_the_served_one() -> None:
    assert OPENAPI_FILE.read_text(encoding="utf-8") == openapi_document(), (
        "api/openapi.json is stale: run `kbflow api --openapi > api/openapi.json`")


def test_every_path_is_under_the_major_version() -> None:
    document = json.loads(openapi_document())
    assert document["openapi"].startswith("3.")
    assert document["paths"]
    assert all(path.startswith("/v1/") for path in document["paths"])
