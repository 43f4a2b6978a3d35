"""POST /api/events's plain-ASGI fast path (issue 16 "Speed", console/api_ingest.py ``IngestFastPath``) answers
byte for byte as the FastAPI route: the same status, headers and body for accepted events (one object, an array,
JSON Lines), duplicates, conflicts, rejected events, bodies that are not events, bodies over the limit, missing,
unknown and powerless tokens — each sent to an app with the fast path and to one without it (``FAST_INGEST``
off), on the same store, with the event ids told apart so that each app's events are its own."""

from __future__ import annotations

import json

import pytest

from console import api_ingest
from engine.ingest import MAX_LINE_BYTES
from tests.integration.test_api import make_api

MAX_BODY = 4 * MAX_LINE_BYTES  # the route's limit for these apps: a body over it is refused with 413
_VARYING_HEADERS = {"date", "x-request-id"}
FAST, ROUTE = "fastq", "routq"  # each app's event id prefix, masked in its answers


@pytest.fixture
def two_apps(gov, monkeypatch):
    answered: list[bool] = []
    init = api_ingest.IngestFastPath.__init__

    def noting_init(self, app, **options):
        init(self, app, **options)
        respond = self.respond

        def noting(*args, **kwargs):
            answered.append(True)
            return respond(*args, **kwargs)
        self.respond = noting
    monkeypatch.setattr(api_ingest.IngestFastPath, "__init__", noting_init)
    monkeypatch.setattr(api_ingest, "FAST_INGEST", True)
    fast = make_api(gov, max_body_bytes=MAX_BODY)
    with fast.client:  # the front door read FAST_INGEST when create_app built it
        monkeypatch.setattr(api_ingest, "FAST_INGEST", False)
        route = make_api(gov, max_body_bytes=MAX_BODY)
        with route.client:
            token = fast.auth("alice")["Authorization"]
            yield fast, route, answered, token


def _answer(response, prefix: str) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in response.headers.items() if k.lower() not in _VARYING_HEADERS)
    return response.status_code, headers, response.content.replace(prefix.encode(), b"ID")


def _both(two_apps, make, headers, *, before=()):
    """Send ``make(prefix)`` (after each body of ``before``) to the fast app and to the route's app; their last
    answers, masked, and whether the fast path answered it."""
    fast, route, answered, _ = two_apps
    answers = []
    for api, prefix in ((fast, FAST), (route, ROUTE)):
        for earlier in before:
            assert api.post("/api/events", content=earlier(prefix), headers=headers).status_code in (200, 409, 422)
        answered.clear()
        answers.append(_answer(api.post("/api/events", content=make(prefix), headers=headers), prefix))
        if api is fast:
            took_fast = bool(answered)
    assert answered == [], "the route's app answered by the fast path"
    return answers[0], answers[1], took_fast


def _event(cid: str, status: str = "proposed", **fields) -> dict:
    return {"kind": "command", "id": cid, "type": "restart_service", "status": status, "autonomous": True,
            "at": "2026-11-20T10:00:00Z", **fields}


def _one(status: str = "proposed", **fields):
    return lambda p: json.dumps(_event(f"{p}-1", status, **fields)).encode()


def _array(p):
    return json.dumps([_event(f"{p}-a", "proposed"), _event(f"{p}-a", "approved"), _event(f"{p}-b")]).encode()


def _lines(p):
    return ("\n".join(json.dumps(e) for e in [_event(f"{p}-l"), {}, _event(f"{p}-m")]) + "\n").encode()


