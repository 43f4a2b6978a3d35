"""Governed actions on both stores: grants that reserve budget (also under concurrent asks), the limits
counting grants, expiry, action requests decided by humans, the decision log, modes, and the policy a
caller cannot choose (issue 11: an actionClass narrows, never loosens)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engine.clock import isoformat
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.governance import Governance
from engine.policies import load_policies
from storage import actions_repo, audit_repo, state_repo, tables
from storage.store import Store
from tests.conftest import OPERATOR
from tests.integration.test_api import make_api

POLICIES = {
    "service_restart": {"command_types": ["restart_service"], "max_per_day": 2, "notification_level": "alert"},
    "log_rotation": {"command_types": ["rotate_logs"], "max_per_day": 100},
    "cache": {"command_types": ["clear_cache"], "max_per_day": 1},
    "pool": {"command_types": ["tune_pool"], "min_interval": "5m", "max_concurrent": 2},
    "burst": {"command_types": ["burst"], "max_per_day": 5, "per_service": True},
    "paging": {"command_types": ["deploy"], "requires_approval": True, "notification_level": "approval_required",
               "approver_roles": ["ops-lead"]},
}
WHITELIST = ["restart_service", "rotate_logs", "clear_cache", "tune_pool", "burst", "deploy"]


def at_l4(gov: Governance) -> Governance:
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=WHITELIST)
    return gov


@pytest.fixture
def agov(store, clock) -> Iterator[Governance]:
    g = Governance(store, clock, policies=load_policies(POLICIES))
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    for role in ("on-call", "ops-lead"):
        g.grant_role(OPERATOR, "bob", role)
    yield at_l4(g)
    g.actions.decision_log.flush()  # before the store goes (tests/conftest.py gov)


def outcome(gov, grant_id: str, status: str, type: str = "restart_service"):
    return gov.ingestor.ingest_objects([{"kind": "command", "id": grant_id, "type": type, "status": status,
                                         "autonomous": True, "at": isoformat(gov.clock.now())}])


# --- a policy applies because it covers the type (issue 11) ----------------------------------


def test_an_action_class_cannot_pick_a_looser_policy(agov):
    assert agov.gate.decide("clear_cache", agent="a").decision == "allow"
    loose = agov.gate.decide("clear_cache", agent="a", action_class="log_rotation")
    assert loose.decision == "needs_approval" and "policy cache: daily limit reached (1/1)" in loose.reason


def test_an_action_class_can_add_a_policy_s_limits(agov):
    d = agov.gate.decide("rotate_logs", agent="a", action_class="paging")
    assert d.decision == "needs_approval" and "policy paging" in d.reason
    assert agov.gate.decide("rotate_logs", agent="a").decision == "allow"


def test_the_cli_cannot_pick_a_looser_policy_either(agov, cli):
    # the CLI decides by the store's policies (issue 13 pt 2), whatever its config file says
    agov.policy_book.set(OPERATOR, "cache", {"command_types": ["clear_cache"], "max_per_day": 1})
    agov.policy_book.set(OPERATOR, "log_rotation", {"command_types": ["rotate_logs"], "max_per_day": 100})
    assert cli("gate", "clear_cache").code == 0
    r = cli("gate", "clear_cache", "--action-class", "log_rotation", "--json")
    assert r.code == 3 and r.json()["decision"] == "needs_approval", r.out


# --- grants reserve budget ----------------------------------------------------------------------


def test_an_allow_issues_a_grant_that_counts_at_once(agov, clock):
    first = agov.gate.decide("restart_service", agent="bot", service="api", confidence=0.9)
    assert first.decision == "allow" and first.grant_id.startswith("gr-")
    assert first.to_json()["expiresAt"] == isoformat(clock.now() + timedelta(minutes=15))
    assert agov.gate.decide("restart_service", agent="bot").decision == "allow"
    third = agov.gate.decide("restart_service", agent="bot")
    assert third.decision == "needs_approval" and "daily limit reached (2/2)" in third.reason
    with agov.store.read() as conn:
        row = actions_repo.get_grant(conn, first.grant_id)
        entries = [e for e in audit_repo.list_entries(conn, limit=50) if e.action == "action.grant"]
    assert (row.agent, row.service, row.confidence, row.status) == ("bot", "api", 0.9, "granted")
    assert {e.target for e in entries} == {g["grantId"] for g in agov.actions.list()["grants"]}
    assert len(entries) == 2


def test_runs_reported_without_a_grant_still_use_the_budget(agov, clock):
    agov.ingestor.ingest_objects([{"kind": "command", "id": "unasked-1", "type": "restart_service",
                                   "status": "succeeded", "autonomous": True, "at": isoformat(clock.now())}])
    assert agov.gate.decide("restart_service", agent="bot").decision == "allow"
    assert "daily limit reached (2/2)" in agov.gate.decide("restart_service", agent="bot").reason


def test_a_grant_and_its_outcome_count_once(agov):
    g = agov.gate.decide("restart_service", agent="bot")
    outcome(agov, g.grant_id, "succeeded")
    d = agov.gate.decide("restart_service", agent="bot")
    assert d.decision == "allow" and d.to_json()["budget"]["day"]["used"] == 1


def test_min_interval_at_its_edge(agov, clock):
    assert agov.gate.decide("tune_pool", agent="p").decision == "allow"
    clock.advance(timedelta(minutes=5) - timedelta(seconds=1))
    early = agov.gate.decide("tune_pool", agent="p")
    assert early.decision == "needs_approval" and "at least 5m between actions" in early.reason
    clock.advance(timedelta(seconds=1))
    assert agov.gate.decide("tune_pool", agent="p").decision == "allow"


def test_max_concurrent_counts_grants_in_flight(agov, clock):
    a = agov.gate.decide("tune_pool", agent="p")
    clock.advance(timedelta(minutes=6))
    assert agov.gate.decide("tune_pool", agent="p").decision == "allow"
    clock.advance(timedelta(minutes=6))
    full = agov.gate.decide("tune_pool", agent="p")
    assert full.decision == "needs_approval" and "2 action(s) in flight (at most 2 at once)" in full.reason
    outcome(agov, a.grant_id, "succeeded", type="tune_pool")  # an outcome frees its slot
    assert agov.gate.decide("tune_pool", agent="p").decision == "allow"
    clock.advance(timedelta(minutes=16))  # the two open grants have expired: no longer in flight
    assert agov.gate.decide("tune_pool", agent="p").decision == "allow"


def test_per_service_budgets_need_a_service(agov):
    d = agov.gate.decide("burst", agent="b")
    assert d.decision == "needs_approval" and "name the service" in d.reason
    for _ in range(5):
        assert agov.gate.decide("burst", agent="b", service="db").decision == "allow"
    assert "daily limit reached for db (5/5)" in agov.gate.decide("burst", agent="b", service="db").reason
    assert agov.gate.decide("burst", agent="b", service="api").decision == "allow"


def test_thirty_two_concurrent_askers_against_five_get_exactly_five(agov, store_url, clock):
    """100 rounds; each asker has its own store connection pool, as separate agents would."""
    govs = [Governance(Store(store_url, apply_migrations=False), clock, policies=load_policies(POLICIES))
            for _ in range(8)]
    try:
        for round_ in range(100):
            service = f"svc-{round_}"
            barrier = threading.Barrier(32)
            answers: list[str] = []

            def ask(g: Governance) -> None:
                barrier.wait()
                answers.append(g.gate.decide("burst", agent="b", service=service).decision)

            threads = [threading.Thread(target=ask, args=(govs[i % 8],)) for i in range(32)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(answers).count("allow") == 5 and len(answers) == 32, (round_, answers)
        with agov.store.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(tables.grants)).scalar_one() == 500
    finally:
        for g in govs:
            g.close()


# --- outcomes ----------------------------------------------------------------------------------


def test_an_outcome_closes_its_grant_and_a_contradicting_one_is_refused(agov):
    g = agov.gate.decide("restart_service", agent="bot")
    assert outcome(agov, g.grant_id, "failed").accepted == 1
    assert agov.actions.show(g.grant_id)["grant"]["status"] == "failed"
    second = outcome(agov, g.grant_id, "succeeded")
    assert second.accepted == 0 and second.rejected == 1
    assert "already has the outcome failed; the first outcome stands" in second.errors[0].message
    assert agov.actions.show(g.grant_id)["grant"]["status"] == "failed"
    assert outcome(agov, g.grant_id, "rolled_back").accepted == 1  # a failed run rolled back
    assert agov.actions.show(g.grant_id)["grant"]["status"] == "rolled_back"


def test_an_outcome_of_another_type_is_refused(agov):
    g = agov.gate.decide("restart_service", agent="bot")
    r = outcome(agov, g.grant_id, "succeeded", type="clear_cache")
    assert r.rejected == 1 and "issued for restart_service, not clear_cache" in r.errors[0].message


def test_an_outcome_dated_before_its_grant_is_refused(agov, clock):
    """An action cannot end before it was allowed; and a failure stamped days back would be backfill, which never
    trips a breaker. Refused, naming both times; a stamp within the clocks' skew is fine."""
    g = agov.gate.decide("restart_service", agent="bot")
    backdated = agov.ingestor.ingest_objects([{"kind": "command", "id": g.grant_id, "type": "restart_service",
                                               "status": "failed", "autonomous": True,
                                               "at": isoformat(clock.now() - timedelta(days=3))}])
    assert backdated.rejected == 1 and backdated.errors[0].field == "at"
    assert "before the grant was issued" in backdated.errors[0].message
    assert agov.actions.show(g.grant_id)["status"] == "granted"
    skewed = agov.ingestor.ingest_objects([{"kind": "command", "id": g.grant_id, "type": "restart_service",
                                            "status": "failed", "autonomous": True,
                                            "at": isoformat(clock.now() - timedelta(minutes=2))}])
    assert skewed.accepted == 1 and agov.actions.show(g.grant_id)["status"] == "failed"


