"""Agents and their leases on both stores (DESIGN.md "Agents and leases"): heartbeats judged by the
store's clock, the gate's needs_approval for a lapsed lease, one alert per lapse with grants in flight,
the heartbeat reply (autonomy, killSwitch, mode), tokens bound to an agent, `govcon agents`, and the
kill switch's drain in `govcon status`."""

from __future__ import annotations

import inspect
import re
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from engine.alerts import load_sinks
from engine.clock import isoformat
from engine.errors import InvalidInput, PermissionDenied
from engine.governance import Governance
from storage import audit_repo, state_repo, tables
from tests.conftest import OPERATOR
from tests.integration.test_api import make_api

BOT = "rollback-bot"
AGENT_OPERATORS = (BOT, "log-bot", "old-bot", "never-beat", "bot-owner")
SINKS = load_sinks({"sinks": [{"name": "chat", "type": "webhook", "url": "http://127.0.0.1:9/hook"}]})


def at_l4(gov: Governance) -> Governance:
    gov.init_store(OPERATOR, phase_started=gov.clock.now() - timedelta(days=200))
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service", "rotate_logs"])
    gov.grant_role(OPERATOR, OPERATOR, "on-call")
    gov.grant_role(OPERATOR, OPERATOR, "incident-commander")
    for agent in AGENT_OPERATORS:  # heartbeats need the agent role (engine/domain.py)
        gov.grant_role(OPERATOR, agent, "agent")
    return gov


@pytest.fixture
def lgov(store, clock):
    """At L4 with restart_service whitelisted, alerts going to a (never delivered) webhook's outbox."""
    gov = at_l4(Governance(store, clock, sinks=SINKS))
    yield gov
    gov.agents.flush()  # no beats left for the background flusher once the store is gone


def ask(gov, agent: str | None = BOT, ctype: str = "restart_service"):
    return gov.gate.decide(ctype, agent=agent)


def outbox(gov) -> list:
    t = tables.alert_outbox
    with gov.store.read() as conn:
        return conn.execute(sa.select(t.c.title, t.c.severity, t.c.kind).order_by(t.c.id)).all()


def audited(gov, action: str) -> list:
    with gov.store.read() as conn:
        return [e for e in audit_repo.list_entries(conn, limit=1000) if e.action == action]


# --- the lease and the gate ------------------------------------------------------------------


def test_a_lapsed_lease_needs_approval_and_alerts_once_per_lapse(lgov, clock):
    reply = lgov.agents.beat(BOT, BOT, ttl=60)
    assert reply["registered"] and reply["leaseExpiresAt"] == isoformat(clock.now() + timedelta(seconds=60))
    granted = ask(lgov)
    assert granted.decision == "allow"
    clock.advance(timedelta(seconds=59))
    assert ask(lgov, ctype="rotate_logs").decision == "allow"  # a second before the lease ends: still live
    assert lgov.agents.alert_lapses() == 0
    clock.advance(timedelta(seconds=1))  # at expiry the lease is over
    lapsed = ask(lgov)
    assert lapsed.decision == "needs_approval", lapsed
    assert BOT in lapsed.reason and "lapsed at 2026-11-20T12:01:00Z" in lapsed.reason
    assert lapsed.extra["leaseLapsedAt"] == "2026-11-20T12:01:00Z"
    assert ask(lgov, agent=None).decision == "allow"  # an ask naming no agent is not a lease's business

    assert lgov.agents.alert_lapses() == 1
    assert lgov.agents.alert_lapses() == 0  # the same lapse: not repeated
    clock.advance(timedelta(minutes=5))
    assert lgov.agents.alert_lapses() == 0
    lost = [r for r in outbox(lgov) if "lost" in r.title]
    assert [(r.title, r.severity, r.kind) for r in lost] == [
        (f"Agent {BOT} lost with 2 actions in flight", "high", "trigger")]
    [entry] = audited(lgov, "agent.lapse")
    assert entry.target == BOT and entry.details["inFlight"] == 2

    back = lgov.agents.beat(BOT, BOT)  # it returns: audited, the alert resolved, autonomy again
    assert back["autonomy"] == "granted" and not back["registered"] and back["beats"] == 2
    assert audited(lgov, "agent.return")[0].details["lapsedAt"] == "2026-11-20T12:01:00Z"
    assert [r.kind for r in outbox(lgov) if BOT in r.title] == ["trigger", "resolve"]
    assert ask(lgov, ctype="rotate_logs").decision == "allow"
    clock.advance(timedelta(seconds=61))  # a second lapse is a new alert
    assert lgov.agents.alert_lapses() == 1
    assert len(audited(lgov, "agent.lapse")) == 2


