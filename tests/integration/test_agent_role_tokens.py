"""The `agent` role and token expiry over HTTP (issue 11 pt 6), on both stores: an agent's token may
ingest, ask the gate (with a request) and beat its lease, and is refused every governance power with a 403
naming the roles; a token past its expiry (judged by the injected clock) is a 401 saying when; a token
bound to an agent is identified as that agent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.clock import isoformat
from engine.domain import ACTION_ROLES, GOVERNANCE_ROLES
from engine.errors import InvalidInput
from engine.tokens import TokenIdentity
from tests.conftest import OPERATOR
from tests.integration.test_api import api, cmd, make_api, stored_commands  # noqa: F401 (the api fixture)

BOT = "deploy-bot"


@pytest.fixture
def bot(api):
    api.gov.grant_role(OPERATOR, BOT, "agent")
    return api.auth(BOT)


def test_an_agent_token_ingests_asks_the_gate_and_beats(api, bot, clock):
    sent = api.post("/api/events", json=[cmd(i, "succeeded", clock.now() - timedelta(minutes=1))
                                         for i in range(3)], headers=bot)
    assert sent.status_code == 200, sent.text
    assert sent.json()["accepted"] == 3 and len(stored_commands(api.gov.store)) == 3
    asked = api.post("/api/gate", json={"commandType": "restart_service", "request": True}, headers=bot)
    assert asked.status_code == 200, asked.text
    doc = asked.json()
    assert doc["decision"] == "needs_approval" and doc["requestId"]
    assert api.get(f"/api/actions/{doc['requestId']}").json()["request"]["requestedBy"] == BOT
    beat = api.post(f"/api/agents/{BOT}/heartbeat", headers=bot)
    assert beat.status_code == 200, beat.text


def test_an_agent_token_has_no_governance_power(api, bot, clock):
    api.gov.ingestor.ingest_objects([cmd(i, "failed", clock.now() - timedelta(seconds=10), ctype="scale_pool")
                                     for i in range(10)])
    api.gov.breakers.evaluate()
    event = api.get("/api/circuit-breaker/events/unresolved").json()[0]
    request_id = api.post("/api/gate", json={"commandType": "scale_pool", "request": True},
                          headers=bot).json()["requestId"]
    before = len(api.gov.audit_entries(limit=1000))
    state_before = api.get("/api/governance/state").json()
    refusals = {
        f"/api/circuit-breaker/events/{event['id']}/resolve": {"note": "it was me, all fine"},
        f"/api/actions/{request_id}/approve": {},
        "/api/governance/revert": {"reason": "x"},
        "/api/kill-switch": {"action": "engage", "reason": "x"},
        "/api/governance/run-cycle": None,
        "/api/circuit-breaker/events/cbe-none/resolve": {"note": "x"},  # refused before the lookup
    }
    for path, body in refusals.items():
        r = api.post(path, json=body, headers=bot)
        assert r.status_code == 403, (path, r.status_code, r.text)
        detail = r.json()["detail"]
        assert f"{BOT} holds agent" in detail and "role" in detail, (path, detail)
    patch = api.patch("/api/circuit-breaker/rules/High Error Rate", json={"enabled": False}, headers=bot)
    assert patch.status_code == 403 and "admin" in patch.json()["detail"]
    assert len(api.gov.audit_entries(limit=1000)) == before  # nothing changed
    assert api.get("/api/governance/state").json() == state_before
    assert state_before["unresolvedEvents"] >= 1 and not state_before["killSwitch"]["engaged"]
    assert api.get(f"/api/actions/{request_id}").json()["request"]["status"] == "pending"


def test_ingest_without_a_role_suggests_the_agent_role(api, clock):
    r = api.post("/api/events", json=[cmd(1, "succeeded", clock.now())], headers=api.auth("newbot"))
    assert r.status_code == 403 and "govcon roles grant newbot agent" in r.json()["detail"]


def test_the_agent_role_is_no_governance_role():
    assert "agent" not in GOVERNANCE_ROLES
    powers = {action for action, roles in ACTION_ROLES.items() if "agent" in roles}
    # over HTTP the gate needs no role; through the service's socket (client mode) reading and asking the
    # gate need one, which the agent role gives; nothing that changes governance is an agent's
    assert powers == {"ingest", "heartbeat", "read", "gate.ask"}


def test_the_cli_lets_an_agent_ingest(gov, cli, me, tmp_path, ev):
    gov.grant_role(OPERATOR, me, "agent")
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "command", "id": "c1", "type": "restart_service", "status": "failed", '
                    f'"autonomous": true, "at": "{isoformat(ev.base)}"}}\n')
    r = cli("ingest", str(path))
    assert r.code == 0, r.err
    assert "accepted 1" in r.out
    refused = cli("kill-switch", "engage", "--reason", "x")
    assert refused.code == 5 and "holds agent" in refused.err


# --- expiry and agent binding --------------------------------------------------------------------


def test_an_expired_token_is_refused_saying_when(api, clock):
    new = api.tokens.create(OPERATOR, OPERATOR, expires_in=timedelta(hours=1))
    assert new.expires_at == clock.now() + timedelta(hours=1)
    headers = {"Authorization": "Bearer " + new.secret}
    assert api.post("/api/governance/run-cycle", headers=headers).status_code == 200
    clock.advance(timedelta(minutes=59, seconds=59))
    assert api.post("/api/governance/run-cycle", headers=headers).status_code == 200
    clock.advance(timedelta(seconds=1))  # exactly at the expiry: expired
    for r in (api.post("/api/governance/run-cycle", headers=headers),
              api.post("/api/events", json=[], headers=headers),
              api.get("/api/governance/state", headers=headers)):  # a bad token is refused even for reads
        assert r.status_code == 401, r.text
        assert r.json()["detail"].startswith(f"the bearer token {new.id} expired at "
                                             f"{isoformat(new.expires_at)}")
    assert api.tokens.verify(new.secret) is None and api.tokens.identify(new.secret) is None
    [listed] = [t for t in api.tokens.list() if t["id"] == new.id]
    assert listed["expired"] and not listed["active"] and listed["expiresAt"] == isoformat(new.expires_at)


def test_expiry_is_judged_on_every_use_even_from_the_cache(gov, clock):
    tokens_api = make_api(gov)
    book = tokens_api.tokens
    book.cache_seconds = 3600  # a long cache must not outlive the expiry
    new = book.create(OPERATOR, OPERATOR, expires_in=timedelta(seconds=30))
    with tokens_api.client as client:
        headers = {"Authorization": "Bearer " + new.secret}
        assert client.post("/api/governance/run-cycle", headers=headers).status_code == 200
        clock.advance(timedelta(seconds=31))
        r = client.post("/api/governance/run-cycle", headers=headers)
        assert r.status_code == 401 and "expired at" in r.json()["detail"]


def test_a_token_without_expiry_never_expires_and_verify_still_names_the_operator(api, clock):
    new = api.tokens.create(OPERATOR, "carol")
    clock.advance(timedelta(days=3650))
    assert api.tokens.verify(new.secret) == "carol"
    assert api.tokens.identify(new.secret) == TokenIdentity("carol", None, None, new.id)


def test_a_token_bound_to_an_agent_is_identified_as_that_agent(api):
    new = api.tokens.create(OPERATOR, "bot-owner", agent=BOT, expires_in=timedelta(days=30))
    ident = api.tokens.identify(new.secret)
    assert (ident.operator, ident.agent, ident.expires_at) == ("bot-owner", BOT, new.expires_at)
    entry = api.gov.audit_entries(limit=1)[0]
    assert entry["action"] == "token.create" and entry["details"]["agent"] == BOT
    assert entry["details"]["expiresAt"] == isoformat(new.expires_at)


@pytest.mark.parametrize("kw, needle", [
    ({"expires_in": timedelta(0)}, "positive duration"), ({"expires_in": timedelta(seconds=-5)}, "positive"),
    ({"expires_in": timedelta(days=3_000_000)}, "9999"), ({"agent": "bad name"}, "agent 'bad name'"),
    ({"agent": "\x1b[2J"}, "is not a name"),
])
def test_bad_expiry_or_agent_is_refused_and_nothing_is_written(api, kw, needle):
    before = api.tokens.list()
    with pytest.raises(InvalidInput, match=needle.replace("(", r"\(")):
        api.tokens.create(OPERATOR, "carol", **kw)
    assert api.tokens.list() == before


def test_tokens_cli_create_with_expiry_and_agent_and_list(gov, cli, me, clock, capsys):
    gov.grant_role(OPERATOR, me, "admin")
    r = cli("tokens", "create", "bot-owner", "--expires-in", "30d", "--agent", BOT, "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["agent"] == BOT and doc["expiresAt"] == isoformat(clock.now() + timedelta(days=30))
    assert doc["token"].startswith("gvc_")
    listed = cli("tokens", "list")
    line = next(ln for ln in listed.out.splitlines() if ln.startswith(doc["id"]))
    assert f"agent {BOT}" in line and f"active until {doc['expiresAt']}" in line
    clock.advance(timedelta(days=31))
    line = next(ln for ln in cli("tokens", "list").out.splitlines() if ln.startswith(doc["id"]))
    assert f"EXPIRED {doc['expiresAt']}" in line
    listed_json = cli("tokens", "list", "--json").json()
    assert [t["expired"] for t in listed_json if t["id"] == doc["id"]] == [True]
    with pytest.raises(SystemExit) as exited:
        cli("tokens", "create", "x", "--expires-in=-1d")
    assert exited.value.code == 2 and "argument --expires-in: column 0: window must be positive" in capsys.readouterr().err