JSON = {"Content-Type": "application/json"}
CASES = [
    # (what, body, extra headers, bodies sent first, answered by the fast path)
    ("one event accepted", _one(), JSON, (), True),
    ("one event, no content type", _one(), {}, (), True),
    ("one event, json with a charset", _one(), {"Content-Type": "application/json; charset=utf-8"}, (), True),
    ("a duplicate", _one(), JSON, (_one(),), True),
    ("a conflict", _one(autonomous=False), JSON, (_one(),), True),
    ("a rejected event: bad status", _one("exploded"), JSON, (), True),
    ("a rejected event: unknown field", _one(extra=1), JSON, (), True),
    ("a rejected event: no kind", lambda p: json.dumps({"id": f"{p}-1"}).encode(), JSON, (), True),
    ("one event longer than a line may be", _one(note="x" * MAX_LINE_BYTES), JSON, (), True),
    ("an array", _array, JSON, (), True),
    ("JSON Lines", _lines, {"Content-Type": "application/x-ndjson"}, (), True),
    ("JSON Lines sent as JSON", _lines, JSON, (), True),
    ("bad JSON", lambda p: b"{not json", JSON, (), False),
    ("not UTF-8", lambda p: b"\xff\xfe{", JSON, (), False),
    ("empty", lambda p: b"", JSON, (), False),
    ("a JSON number", lambda p: b"42", JSON, (), False),
    ("over the body limit", lambda p: json.dumps([_event(f"{p}-{i}", note="y" * 1000)
                                                 for i in range(MAX_BODY // 1000)]).encode(), JSON, (), False),
]


@pytest.mark.parametrize("what,make,headers,before,fast", CASES, ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_the_route(two_apps, what, make, headers, before, fast):
    a, b, took_fast = _both(two_apps, make, {**headers, "Authorization": two_apps[3]}, before=before)
    assert a == b, what
    assert took_fast is fast


@pytest.mark.parametrize("what,authorization,status", [
    ("no token", None, 401), ("an unknown token", "Bearer gvc_nope", 401), ("another scheme", "Basic YTpi", 401),
    ("an operator without a role", "mallory", 403),
])
def test_refused_tokens_are_the_routes(two_apps, what, authorization, status):
    fast = two_apps[0]
    headers = dict(JSON)
    if authorization == "mallory":
        headers["Authorization"] = fast.auth("mallory")["Authorization"]
    elif authorization:
        headers["Authorization"] = authorization
    a, b, took_fast = _both(two_apps, _one(), headers)
    assert a == b and a[0] == status and not took_fast, what


def test_a_chunked_body_is_the_routes(two_apps):
    def chunked(p):
        return iter([json.dumps(_event(f"{p}-c")).encode()])  # no Content-Length: the route reads it
    a, b, took_fast = _both(two_apps, chunked, {**JSON, "Authorization": two_apps[3]})
    assert a == b and a[0] == 200 and not took_fast


def test_what_was_stored_is_the_same(two_apps, gov):
    for make in (_one(), _array, _lines):
        _both(two_apps, make, {**JSON, "Authorization": two_apps[3]})
    with gov.store.read() as conn:
        import sqlalchemy as sa
        rows = conn.execute(sa.text("SELECT command_id, status FROM command_events")).all()
    fast = sorted((cid.replace(FAST, "ID"), status) for cid, status in rows if cid.startswith(FAST))
    route = sorted((cid.replace(ROUTE, "ID"), status) for cid, status in rows if cid.startswith(ROUTE))
    assert fast == route and len(fast) == 6


# --- the front door does what the middleware it skips would have done --------------------------------------


def _spied(api) -> list[int]:
    """The statuses the front door's ingest answered itself (console/front_door.py)."""
    door, answered = api.client.app.front_door.ingest, []
    respond = door.respond

    async def noting(send, doc, status):
        answered.append(status)
        await respond(send, doc, status)
    door.respond = noting
    return answered


def test_a_host_a_loopback_bind_does_not_serve_is_refused_and_nothing_is_stored(gov):
    api = make_api(gov, allowed_hosts=frozenset({"testserver"}))  # TestClient's own Host
    with api.client:
        answered, token = _spied(api), api.auth("alice")["Authorization"]
        refused = api.post("/api/events", content=_one()("rebound"),
                           headers={**JSON, "Authorization": token, "Host": "rebound.example:4007"})
        assert (refused.status_code, refused.json()["error"], answered) == (421, "misdirected_request", [])
        assert api.post("/api/events", content=_one()("served"), headers={**JSON, "Authorization": token}
                        ).status_code == 200
        assert answered == [200]
    with gov.store.read() as conn:
        import sqlalchemy as sa
        ids = [r[0] for r in conn.execute(sa.text("SELECT command_id FROM command_events"))]
    assert ids == ["served-1"]


def test_an_outcome_through_the_front_door_shows_in_the_cached_state_at_once(gov):
    """The state document is cached (a minute here); an ingest answered at the front door refreshes it before its
    answer leaves, as limits.AfterChanges does for every other change."""
    from engine.clock import isoformat
    from storage import state_repo
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    api = make_api(gov, read_cache_seconds=60)
    with api.client:
        api.client.app.state.evaluator.stop(final=False)  # its evaluations refresh the cache too: not this test's
        answered, token = _spied(api), api.auth("alice")["Authorization"]
        granted = gov.gate.decide("restart_service")
        assert granted.decision == "allow"
        assert api.get("/api/governance/state").json()["grantsInFlight"] == 1
        outcome = {"kind": "command", "id": granted.grant_id, "type": "restart_service", "status": "succeeded",
                   "autonomous": True, "at": isoformat(gov.clock.now())}
        assert api.post("/api/events", json=outcome, headers={"Authorization": token}).status_code == 200
        assert answered == [200]
        assert api.get("/api/governance/state").json()["grantsInFlight"] == 0