def test_beats_far_from_the_lease_s_end_are_not_written_and_never_lengthen_it(lgov, clock, store):
    """Every 10 s with a 60 s TTL: a beat writes the lease once at most half of it is left; the ones
    between answer with the stored expiry (what the gate judges), and their count is group-committed."""
    start = clock.now()
    replies = []
    for _ in range(4):  # at 0, 10, 20, 30 s
        replies.append(lgov.agents.beat(BOT, BOT))
        clock.advance(timedelta(seconds=10))
    assert [r["leaseExpiresAt"] for r in replies] == [isoformat(start + timedelta(seconds=s)) for s in (60, 60, 60, 90)]
    with store.read() as conn:
        row = conn.execute(sa.select(tables.agents).where(tables.agents.c.name == BOT)).one()
    assert row.lease_expires_at == start + timedelta(seconds=90) and row.beats == 2  # two written at once
    shown = lgov.agents.show(BOT)  # the two answered from a read are recorded by the group commit
    assert (shown["beats"], shown["lastBeatAt"]) == (4, isoformat(start + timedelta(seconds=30)))
    # the agent stops after its beat at 30 s: the lease ends at 90 s, as stored, never later
    clock.set(start + timedelta(seconds=89))
    assert ask(lgov).decision == "allow"
    clock.set(start + timedelta(seconds=90))
    assert ask(lgov).decision == "needs_approval"
    # a beat that changes the TTL is written at once, also to shorten the lease
    clock.set(start + timedelta(seconds=91))
    lgov.agents.beat(BOT, BOT, ttl=60)
    short = lgov.agents.beat(BOT, BOT, ttl=10)
    assert short["leaseExpiresAt"] == isoformat(start + timedelta(seconds=101))
    clock.set(start + timedelta(seconds=101))
    assert ask(lgov).decision == "needs_approval"


def test_beats_answered_from_a_read_are_recorded_within_seconds(lgov, clock, store):
    lgov.agents.idle_seconds = 1.0  # 30 s in a server: its thread is not started again on the event loop
    lgov.agents.beat(BOT, BOT)
    clock.advance(timedelta(seconds=10))
    lgov.agents.beat(BOT, BOT)  # answered from a read; recorded by the background group commit

    def stored_beats() -> int:
        with store.read() as conn:
            return conn.execute(sa.select(tables.agents.c.beats).where(tables.agents.c.name == BOT)).scalar_one()
    deadline = time.monotonic() + 30
    while stored_beats() != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored_beats() == 2
    deadline = time.monotonic() + 10  # with nothing waiting, the writer thread ends
    while lgov.agents._flusher is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lgov.agents._flusher is None


def test_a_lapse_without_grants_in_flight_raises_no_alert(lgov, clock):
    lgov.agents.beat(BOT, BOT, ttl=5)
    clock.advance(timedelta(seconds=6))
    assert ask(lgov).decision == "needs_approval"
    assert lgov.agents.alert_lapses() == 0
    assert not [r for r in outbox(lgov) if "lost" in r.title]


def test_an_agent_that_never_beat_is_lease_less_unless_require_lease(store, clock):
    loose = at_l4(Governance(store, clock))
    assert ask(loose, agent="never-beat").decision == "allow"
    strict = Governance(store, clock, agent_options={"require_lease": True})
    d = ask(strict, agent="never-beat")
    assert d.decision == "needs_approval" and "never-beat holds no lease" in d.reason and "require_lease" in d.reason
    assert ask(strict, agent=None).decision == "allow"
    strict.agents.beat("never-beat", "never-beat")
    assert ask(strict, agent="never-beat").decision == "allow"


def test_the_lease_is_judged_again_when_the_grant_is_written(lgov, clock):
    """The allow is judged twice (read, then under the write lock): both see the lease."""
    lgov.agents.beat(BOT, BOT, ttl=5)
    clock.advance(timedelta(seconds=5))
    with lgov.store.write() as conn:
        from engine.gate import Ask
        state = state_repo.get_state(conn)
        assert lgov.gate.judge(conn, Ask("restart_service", agent=BOT), clock.now()).decision == "needs_approval"
        assert lgov.agents.check(conn, state, Ask("restart_service", agent=BOT), clock.now()) is not None