def test_an_outcome_naming_no_grant_is_stored_and_flagged(agov):
    assert outcome(agov, "gr-0000000000000000", "succeeded").accepted == 1
    flagged = agov.actions.decisions()["outcomesWithoutGrant"]
    assert [o["id"] for o in flagged] == ["gr-0000000000000000"]


# --- expiry ------------------------------------------------------------------------------------


def test_a_grant_without_an_outcome_expires_with_an_alert_naming_the_agent(agov, clock):
    g = agov.gate.decide("restart_service", agent="rollback-bot", service="api")
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert agov.actions.expire_due() == {"grants": 0, "requests": 0}
    clock.advance(timedelta(seconds=1))
    assert agov.actions.expire_due() == {"grants": 1, "requests": 0}
    assert agov.actions.show(g.grant_id)["grant"]["status"] == "expired"
    with agov.store.read() as conn:
        titles = conn.execute(sa.select(tables.alert_outbox.c.title)).scalars().all() or []
        entries = audit_repo.list_entries(conn, limit=5)
    assert entries[0].action == "action.expire" and entries[0].target == g.grant_id
    # no sink configured: the alert is logged; with sinks it is in the outbox (test_alerts covers routing)
    assert all("rollback-bot" in t for t in titles if "expired" in t)
    # an expired grant still counts against the day's budget (an unknown outcome may have acted)
    assert agov.gate.decide("restart_service", agent="b").to_json()["budget"]["day"]["used"] == 1


