"""POST /api/gate's plain-ASGI fast path (issue 12 "Speed", console/api_actions.py ``GateFastPath``) answers byte for
byte as the FastAPI route: the same status, headers and body for allows, refusals, denials, bodies the model
refuses, asks that need a token, other content types — each sent to an app with the fast path and to one
without it, on the same store."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from console import api_actions
from engine.governance import Governance
from engine.policies import load_policies
from storage import state_repo
from tests.conftest import OPERATOR
from tests.integration.test_api import make_api

POLICIES = {"careful": {"command_types": ["scale_pool"], "confidence_threshold": 0.9, "max_per_day": 100}}
JSON = {"Content-Type": "application/json"}
#: what differs between two asks by nature: each allow's grant id, and each answer's request id and date
_GRANT = re.compile(rb'"gr-[0-9A-Za-z_-]+"')
_VARYING_HEADERS = {"date", "x-request-id"}


@pytest.fixture
def two_apps(store, clock, monkeypatch):
    gov = Governance(store, clock, policies=load_policies(POLICIES), evaluate_on_ingest=False)
    gov.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service", "scale_pool"])
    taken: list[bool] = []
    plain = api_actions.GateFastPath._plain

    def noting(self, scope, raw):
        body = plain(self, scope, raw)
        taken.append(body is not None)
        return body
    monkeypatch.setattr(api_actions.GateFastPath, "_plain", noting)
    monkeypatch.setattr(api_actions, "FAST_GATE", True)
    fast = make_api(gov)
    monkeypatch.setattr(api_actions, "FAST_GATE", False)
    route = make_api(gov)
    with fast.client, route.client:
        yield fast, route, taken, gov
    gov.actions.decision_log.flush()


def _answer(response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in response.headers.items() if k.lower() not in _VARYING_HEADERS)
    return response.status_code, headers, _GRANT.sub(b'"gr-X"', response.content)


CASES = [
    # (what, body bytes, headers, answered by the fast path)
    ("allow", {"commandType": "restart_service", "agent": "bot", "confidence": 0.95}, JSON, True),
    ("allow without an agent", {"commandType": "restart_service"}, JSON, True),
    ("allow with a service and a class", {"commandType": "restart_service", "service": "api",
                                          "actionClass": "careful"}, JSON, True),
    ("needs approval: not whitelisted", {"commandType": "tune_pool", "agent": "bot"}, JSON, True),
    ("needs approval: policy, with its budget", {"commandType": "scale_pool", "confidence": 0.5}, JSON, True),
    ("explicit request false", {"commandType": "tune_pool", "request": False}, JSON, True),
    ("an integer confidence", {"commandType": "restart_service", "confidence": 1}, JSON, True),
    ("a name the gate refuses", {"commandType": "restart_service", "agent": "two words"}, JSON, None),
    ("a string confidence", {"commandType": "restart_service", "confidence": "0.9"}, JSON, False),
    ("a boolean confidence", {"commandType": "restart_service", "confidence": True}, JSON, False),
    ("an unknown field", {"commandType": "restart_service", "extra": 1}, JSON, False),
    ("no command type", {"agent": "bot"}, JSON, False),
    ("a list", [1, 2], JSON, False),
    ("not JSON", b"{nope", JSON, False),
    ("empty", b"", JSON, False),
    ("request without a token", {"commandType": "tune_pool", "request": True}, JSON, False),
    ("another content type", {"commandType": "restart_service"}, {"Content-Type": "text/plain"}, False),
    ("json with a charset", {"commandType": "restart_service"}, {"Content-Type": "application/json; charset=utf-8"},
     False),
    ("a token", {"commandType": "restart_service"}, {**JSON, "Authorization": "Bearer not-a-token"}, False),
]


@pytest.mark.parametrize("what,body,headers,fast", CASES, ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_the_route(two_apps, what, body, headers, fast):
    fast_api, route_api, taken, _ = two_apps
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    taken.clear()
    a = _answer(fast_api.client.post("/api/gate", content=raw, headers=headers))
    assert taken, "the fast endpoint was not reached"
    if fast is not None:
        assert taken == [fast]
    b = _answer(route_api.client.post("/api/gate", content=raw, headers=headers))
    assert a == b, what


def test_the_kill_switch_and_the_mode_answer_alike(two_apps):
    fast_api, route_api, taken, gov = two_apps
    raw = json.dumps({"commandType": "restart_service", "agent": "bot"}).encode()
    with gov.store.write() as conn:
        state_repo.update_state(conn, kill_switch_engaged=True, kill_switch_by="ops", kill_switch_reason="drill")
    a = _answer(fast_api.client.post("/api/gate", content=raw, headers=JSON))
    b = _answer(route_api.client.post("/api/gate", content=raw, headers=JSON))
    assert a == b and b"kill switch engaged" in a[2] and taken == [True]


def test_other_methods_and_the_schema_are_the_routes(two_apps):
    fast_api, route_api, _, _ = two_apps
    assert _answer(fast_api.client.get("/api/gate")) == _answer(route_api.client.get("/api/gate"))
    schema_fast, schema_route = fast_api.client.get("/openapi.json"), route_api.client.get("/openapi.json")
    assert schema_fast.status_code == 200 and schema_fast.json() == schema_route.json()