def test_a_heartbeat_needs_the_agent_role(lgov):
    with pytest.raises(PermissionDenied, match="heartbeats needs the role agent; nobody-bot holds no role"):
        lgov.agents.beat("nobody-bot", "nobody-bot")
    assert lgov.agents.list()["agents"] == []


def test_bad_heartbeats_are_refused_and_write_nothing(lgov):
    for ttl in (0, 4, 3601, True, "60", float("nan")):
        with pytest.raises(InvalidInput, match="ttl"):
            lgov.agents.beat(BOT, BOT, ttl=ttl)
    with pytest.raises(InvalidInput, match="agent"):
        lgov.agents.beat("bad name", "bad name")
    with pytest.raises(PermissionDenied, match=f"bound to agent {BOT}.*other-bot"):
        lgov.agents.beat(BOT, "other-bot")
    assert lgov.agents.list()["agents"] == []
    assert audited(lgov, "agent.register") == []


# --- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def api(lgov):
    api = make_api(lgov)
    with api.client:
        yield api


def test_the_heartbeat_reply_carries_autonomy_kill_switch_and_mode(api, lgov, clock):
    bot = api.auth(BOT)
    assert api.get(f"/api/agents/{BOT}").status_code == 404  # unknown until its first beat
    r = api.post(f"/api/agents/{BOT}/heartbeat", headers=bot)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert {k: doc[k] for k in ("agent", "autonomy", "mode", "leaseExpiresAt", "registered")} == {
        "agent": BOT, "autonomy": "granted", "mode": "normal", "registered": True,
        "leaseExpiresAt": isoformat(clock.now() + timedelta(seconds=60))}
    assert doc["killSwitch"]["engaged"] is False and "lease live until" in doc["reason"]
    shown = api.get(f"/api/agents/{BOT}").json()
    assert (shown["live"], shown["beats"], shown["lastOperator"]) == (True, 1, BOT)
    assert [e.target for e in audited(lgov, "agent.register")] == [BOT]

    # changes through the server are in the very next reply (beats answered from memory included)
    me = api.auth(OPERATOR)

    def change(path: str, body: dict) -> None:
        r = api.post(path, json=body, headers=me)
        assert r.status_code == 200, r.text
    doc = api.post(f"/api/agents/{BOT}/heartbeat", headers=bot).json()  # answered from memory
    assert (doc["autonomy"], doc["beats"]) == ("granted", 2)
    change("/api/mode", {"mode": "minimal", "reason": "degraded for the drill"})
    doc = api.post(f"/api/agents/{BOT}/heartbeat", json={"ttl": 30}, headers=bot).json()
    assert (doc["autonomy"], doc["mode"]) == ("granted", "minimal") and "minimal" in doc["reason"]
    assert doc["leaseExpiresAt"] == isoformat(clock.now() + timedelta(seconds=30))
    doc = api.post(f"/api/agents/{BOT}/heartbeat", json={"ttl": 30}, headers=bot).json()  # from memory
    assert (doc["mode"], doc["beats"]) == ("minimal", 4)
    change("/api/mode", {"mode": "read_only", "reason": "observe only"})
    doc = api.post(f"/api/agents/{BOT}/heartbeat", json={"ttl": 30}, headers=bot).json()
    assert (doc["autonomy"], doc["mode"]) == ("suspended", "read_only")
    change("/api/mode", {"mode": "normal", "reason": "over"})
    change("/api/kill-switch", {"action": "engage", "reason": "runaway agent"})
    doc = api.post(f"/api/agents/{BOT}/heartbeat", json={"ttl": 30}, headers=bot).json()
    assert doc["autonomy"] == "suspended" and "kill switch engaged by alice: runaway agent" in doc["reason"]
    assert doc["killSwitch"]["engaged"] is True and doc["killSwitch"]["by"] == OPERATOR
    assert len(audited(lgov, "agent.register")) == 1  # renewals are bookkeeping, not audit entries
    listed = api.get("/api/agents").json()["agents"]
    assert [(a["name"], a["beats"], a["live"]) for a in listed] == [(BOT, 6, True)]