# --- action requests -------------------------------------------------------------------------


@pytest.fixture
def l3gov(agov) -> Governance:
    with agov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3", command_whitelist=[])
    return agov


def ask_at_l3(gov, **kw):
    d = gov.gate.decide("restart_service", agent="rollback-bot", service="api", request=True,
                        requested_by="bot-owner", **kw)
    assert d.decision == "needs_approval" and d.request_id.startswith("req-"), d
    return d


def test_request_approve_grant_outcome(l3gov, clock):
    d = ask_at_l3(l3gov)
    pending = l3gov.actions.list(pending=True)["requests"]
    assert [r["requestId"] for r in pending] == [d.request_id]
    assert pending[0]["reason"] == "phase L3: every command needs human approval"
    doc = l3gov.actions.approve("bob", d.request_id, "checked the dashboard")
    grant = doc["grant"]
    assert doc["request"]["status"] == "approved" and doc["request"]["decidedBy"] == "bob"
    assert grant["status"] == "granted" and grant["approvedBy"] == "bob" and grant["agent"] == "rollback-bot"
    assert outcome(l3gov, grant["grantId"], "succeeded").accepted == 1
    assert l3gov.actions.show(d.request_id)["status"] == "succeeded"
    with l3gov.store.read() as conn:
        actions = [e.action for e in audit_repo.list_entries(conn, limit=10)]
    assert {"action.request", "action.grant", "action.approve"} <= set(actions)


