"""The API's front door (console/front_door.py) answers plain gate asks and heartbeats ahead of FastAPI and its
middleware, so it must do what that middleware would have done for them: refuse a Host a loopback bind does not
serve (nothing decided, nothing recorded), leave a body over the limit to the stack's 413, and refresh the cached
state document before an allow's answer leaves. Ingest's share is in test_ingest_fast_path.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from storage import state_repo
from tests.conftest import OPERATOR
from tests.integration.test_api import make_api

JSON = {"Content-Type": "application/json"}
ASK = json.dumps({"commandType": "restart_service", "agent": "bot"})


@pytest.fixture
def at_l4(gov):
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    return gov


def _answered_by_the_door(api) -> list[str]:
    """What the front door's gate and beat paths answered themselves (their fallback is not counted)."""
    door, seen = api.client.app.front_door, []
    gate, beats = door.gate, door.beats
    decide = gate.gov.gate.decide

    def noting_decide(*args, **kwargs):
        seen.append("gate")
        return decide(*args, **kwargs)
    gate.gov = type("Gov", (), {"gate": type("Gate", (), {"decide": staticmethod(noting_decide)})()})()
    answer = beats._answer

    async def noting_answer(*args, **kwargs):
        reply = await answer(*args, **kwargs)
        if reply is not None:
            seen.append("beat")
        return reply
    beats._answer = noting_answer
    return seen


def _decisions(gov) -> int:
    gov.actions.decision_log.flush()
    return len(gov.actions.decisions(since=gov.clock.now() - timedelta(days=1), limit=1000)["decisions"])


def test_a_host_a_loopback_bind_does_not_serve_gets_no_decision_and_no_beat(at_l4):
    gov = at_l4
    api = make_api(gov, allowed_hosts=frozenset({"testserver"}))  # TestClient's own Host
    with api.client:
        seen = _answered_by_the_door(api)
        beat = api.tokens.create(OPERATOR, "bot", agent="bot").secret
        gov.grant_role(OPERATOR, "bot", "agent")
        rebound = {"Host": "rebound.example:4007"}
        asked = api.post("/api/gate", content=ASK, headers={**JSON, **rebound})
        beaten = api.post("/api/agents/bot/heartbeat", headers={"Authorization": "Bearer " + beat, **rebound})
        assert [asked.status_code, beaten.status_code] == [421, 421] and seen == []
        assert _decisions(gov) == 0 and gov.agents.list()["agents"] == []
        assert api.post("/api/gate", content=ASK, headers=JSON).json()["decision"] == "allow"
        assert api.post("/api/agents/bot/heartbeat", headers={"Authorization": "Bearer " + beat}).status_code == 200
        assert seen == ["gate", "beat"]


def test_a_gate_body_over_the_limit_is_the_stacks_413(at_l4):
    api = make_api(at_l4, max_json_body_bytes=64)
    with api.client:
        seen = _answered_by_the_door(api)
        big = json.dumps({"commandType": "restart_service", "agent": "b" * 100})
        answer = api.post("/api/gate", content=big, headers=JSON)
        assert answer.status_code == 413 and answer.json()["error"] == "content_too_large" and seen == []
        assert _decisions(at_l4) == 0


def test_an_allow_at_the_front_door_shows_in_the_cached_state_at_once(at_l4):
    api = make_api(at_l4, read_cache_seconds=60)  # a cached state would be served a minute unless refreshed
    with api.client:
        seen = _answered_by_the_door(api)
        assert api.get("/api/governance/state").json()["grantsInFlight"] == 0
        assert api.post("/api/gate", content=ASK, headers=JSON).json()["decision"] == "allow"
        assert seen == ["gate"]
        assert api.get("/api/governance/state").json()["grantsInFlight"] == 1


def test_an_error_nobody_handled_is_the_stacks_500(at_l4, caplog):
    """Behind the front door the error middleware turned an unexpected exception into a 500 with a JSON body; at
    the door it still is (and is logged), for the gate and for a beat."""
    api = make_api(at_l4)
    with api.client:
        door = api.client.app.front_door

        def broken(*_args, **_kwargs):
            raise RuntimeError("a bug")
        door.gate.gov = type("Gov", (), {"gate": type("Gate", (), {"decide": staticmethod(broken)})()})()

        async def broken_answer(*_args, **_kwargs):
            raise RuntimeError("another bug")
        door.beats._answer = broken_answer
        secret = api.tokens.create(OPERATOR, "bot", agent="bot").secret
        asked = api.post("/api/gate", content=ASK, headers=JSON)
        beaten = api.post("/api/agents/bot/heartbeat", headers={"Authorization": "Bearer " + secret})
    for answer in (asked, beaten):
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal", "detail": "internal error; the server log has the details"}
    assert [r.message for r in caplog.records].count("unhandled error at the front door") == 2


# --- requests the server's framing would refuse, sent to the app itself (found in review) --------------------


def _call(app, path: str, headers: list[tuple[bytes, bytes]], messages: list[dict]) -> list[dict]:
    """Run one request through the ASGI app with these headers and these receive messages; what it sent."""
    import asyncio
    sent: list[dict] = []
    queue = list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    return sent


def test_two_authorization_headers_on_ingest_are_the_stacks_and_the_first_counts(gov):
    api = make_api(gov)
    with api.client:
        answered = []
        ingest = api.client.app.front_door.ingest
        respond = ingest.respond

        async def noting(send, doc, status):
            answered.append(status)
            await respond(send, doc, status)
        ingest.respond = noting
        token = api.auth("alice")["Authorization"]
        event = json.dumps({"kind": "command", "id": "twice", "type": "restart_service", "status": "proposed",
                            "autonomous": True, "at": "2026-11-20T10:00:00Z"})
        answer = api.post("/api/events", content=event,
                          headers=[("Content-Type", "application/json"), ("Authorization", "Bearer gvc_nope"),
                                   ("Authorization", token)])
        assert answer.status_code == 401 and answered == []
    with gov.store.read() as conn:
        import sqlalchemy as sa
        assert conn.execute(sa.text("SELECT count(*) FROM command_events")).scalar_one() == 0


def test_a_gate_body_longer_than_it_declared_is_the_stacks_413(at_l4):
    api = make_api(at_l4, max_json_body_bytes=64)
    with api.client:
        seen = _answered_by_the_door(api)
        big = json.dumps({"commandType": "restart_service", "agent": "b" * 200}).encode()
        sent = _call(api.client.app, "/api/gate", [(b"content-type", b"application/json"), (b"content-length", b"10")],
                     [{"type": "http.request", "body": big, "more_body": False}])
        assert sent[0]["status"] == 413 and seen == []
        assert _decisions(at_l4) == 0


def test_a_beat_cut_off_before_its_body_renews_nothing(gov):
    api = make_api(gov)
    with api.client:
        secret = api.tokens.create(OPERATOR, "bot", agent="bot").secret
        gov.grant_role(OPERATOR, "bot", "agent")
        headers = [(b"authorization", b"Bearer " + secret.encode()), (b"content-length", b"12"),
                   (b"content-type", b"application/json")]
        sent = _call(api.client.app, "/api/agents/bot/heartbeat", headers, [{"type": "http.disconnect"}])
        assert sent == [] and gov.agents.list()["agents"] == []
        assert api.post("/api/agents/bot/heartbeat", headers={"Authorization": "Bearer " + secret}).status_code == 200
        assert [a["name"] for a in gov.agents.list()["agents"]] == ["bot"]