def test_a_change_made_outside_the_server_is_in_the_replies_within_state_seconds(api, lgov, clock, store):
    """Another process engages the kill switch (here: straight into the store, past the server): beats
    answered from memory may say "granted" for at most STATE_SECONDS, and none of them counts as the
    drain's acknowledgement; the first beat that sees the engage is written and does."""
    from engine.agents import STATE_SECONDS
    bot = api.auth(BOT)
    assert api.post(f"/api/agents/{BOT}/heartbeat", headers=bot).json()["registered"]
    clock.advance(timedelta(seconds=10))
    lgov.overrides.engage_kill_switch(OPERATOR, "from the CLI")
    engaged = time.monotonic()
    clock.advance(timedelta(seconds=1))
    told = []
    while True:
        doc = api.post(f"/api/agents/{BOT}/heartbeat", headers=bot).json()
        told.append(doc["autonomy"])
        if doc["autonomy"] == "suspended":
            break
        assert time.monotonic() < engaged + STATE_SECONDS + 2.0, told  # a deadline, with room for a slow machine
        lgov.agents.flush()  # the beats answered from memory, recorded
        assert not lgov.status()["drain"]["agentsAcknowledged"]  # a "granted" is no acknowledgement
    assert told[-1] == "suspended" and "from the CLI" in doc["reason"]
    drain = lgov.status()["drain"]
    assert drain["agentsAcknowledged"] == 1 and drain["agentsNotBeaten"] == []
    lgov.agents.flush()


def test_a_token_bound_to_another_agent_is_refused_naming_both(api, lgov):
    r = api.post("/api/agents/other-bot/heartbeat", headers=api.auth(BOT))
    assert r.status_code == 403
    assert BOT in r.text and "other-bot" in r.text
    assert api.get("/api/agents").json()["agents"] == []
    assert api.post(f"/api/agents/{BOT}/heartbeat").status_code == 401  # no token
    assert api.post(f"/api/agents/{BOT}/heartbeat", headers={"Authorization": "Bearer gvc_nope"}).status_code == 401


@pytest.mark.skipif("agent" not in inspect.signature(
    __import__("engine.tokens", fromlist=["TokenBook"]).TokenBook.create).parameters,
    reason="TokenBook.create(..., agent=) is another helper's part (tokens bound to an agent)")
def test_a_token_bound_to_an_agent_beats_for_that_agent_only(api, lgov):
    token = lgov.tokens.create(OPERATOR, "bot-owner", agent=BOT).secret  # type: ignore[call-arg]
    headers = {"Authorization": "Bearer " + token}
    assert api.post(f"/api/agents/{BOT}/heartbeat", headers=headers).status_code == 200
    r = api.post("/api/agents/bot-owner/heartbeat", headers=headers)
    assert r.status_code == 403 and BOT in r.text and "bot-owner" in r.text


def test_a_token_bound_to_an_agent_asks_the_gate_for_that_agent_only(api, lgov, clock):
    """POST /api/gate used the body's agent, or else the token's operator, never the agent the token is bound
    to: with rollback-bot's lease lapsed, its token got allow (and grants in another name) by naming no agent
    or another, live one. Now the bound agent is the asker (its lease judged), and naming another is a 403."""
    token = lgov.tokens.create(OPERATOR, "bot-owner", agent=BOT).secret
    headers = {"Authorization": "Bearer " + token}
    assert api.post(f"/api/agents/{BOT}/heartbeat", headers=headers).status_code == 200
    assert api.post("/api/agents/log-bot/heartbeat", headers=api.auth("log-bot")).status_code == 200
    lgov.agents.flush()
    clock.advance(timedelta(seconds=61))  # rollback-bot's lease lapses; log-bot beats on
    assert api.post("/api/agents/log-bot/heartbeat", headers=api.auth("log-bot")).status_code == 200
    lgov.agents.flush()
    unnamed = api.post("/api/gate", json={"commandType": "restart_service"}, headers=headers)
    assert unnamed.status_code == 200 and unnamed.json()["decision"] == "needs_approval", unnamed.text
    assert BOT in unnamed.json()["reason"]
    other = api.post("/api/gate", json={"commandType": "restart_service", "agent": "log-bot"}, headers=headers)
    assert other.status_code == 403 and BOT in other.text and "log-bot" in other.text
    named = api.post("/api/gate", json={"commandType": "restart_service", "agent": BOT}, headers=headers)
    assert named.json()["decision"] == "needs_approval"
    live = api.post("/api/gate", json={"commandType": "restart_service", "agent": "log-bot"},
                    headers=api.auth("log-bot"))
    assert live.json()["decision"] == "allow"  # a token bound to no agent names one, as before (DESIGN.md)