def test_a_wait_is_bounded_and_a_longer_one_is_asked_again(l3gov, monkeypatch):
    """Through the service each wait holds one of its threads and any role may wait: a NaN wait never ended,
    and an hour's wait held a thread for an hour. One call now blocks at most WAIT_SLICE_S; a caller wanting
    longer asks again (wait_for_decision), as `govcon gate --wait` and `govcon run --wait` do."""
    import time as clock_time

    from engine import actions
    d = ask_at_l3(l3gov)
    for bad in (float("nan"), float("inf"), -1, True):
        with pytest.raises(InvalidInput, match="seconds: give a number from 0 up"):
            l3gov.actions.wait(d.request_id, bad)
    monkeypatch.setattr(actions, "WAIT_SLICE_S", 0.2)
    started = clock_time.monotonic()
    assert l3gov.actions.wait(d.request_id, 3600)["request"]["status"] == "pending"
    assert clock_time.monotonic() - started < 2
    calls: list[float] = []

    def counted(request_id: str, timeout: float):
        calls.append(timeout)
        return l3gov.actions.wait(request_id, timeout)
    started = clock_time.monotonic()
    assert actions.wait_for_decision(counted, d.request_id, 0.7)["request"]["status"] == "pending"
    assert 0.6 < clock_time.monotonic() - started < 3 and len(calls) >= 3 and max(calls) <= 0.2


def test_approving_twice_names_who_decided(l3gov):
    d = ask_at_l3(l3gov)
    l3gov.actions.reject("bob", d.request_id, "not during the release")
    with pytest.raises(Conflict, match="was rejected already by bob"):
        l3gov.actions.approve("bob", d.request_id)


def test_a_rejection_needs_a_reason(l3gov):
    d = ask_at_l3(l3gov)
    with pytest.raises(InvalidInput, match="--reason"):
        l3gov.actions.reject("bob", d.request_id, "  ")


def test_the_requester_cannot_approve_and_roles_are_named(l3gov):
    d = ask_at_l3(l3gov)
    l3gov.grant_role(OPERATOR, "bot-owner", "on-call")
    with pytest.raises(PermissionDenied, match="asked for this action and cannot approve it too"):
        l3gov.actions.approve("bot-owner", d.request_id)
    with pytest.raises(PermissionDenied, match="needs one of the roles on-call, incident-commander, ops-lead; "
                                               "carol holds no role"):
        l3gov.actions.approve("carol", d.request_id)


def test_policy_approver_roles(agov):
    d = agov.gate.decide("deploy", agent="deployer", request=True, requested_by="ci")
    assert d.decision == "needs_approval" and "requires human approval" in d.reason
    agov.grant_role(OPERATOR, "dave", "on-call")
    with pytest.raises(PermissionDenied, match="needs one of the roles ops-lead"):
        agov.actions.approve("dave", d.request_id)
    assert agov.actions.approve("bob", d.request_id)["grant"]["commandType"] == "deploy"


def test_a_request_expires_and_then_counts_as_rejected(l3gov, clock):
    d = ask_at_l3(l3gov)
    clock.advance(timedelta(minutes=30))
    with pytest.raises(Conflict, match="expired before it was decided"):
        l3gov.actions.approve("bob", d.request_id)
    assert l3gov.actions.show(d.request_id)["request"]["status"] == "expired"
    with pytest.raises(Conflict, match="was expired already"):
        l3gov.actions.approve("bob", d.request_id)


