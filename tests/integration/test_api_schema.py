"""The OpenAPI document is complete: every route declares what it answers, and every answer the API gives
on a store with something behind each endpoint (tests/integration/api_seed.py) matches the document —
success and error bodies alike, checked with the document's own JSON Schema (what a generated client
would check). test_api.py's schemathesis run checks generated requests' answers against it too."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import jsonschema_rs
import pytest

from console.api import create_app
from engine.governance import Governance
from engine.tokens import TokenBook
from tests.conftest import OPERATOR
from tests.integration.api_seed import populate
from tests.integration.test_api import Api

JSON = "application/json"


def _operations(doc: dict):
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def test_every_route_declares_a_schema_for_its_success_answer(gov):
    doc = create_app(gov, require_auth_for_reads=False).openapi()
    missing = []
    for method, path, operation in _operations(doc):
        success = [code for code in operation["responses"] if code.startswith("2")]
        content = operation["responses"][success[0]].get("content", {}) if success else {}
        schemas = [media.get("schema") for media in content.values()]
        if not schemas or not all(schemas):
            missing.append(f"{method} {path}")
    assert not missing, missing
    assert len(list(_operations(doc))) >= 50


def test_no_success_answer_is_an_untyped_object(gov):
    """Each JSON answer names its model (a $ref, or a list of them): none is a bare `{}` or `object`."""
    doc = create_app(gov, require_auth_for_reads=False).openapi()
    for method, path, operation in _operations(doc):
        media = operation["responses"]["200"]["content"]
        if JSON not in media:
            continue
        schema = media[JSON]["schema"]
        schema = schema.get("items", schema)
        refs = [s for s in schema.get("anyOf", [schema]) if "$ref" in s]
        assert refs, (method, path, schema)


class Conformance:
    """An ASGI wrapper that checks each JSON answer against the app's OpenAPI document: the route's
    declared schema for that status (an undeclared status is a failure too)."""

    def __init__(self, app) -> None:
        self.app, self.problems, self.checked = app, [], set()
        self._validators: dict[tuple[str, str, str], object] = {}

    def validator(self, method: str, path: str, status: int):
        key = (method, path, str(status))
        if key not in self._validators:
            doc = self.app.openapi()
            responses = doc["paths"][path][method.lower()]["responses"]
            declared = responses.get(str(status))
            schema = declared and declared.get("content", {}).get(JSON, {}).get("schema")
            self._validators[key] = schema and jsonschema_rs.validator_for(
                {**schema, "components": doc["components"]})
        return self._validators[key]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status, chunks, media = [0], [], [""]

        async def record(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                media[0] = dict(message.get("headers", [])).get(b"content-type", b"").decode()
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)
        await self.app(scope, receive, record)
        route = scope.get("route")
        if route is None or not getattr(route, "include_in_schema", False) or not media[0].startswith(JSON):
            return
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        where = f"{scope['method']} {path} {status[0]}"
        validator = self.validator(scope["method"], path, status[0])
        if validator is None:
            self.problems.append(f"{where}: status not declared (or declared without a JSON schema)")
            return
        body = json.loads(b"".join(chunks))
        errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(body)]
        if errors:
            self.problems.append(f"{where}: " + "; ".join(errors[:5]))
        self.checked.add(where)


@pytest.fixture
def checked_api(store, clock):
    gov = Governance(store, clock)
    gov.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    tokens = TokenBook(gov.store, gov.clock, cache_seconds=0)
    app = create_app(gov, tokens=tokens, require_auth_for_reads=False, metrics_cache_seconds=0,
                     evaluate_interval=0.005)
    conformance = Conformance(app)
    from fastapi.testclient import TestClient
    api = Api(TestClient(conformance), gov, tokens)
    with api.client:
        yield api, conformance


def test_every_answer_on_a_populated_store_matches_the_document(checked_api):
    api, conformance = checked_api
    ids = populate(api)
    # the error answers too: unknown ids, refused tokens, invalid bodies
    api.get("/api/governance/proposals/prop-nope")
    api.get("/api/circuit-breaker/rules/No%20Such%20Rule")
    api.get("/api/agents/nobody")
    api.post("/api/governance/run-cycle")
    api.post("/api/gate", json={"commandType": 7})
    api.post("/api/events", content=b"{", headers=api.auth(OPERATOR))
    api.post(f"/api/governance/proposals/{ids.get('proposal', 'x')}/reject", json={"reason": "late"},
             headers=api.auth(OPERATOR))
    assert not conformance.problems, "\n".join(conformance.problems)
    assert len(conformance.checked) >= 50, sorted(conformance.checked)