def test_a_token_bound_to_an_agent_asks_as_that_agent_through_api_rpc_too(api, lgov, clock):
    """POST /api/rpc (client mode over HTTP) ran gate.decide and govcon run's decide with whatever agent the
    body named: the binding POST /api/gate enforces was bypassed there."""
    import json as jsonlib

    from console.rpc import decode
    token = lgov.tokens.create(OPERATOR, "bot-owner", agent=BOT).secret
    lgov.grant_role(OPERATOR, "bot-owner", "agent")
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}

    def rpc(method: str, args: list, kwargs: dict) -> dict:
        r = api.post("/api/rpc", content=jsonlib.dumps({"m": method, "a": args, "k": kwargs}), headers=headers)
        assert r.status_code == 200, r.text
        return jsonlib.loads(r.content[4:])
    refused = rpc("gate.decide", ["restart_service"], {"agent": "log-bot"})
    assert refused["e"]["type"] == "PermissionDenied" and BOT in refused["e"]["message"]
    plan = {"command_type": "restart_service", "command": ["true"], "agent": "log-bot"}
    refused = rpc("run_port", ["decide"], {"plan": plan, "request": False, "take_grant": False})
    assert refused["e"]["type"] == "PermissionDenied" and "log-bot" in refused["e"]["message"]
    asked = decode(rpc("gate.decide", ["restart_service"], {})["r"], allow_classes=True)
    assert asked.decision == "allow" and asked.extra["agent"] == BOT  # the grant is the bound agent's
    # `govcon gate` without --agent names its operator: that is the token's own agent, not another
    mine = decode(rpc("gate.decide", ["restart_service"], {"agent": "bot-owner"})["r"], allow_classes=True)
    assert mine.decision == "allow" and mine.extra["agent"] == BOT


def test_a_token_whose_operator_holds_no_role_cannot_ask_the_gate(api, lgov):
    """As on the socket (gate.ask): a roleless token could queue action requests for any agent, paging
    approvers. Without a token on loopback the gate still answers (reads are open there)."""
    roleless = {"Authorization": "Bearer " + lgov.tokens.create(OPERATOR, "nobody").secret}
    refused = api.post("/api/gate", json={"commandType": "restart_service", "request": True}, headers=roleless)
    assert refused.status_code == 403 and "nobody" in refused.text, refused.text
    assert lgov.actions.list(pending=True)["requests"] == []
    assert api.post("/api/gate", json={"commandType": "restart_service"}).status_code == 200


def test_the_agent_s_clock_is_ignored(api, clock):
    """Skew: the lease runs from the store's now, whatever the agent's Date header or body claim."""
    bot = api.auth(BOT)
    r = api.post(f"/api/agents/{BOT}/heartbeat", headers={**bot, "Date": "Tue, 01 Jan 2030 00:00:00 GMT"})
    assert r.json()["leaseExpiresAt"] == isoformat(clock.now() + timedelta(seconds=60))
    assert r.json()["beatAt"] == isoformat(clock.now())
    for body in ({"at": "2030-01-01T00:00:00Z"}, {"leaseExpiresAt": "2030-01-01T00:00:00Z"}):
        refused = api.post(f"/api/agents/{BOT}/heartbeat", json=body, headers=bot)
        assert refused.status_code == 422 and next(iter(body)) in refused.text
    for ttl in (0, 3601, "60", True):
        refused = api.post(f"/api/agents/{BOT}/heartbeat", json={"ttl": ttl}, headers=bot)
        assert refused.status_code == 422 and "ttl" in refused.text
    assert api.get(f"/api/agents/{BOT}").json()["beats"] == 1  # nothing refused was written
    assert api.post("/api/agents/bad%20name/heartbeat", headers=bot).status_code in (403, 422)


# --- the CLI and the drain -------------------------------------------------------------------