def test_expiry_job_expires_requests(l3gov, clock):
    ask_at_l3(l3gov)
    clock.advance(timedelta(minutes=31))
    assert l3gov.actions.expire_due() == {"grants": 0, "requests": 1}
    assert l3gov.actions.list(pending=True)["requests"] == []


def test_approval_is_refused_under_the_kill_switch_and_in_read_only(l3gov):
    d = ask_at_l3(l3gov)
    l3gov.overrides.engage_kill_switch("bob", "INC-7")
    with pytest.raises(Conflict, match="kill switch is engaged"):
        l3gov.actions.approve("bob", d.request_id)
    l3gov.overrides.release_kill_switch("bob", "over")
    l3gov.modes.set("bob", "read_only", "storage migration")
    with pytest.raises(Conflict, match="mode read_only"):
        l3gov.actions.approve("bob", d.request_id)
    l3gov.modes.set("bob", "normal", "done")
    assert l3gov.actions.approve("bob", d.request_id)["request"]["status"] == "approved"


def test_human_approval_may_exceed_a_rate_limit(agov):
    for _ in range(2):
        agov.gate.decide("restart_service", agent="bot")
    d = agov.gate.decide("restart_service", agent="bot", request=True, requested_by="bot-owner")
    assert d.request_id and "daily limit" in d.reason
    assert agov.actions.approve("bob", d.request_id)["grant"]["status"] == "granted"


def test_unknown_ids_are_named(agov):
    with pytest.raises(NotFound, match="no action request 'req-nope'"):
        agov.actions.approve("bob", "req-nope")
    with pytest.raises(NotFound, match="no grant or action request 'gr-nope'"):
        agov.actions.show("gr-nope")


# --- the decision log ---------------------------------------------------------------------------


def test_every_decision_is_logged_with_its_inputs(agov):
    agov.gate.decide("restart_service", agent="bot", service="api", confidence=0.91)
    agov.gate.decide("not_listed", agent="bot")
    agov.gate.decide("bad type\x1b[2J", agent="bot")
    log = agov.actions.decisions()["decisions"]
    assert [d["decision"] for d in log] == ["deny", "needs_approval", "allow"]
    allow = log[2]
    assert (allow["agent"], allow["service"], allow["confidence"], allow["policy"]) == \
        ("bot", "api", 0.91, "service_restart") and allow["grantId"]
    assert "is not a name" in log[0]["reason"]


# --- modes -----------------------------------------------------------------------------------------


def test_modes_through_the_gate(agov):
    agov.modes.set("bob", "minimal", "provider incident")
    d = agov.gate.decide("restart_service", agent="bot")
    assert d.decision == "needs_approval" and "mode minimal" in d.reason
    assert agov.gate.decide("clear_cache", agent="bot", action_class="clear_cache").decision == "allow"
    agov.modes.set("bob", "read_only", "worse")
    assert agov.gate.decide("clear_cache", agent="bot", action_class="clear_cache").decision == "deny"
    assert agov.gate.decide("rotate_logs", agent="bot", action_class="read").decision == "allow"
    assert agov.status(with_readiness=False)["mode"] == "read_only"


def test_a_mode_change_needs_the_kill_switch_roles(agov):
    agov.grant_role(OPERATOR, "erin", "on-call")
    agov.modes.set("erin", "minimal", "degrading is on-call's call")
    with pytest.raises(PermissionDenied, match="releasing the kill switch needs one of the roles "
                                               "incident-commander, ops-lead"):
        agov.modes.set("erin", "normal", "back")


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [True, float("nan"), 1.5, -0.1, "0.9"])
def test_absurd_confidences_are_denied(agov, confidence):
    d = agov.gate.decide("restart_service", agent="bot", confidence=confidence)
    assert d.decision == "deny" and "confidence" in d.reason


@pytest.mark.parametrize("ctype", ["restart service", "x\x1b[2J", "", "a" * 201, "-leading"])
def test_command_types_that_are_not_names_are_denied(agov, ctype):
    assert agov.gate.decide(ctype).decision == "deny"