def test_agents_list_and_show(lgov, cli, clock):
    assert cli("agents", "list").out.startswith("no agents yet")
    lgov.agents.beat(BOT, BOT)
    lgov.agents.beat("log-bot", "log-bot", ttl=10)
    g = ask(lgov)
    clock.advance(timedelta(seconds=20))
    r = cli("agents", "list")
    assert r.code == 0, r.err
    lines = {line.split()[0]: line.split() for line in r.out.splitlines()[1:]}
    assert lines["log-bot"][1] == "LAPSED" and lines[BOT][1] == "live" and lines[BOT][-1] == "1"
    doc = cli("agents", "list", "--json").json()
    assert [(a["name"], a["live"], a["inFlight"]) for a in doc["agents"]] == [("log-bot", False, 0), (BOT, True, 1)]
    shown = cli("agents", "show", BOT, "--json").json()
    assert shown["grantsInFlight"][0]["grantId"] == g.grant_id and shown["lastBeatAt"] == "2026-11-20T12:00:00Z"
    text = cli("agents", "show", BOT).out
    assert "live until 2026-11-20T12:01:00Z" in text and g.grant_id in text
    missing = cli("agents", "show", "nobody")
    assert missing.code != 0 and "no agent 'nobody'" in missing.err


def test_the_kill_switch_drain_in_status(lgov, cli, clock):
    lgov.agents.beat(BOT, BOT)
    lgov.agents.beat("log-bot", "log-bot")
    lgov.agents.beat("old-bot", "old-bot", ttl=5)
    clock.advance(timedelta(seconds=10))  # old-bot lapsed before the engage: not part of the drain
    g = ask(lgov)
    assert "drain" not in cli("status", "--json").json()
    lgov.overrides.engage_kill_switch(OPERATOR, "stop everything")
    drain = cli("status", "--json").json()["drain"]
    assert drain["grantsInFlight"] == 1 and drain["grants"][0]["grantId"] == g.grant_id
    assert [a["name"] for a in drain["agentsNotBeaten"]] == ["log-bot", BOT]
    assert (drain["agentsAcknowledged"], drain["stopped"]) == (0, False)

    clock.advance(timedelta(seconds=1))
    assert lgov.agents.beat(BOT, BOT)["autonomy"] == "suspended"  # told to stop: acknowledged
    lgov.ingestor.ingest_objects([{"kind": "command", "id": g.grant_id, "type": "restart_service",
                                   "status": "succeeded", "autonomous": True, "at": isoformat(clock.now())}])
    drain = cli("status", "--json").json()["drain"]
    assert (drain["grantsInFlight"], drain["agentsAcknowledged"]) == (0, 1)
    assert [a["name"] for a in drain["agentsNotBeaten"]] == ["log-bot"] and not drain["stopped"]
    text = cli("status").out
    assert "draining: 0 grants in flight, 1 agents acknowledged" in text and "(log-bot)" in text

    clock.advance(timedelta(seconds=60))  # log-bot never heard: its lease lapses, it cannot act
    drain = cli("status", "--json").json()["drain"]
    assert drain["stopped"] and [a["name"] for a in drain["agentsLapsed"]] == ["log-bot"]
    assert "STOPPED: 0 grants in flight" in cli("status").out
    lgov.overrides.release_kill_switch(OPERATOR, "all clear")
    assert "drain" not in cli("status", "--json").json()


def test_the_agents_config_table_is_checked(tmp_path):
    from console.config import Config, ConfigError
    assert Config("x", raw={"agents": {"require_lease": True, "default_ttl": 30}}).agent_options() == {
        "require_lease": True, "default_ttl": 30}
    assert Config("x", raw={}).agent_options() == {}
    for bad, said in (({"require_leases": True}, "unknown key 'require_leases'"),
                      ({"require_lease": "yes"}, "require_lease = 'yes': expected true or false"),
                      ({"default_ttl": 2}, "default_ttl = 2: use whole seconds from 5 to 3600"),
                      ({"default_ttl": 60.5}, "default_ttl = 60.5")):
        with pytest.raises(ConfigError, match=re.escape(said)):
            Config("x", path=tmp_path / "config.toml", raw={"agents": bad}).agent_options()


def test_the_default_ttl_from_the_config_applies(store, clock):
    gov = at_l4(Governance(store, clock, agent_options={"default_ttl": 20}))
    assert gov.agents.beat(BOT, BOT)["leaseExpiresAt"] == isoformat(clock.now() + timedelta(seconds=20))


# --- beats answered from memory (the HTTP fast path's engine half) ---------------------------


def test_beats_answered_from_memory_batch_their_renewals_and_never_revive_a_lapsed_lease(lgov, clock, store,
                                                                                       monkeypatch):
    """After one beat through the store, beats are answered from memory; the one that finds half the lease
    gone renews it in the next group commit (the stored lease is live until then); a renewal that reaches
    the store after the lease lapsed is dropped, and the agent's next beat is the audited return."""
    import engine.agents as agents_mod
    monkeypatch.setattr(agents_mod, "STATE_SECONDS", 3600.0)  # the state read by the first beat stays usable
    book = lgov.agents
    start = clock.now()

    def stored() -> datetime:
        with store.read() as conn:
            return conn.execute(sa.select(tables.agents.c.lease_expires_at)
                                .where(tables.agents.c.name == BOT)).scalar_one()
    assert book.beat_from_memory(BOT, BOT) is None  # nothing known yet: through the store
    book.beat(BOT, BOT)
    expiries = []
    for s in (10, 20, 30):
        clock.set(start + timedelta(seconds=s))
        reply = book.beat_from_memory(BOT, BOT)
        assert reply is not None and reply["autonomy"] == "granted"
        expiries.append(reply["leaseExpiresAt"])
    assert expiries == [isoformat(start + timedelta(seconds=60))] * 2 + [isoformat(start + timedelta(seconds=90))]
    assert stored() == start + timedelta(seconds=60)  # the renewal waits for the group commit ...
    assert ask(lgov).decision == "allow"  # ... while the stored lease is live
    book.flush()
    assert stored() == start + timedelta(seconds=90)
    assert book.show(BOT)["beats"] == 4

    # a new TTL, or too little left to wait for the group commit: through the store
    clock.set(start + timedelta(seconds=86))
    assert book.beat_from_memory(BOT, BOT) is None
    assert book.beat_from_memory(BOT, BOT, ttl=30) is None

    # a renewal queued while live, stored only after the lease lapsed: not applied
    clock.set(start + timedelta(seconds=70))
    assert book.beat_from_memory(BOT, BOT)["leaseExpiresAt"] == isoformat(start + timedelta(seconds=130))
    clock.set(start + timedelta(seconds=91))
    book.flush()
    assert stored() == start + timedelta(seconds=90)
    assert ask(lgov).decision == "needs_approval"
    assert book.beat_from_memory(BOT, BOT) is None  # forgotten: the next beat goes through the store
    back = book.beat(BOT, BOT)
    assert back["leaseExpiresAt"] == isoformat(start + timedelta(seconds=151))
    assert [e.target for e in audited(lgov, "agent.return")] == [BOT]
    book.flush()  # nothing left for the background flusher after the store is gone


def test_beats_from_memory_need_a_recent_role_check_and_the_token_s_own_agent(lgov, clock, monkeypatch):
    import engine.agents as agents_mod
    monkeypatch.setattr(agents_mod, "STATE_SECONDS", 3600.0)
    book = lgov.agents
    book.beat(BOT, BOT)
    assert book.beat_from_memory(BOT, "log-bot") is None  # not its agent: the store path refuses it
    assert book.beat_from_memory("bot-owner", BOT, bound_agent=BOT) is None  # never role-checked here
    assert book.beat_from_memory(BOT, BOT, ttl=True) is None and book.beat_from_memory(BOT, BOT, ttl=3601) is None
    book._may_beat[BOT] -= agents_mod.MEMORY_SECONDS + 1  # the role check is too old
    assert book.beat_from_memory(BOT, BOT) is None
    book.beat(BOT, BOT)  # checks the role again
    assert book.beat_from_memory(BOT, BOT) is not None
    book.forget_state()
    assert book.beat_from_memory(BOT, BOT) is None
    book.flush()


def test_the_role_of_beats_answered_from_memory_is_re_checked_in_bulk(lgov, clock, monkeypatch):
    """The flusher re-checks every active operator's role in one read: a holder's check is renewed (its
    beats stay in memory past MEMORY_SECONDS), a revoked one is forgotten and its next beat refused."""
    import engine.agents as agents_mod
    monkeypatch.setattr(agents_mod, "STATE_SECONDS", 3600.0)
    book = lgov.agents
    book.beat(BOT, BOT)
    book.beat("log-bot", "log-bot")
    for op in (BOT, "log-bot"):
        book._may_beat[op] -= agents_mod.MEMORY_SECONDS - 1  # about to age out
    lgov.revoke_role(OPERATOR, "log-bot", "agent")
    book.refresh_roles()
    assert book.beat_from_memory(BOT, BOT) is not None
    assert "log-bot" not in book._may_beat and book.beat_from_memory("log-bot", "log-bot") is None
    with pytest.raises(PermissionDenied, match="heartbeats needs the role agent"):
        book.beat("log-bot", "log-bot")
    book.flush()