# --- over HTTP ------------------------------------------------------------------------------------


def test_http_gate_request_wait_and_approve(l3gov):
    api = make_api(l3gov)
    with api.client:
        r = api.post("/api/gate", json={"commandType": "restart_service", "service": "api", "agent": "bot",
                                         "request": True})
        assert r.status_code == 401  # a request pages people: it needs a token
        l3gov.grant_role(OPERATOR, "bot-owner", "agent")  # and a role (gate.ask), as on the socket
        agent = api.auth("bot-owner")
        r = api.post("/api/gate", json={"commandType": "restart_service", "service": "api", "agent": "bot",
                                         "request": True}, headers=agent)
        body = r.json()
        assert r.status_code == 200 and body["decision"] == "needs_approval" and body["requestId"]
        rid = body["requestId"]
        waited = api.get(f"/api/actions/{rid}", params={"wait": 0.3}).json()
        assert waited["request"]["status"] == "pending"
        assert api.post(f"/api/actions/{rid}/approve", json={}, headers=agent).status_code == 403  # four eyes
        ok = api.post(f"/api/actions/{rid}/approve", json={"note": "ok"}, headers=api.auth("bob"))
        assert ok.status_code == 200 and ok.json()["grant"]["status"] == "granted"
        assert api.get(f"/api/actions/{rid}", params={"wait": 5}).json()["request"]["status"] == "approved"
        assert api.get("/api/actions", params={"status": "in_flight"}).json()["grants"][0]["agent"] == "bot"
        log = api.get("/api/gate/decisions").json()["decisions"]
        assert log[0]["requestId"] == rid


@pytest.mark.parametrize("confidence", [True, "1", "0.9", [0.5]])
def test_http_gate_types_are_strict(agov, confidence):
    api = make_api(agov)
    with api.client:
        r = api.post("/api/gate", json={"commandType": "restart_service", "confidence": confidence})
        assert r.status_code == 422 and "confidence" in r.text


def test_http_gate_cannot_pick_a_looser_policy(agov):
    api = make_api(agov)
    with api.client:
        assert api.post("/api/gate", json={"commandType": "clear_cache", "confidence": 0.5}).json()["decision"] \
            == "allow"
        r = api.post("/api/gate", json={"commandType": "clear_cache", "confidence": 0.5,
                                         "actionClass": "log_rotation"}).json()
        assert r["decision"] == "needs_approval"


def test_http_mode(agov):
    api = make_api(agov)
    with api.client:
        assert api.get("/api/mode").json() == {"mode": "normal"}
        assert api.post("/api/mode", json={"mode": "read_only", "reason": "x"}).status_code == 401
        r = api.post("/api/mode", json={"mode": "read_only", "reason": "db failover"}, headers=api.auth("bob"))
        assert r.status_code == 200 and r.json()["changed"] is True
        assert api.post("/api/gate", json={"commandType": "restart_service"}).json()["decision"] == "deny"
        assert api.get("/api/governance/state").json()["mode"] == "read_only"


# --- separate processes ----------------------------------------------------------------------------

_ASKER = r"""
import json, sys, time
from engine.governance import Governance
from engine.policies import load_policies
from storage.store import Store
url, start, asks, policies = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
gov = Governance(Store(url, apply_migrations=False), policies=load_policies(policies))
gov.gate.decide("warmup", agent="w")  # connect before the start line
while time.time() < start:
    time.sleep(0.001)
out = [gov.gate.decide("burst", agent="p", service="proc").to_json() for _ in range(asks)]
gov.close()
print(json.dumps([(d["decision"], d.get("grantId")) for d in out]))
"""


def test_a_burst_from_separate_processes_gets_exactly_the_budget(agov, store_url):
    import json
    import subprocess
    import sys
    import time
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", _ASKER, store_url, str(start), "4", json.dumps(POLICIES)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers += json.loads(out)
    allows = [g for d, g in answers if d == "allow"]
    assert len(answers) == 32 and len(allows) == 5, answers
    with agov.store.read() as conn:
        stored = {r.id for r in actions_repo.list_grants(conn, limit=100) if r.service == "proc"}
    assert stored == set(allows)  # every allow has its grant; no grant without an allow


def test_retention_prunes_the_log_and_never_a_grant_a_budget_counts(agov, clock):
    old = agov.gate.decide("restart_service", agent="bot")
    outcome(agov, old.grant_id, "succeeded")
    agov.gate.decide("nope", agent="bot")
    agov.actions.decision_log.flush()
    clock.advance(timedelta(days=3))
    flying = agov.gate.decide("restart_service", agent="bot")
    removed = agov.prune(OPERATOR, timedelta(days=1))
    assert removed["gate_decisions"] == 2  # the two decisions of three days ago
    assert removed["grants"] == 0  # the finished grant is inside the week a budget counts
    clock.advance(timedelta(days=9))
    removed = agov.prune(OPERATOR, timedelta(days=1))
    assert removed["grants"] == 1  # finished, and older than a week before the cut-off
    assert agov.actions.show(flying.grant_id)["grant"]["status"] == "granted"  # never an open grant


# --- an ask whose answer changes between the read and the write --------------------------------------------


def _another_process(agov, store_url, clock) -> Governance:
    """A second agent's process on the same store, with a fresh gate (its first ask of a type is judged on a
    read first)."""
    return Governance(Store(store_url, apply_migrations=False), clock, policies=load_policies(POLICIES))


def _after_the_read(gov: Governance, commit) -> None:
    """``commit`` runs right after the gate's read and before its write: another process committing in that
    window (the window is real; this makes it certain)."""
    read = gov.gate._judge_read

    def judge_read_then_commit(ask, now):
        decision = read(ask, now)
        commit()
        return decision
    gov.gate._judge_read = judge_read_then_commit  # type: ignore[method-assign]


def test_a_request_ask_that_the_write_finds_allowed_gets_its_grant(agov, store_url, clock):
    """Read: needs_approval (the slots are taken); an outcome frees one before the write: the answer is an allow,
    so it must come with its grant (it came without one: nothing reserved, nothing counted)."""
    first = agov.gate.decide("tune_pool", agent="a")
    clock.advance(timedelta(minutes=6))
    assert agov.gate.decide("tune_pool", agent="a").decision == "allow"
    clock.advance(timedelta(minutes=6))
    other = _another_process(agov, store_url, clock)
    try:
        _after_the_read(other, lambda: outcome(agov, first.grant_id, "succeeded", type="tune_pool"))
        d = other.gate.decide("tune_pool", agent="b", request=True, requested_by="b-owner")
        assert d.decision == "allow" and d.grant_id, d
        other.actions.decision_log.flush()
        with agov.store.read() as conn:
            grant = conn.execute(sa.select(tables.grants).where(tables.grants.c.id == d.grant_id)).one()
            logged = conn.execute(sa.select(tables.gate_decisions.c.grant_id)
                                  .where(tables.gate_decisions.c.agent == "b")).scalars().all()
        assert grant.status == "granted" and grant.agent == "b"
        assert logged == [d.grant_id]
    finally:
        other.close()


def test_a_request_ask_that_the_write_finds_refused_queues_its_request(agov, store_url, clock):
    """Read: allow (a slot is free); another agent takes the last slot before the write: needs_approval, and
    with ``request`` the action request must be queued (it was not: `govcon run --wait` gave up at once)."""
    agov.gate.decide("tune_pool", agent="a")
    clock.advance(timedelta(minutes=6))
    other = _another_process(agov, store_url, clock)
    try:
        _after_the_read(other, lambda: agov.gate.decide("tune_pool", agent="a"))
        d = other.gate.decide("tune_pool", agent="b", request=True, requested_by="b-owner")
        assert d.decision == "needs_approval" and "in flight" in d.reason, d
        assert d.request_id, d
        pending = agov.actions.list(pending=True)
        assert [r["requestId"] for r in pending["requests"]] == [d.request_id]
    finally:
        other.close()
