"""Circuit breakers on real stores: each default rule at its edges, dedupe, shadow mode, resolve,
backfill, reversion, kill switch through the gate, backtest."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.clock import isoformat
from engine.errors import Conflict, InvalidInput, PermissionDenied
from storage import state_repo
from tests.conftest import OPERATOR


@pytest.fixture(autouse=True)
def _operator_is_ops_lead(gov):
    """alice (admin) also holds ops-lead here, which may resolve events, edit rules and drill."""
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")


def cmd(i: int, status: str, at: datetime, *, ctype: str = "restart_service", autonomous: bool = True,
        prefix: str = "c") -> dict:
    return {"kind": "command", "id": f"{prefix}{i}", "type": ctype, "status": status,
            "autonomous": autonomous, "at": isoformat(at)}


def commands(n: int, failed: int, at: datetime, **kw) -> list[dict]:
    """n distinct commands, the first `failed` of them failed, the rest succeeded."""
    return [cmd(i, "failed" if i < failed else "succeeded", at, **kw) for i in range(n)]


def set_phase(gov, phase: str, whitelist: list[str]) -> None:
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase=phase, command_whitelist=whitelist)


def state(gov) -> dict:
    return gov.status(with_readiness=False)


def events(gov, **kw) -> list[dict]:
    return gov.breaker_events(**kw)


def test_error_rate_exactly_five_percent_does_not_trip(gov, clock):
    set_phase(gov, "L3+", ["restart_service"])
    report = gov.ingestor.ingest_objects(commands(20, 1, clock.now() - timedelta(minutes=1)))
    assert report.accepted == 20
    assert [e for e in events(gov) if e["ruleName"] == "High Error Rate"] == []
    assert state(gov)["currentPhase"] == "L3+"


def test_error_rate_above_threshold_reverts_to_l3_and_clears_whitelist(gov, clock):
    set_phase(gov, "L4", ["restart_service", "scale_pool"])
    gov.ingestor.ingest_objects(commands(20, 2, clock.now() - timedelta(minutes=1), ctype="scale_pool"))
    tripped = [e for e in events(gov) if e["ruleName"] == "High Error Rate"]
    assert len(tripped) == 1
    ev = tripped[0]
    assert ev["severity"] == "critical" and ev["action"] == "revert_to_l3" and ev["commandType"] is None
    assert ev["observed"]["errorRate"] == pytest.approx(0.1)
    assert ev["observed"]["samples"] == 20
    s = state(gov)
    assert s["currentPhase"] == "L3" and s["commandWhitelist"] == []
    assert s["phaseStartDate"] == isoformat(clock.now())
    with gov.store.read() as conn:
        history = state_repo.phase_history(conn)
    assert history[-1].phase == "L3" and history[-1].breaker_event_id == ev["id"]
    assert history[-2].ended_at is not None
    actions = [a["action"] for a in gov.audit_entries()]
    assert "breaker.trip" in actions


def test_rates_are_not_judged_below_min_samples_but_counts_are(gov, clock):
    set_phase(gov, "L3+", ["restart_service"])
    gov.ingestor.ingest_objects(commands(9, 5, clock.now() - timedelta(minutes=1)))
    names = {e["ruleName"] for e in events(gov)}
    assert "High Error Rate" not in names  # 9 < min_samples 10
    assert "Repeated Command Failures" in names  # a count: 5 failures >= 3
    s = state(gov)
    assert s["currentPhase"] == "L3+"
    assert s["pausedCommandTypes"] == ["restart_service"]


def test_repeated_failures_pause_only_the_offending_type(gov, clock):
    now = clock.now() - timedelta(minutes=2)
    batch = commands(3, 3, now, ctype="restart_service", prefix="r") + \
        commands(2, 2, now, ctype="scale_pool", prefix="s") + commands(30, 0, now, ctype="noop", prefix="n")
    gov.ingestor.ingest_objects(batch)
    paused = [e for e in events(gov) if e["ruleName"] == "Repeated Command Failures"]
    assert [e["commandType"] for e in paused] == ["restart_service"]
    assert state(gov)["pausedCommandTypes"] == ["restart_service"]
    assert gov.gate.decide("restart_service").decision == "needs_approval"
    assert "paused" in gov.gate.decide("restart_service").reason


def test_an_open_event_is_not_tripped_again_and_resolving_unpauses(gov, clock):
    t = clock.now()
    gov.ingestor.ingest_objects(commands(3, 3, t - timedelta(minutes=1), prefix="a"))
    gov.ingestor.ingest_objects(commands(4, 4, t - timedelta(seconds=30), prefix="b"))
    assert len(gov.breakers.evaluate()) == 0
    open_events = events(gov, unresolved_only=True)
    assert [e["ruleName"] for e in open_events] == ["Repeated Command Failures"]
    resolved = gov.breakers.resolve(OPERATOR, open_events[0]["id"], note="bad deploy rolled back",
                                    false_positive=False)
    assert resolved["resolved"] and resolved["resolvedBy"] == OPERATOR
    assert state(gov)["pausedCommandTypes"] == []
    with pytest.raises(Conflict):
        gov.breakers.resolve(OPERATOR, open_events[0]["id"], note="again")
    # the failures before the resolution were judged already: they do not trip it again
    assert gov.breakers.evaluate() == []
    clock.advance(timedelta(seconds=30))
    gov.ingestor.ingest_objects(commands(2, 2, clock.now(), prefix="c"))  # 2 new failures: below 3
    assert events(gov, unresolved_only=True) == []
    gov.ingestor.ingest_objects(commands(1, 1, clock.now(), prefix="d"))  # the third after resolution
    reopened = [e for e in events(gov, unresolved_only=True) if e["ruleName"] == "Repeated Command Failures"]
    assert len(reopened) == 1 and reopened[0]["observed"]["commandType.failed"] == 3
    assert state(gov)["pausedCommandTypes"] == ["restart_service"]


def test_critical_incident_reverts(gov, clock):
    set_phase(gov, "L3+", ["restart_service"])
    gov.ingestor.ingest_objects([{"kind": "incident", "id": "inc-1", "severity": "critical",
                                  "at": isoformat(clock.now() - timedelta(seconds=20))}])
    ev = [e for e in events(gov) if e["ruleName"] == "Critical Incident Detected"]
    assert len(ev) == 1 and ev[0]["observed"]["incident.severity"] == ["critical"]
    assert state(gov)["currentPhase"] == "L3"


def test_high_incident_does_not_trip_the_critical_rule(gov, clock):
    gov.ingestor.ingest_objects([{"kind": "incident", "id": "inc-2", "severity": "high",
                                  "at": isoformat(clock.now())}])
    assert events(gov) == []


def test_rollback_rate_is_alert_only(gov, clock):
    set_phase(gov, "L3+", ["restart_service"])
    t = clock.now() - timedelta(minutes=5)
    batch = commands(10, 0, t) + [cmd(i, "rolled_back", t + timedelta(seconds=1)) for i in range(2)]
    gov.ingestor.ingest_objects(batch)
    ev = [e for e in events(gov) if e["ruleName"] == "High Rollback Rate"]
    assert len(ev) == 1 and ev[0]["action"] == "alert_only" and ev[0]["severity"] == "medium"
    assert state(gov)["currentPhase"] == "L3+"


def test_exactly_ten_percent_rollbacks_do_not_trip(gov, clock):
    t = clock.now() - timedelta(minutes=5)
    gov.ingestor.ingest_objects(commands(10, 0, t) + [cmd(0, "rolled_back", t)])
    assert [e for e in events(gov) if e["ruleName"] == "High Rollback Rate"] == []


def test_backfilled_history_never_trips(gov, clock):
    set_phase(gov, "L3+", ["restart_service"])
    old = clock.now() - timedelta(days=2)
    gov.ingestor.ingest_objects(commands(50, 40, old) + [
        {"kind": "incident", "id": "old-inc", "severity": "critical", "at": isoformat(old)}])
    assert events(gov) == []
    assert state(gov)["currentPhase"] == "L3+"


def test_shadow_mode_records_would_have_events_and_changes_nothing(gov, clock):
    set_phase(gov, "L4", ["restart_service"])
    gov.overrides.set_breaker_mode(OPERATOR, "shadow", "rollout")
    gov.ingestor.ingest_objects(commands(20, 10, clock.now()))
    evs = events(gov)
    assert {e["ruleName"] for e in evs} == {"High Error Rate", "Repeated Command Failures"}
    assert all(e["shadow"] for e in evs)
    assert all("would have" in e["observed"]["effect"] for e in evs)
    s = state(gov)
    assert s["currentPhase"] == "L4" and s["commandWhitelist"] == ["restart_service"]
    assert s["pausedCommandTypes"] == []
    assert s["unresolvedEvents"] == 0  # shadow events are not safety events


def test_a_rule_in_shadow_records_while_the_others_enforce(gov, clock, caplog):
    """Trying one rule out (`govcon rules set NAME --shadow`) leaves every other rule enforcing: the same
    burst pauses the type by the enforced rule, while the shadow rule only records what it would have
    done (no reversion, no page)."""
    set_phase(gov, "L4", ["restart_service"])
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    rule = gov.rules.set(OPERATOR, "High Error Rate", {"shadow": True})
    assert rule["shadow"] is True
    entry = gov.audit_entries(limit=1)[0]
    assert entry["action"] == "rule.set" and (entry["details"]["before"]["shadow"], entry["details"]["after"]["shadow"]) == (False, True)
    gov.ingestor.ingest_objects(commands(20, 10, clock.now()))
    by_rule = {e["ruleName"]: e for e in events(gov)}
    assert by_rule["High Error Rate"]["shadow"] and "rule in shadow: would have" in by_rule["High Error Rate"]["observed"]["effect"]
    assert not by_rule["Repeated Command Failures"]["shadow"]
    s = state(gov)
    assert s["currentPhase"] == "L4"                          # the shadow rule did not revert
    assert s["pausedCommandTypes"] == ["restart_service"]     # the enforced rule paused the type
    assert s["unresolvedEvents"] == 1
    [alert] = [r.getMessage() for r in caplog.records if "Circuit breaker tripped: High Error Rate" in r.getMessage()]
    assert alert.startswith("alert trigger medium: [shadow]")  # a shadow trip never pages
    with pytest.raises(InvalidInput, match="shadow: must be true or false"):
        gov.rules.set(OPERATOR, "High Error Rate", {"shadow": "yes"})

    # enforced again: its open shadow event does not hold it back, the next burst reverts
    assert gov.rules.set(OPERATOR, "High Error Rate", {"shadow": False})["shadow"] is False
    clock.advance(timedelta(seconds=30))
    gov.ingestor.ingest_objects(commands(20, 10, clock.now(), prefix="again"))
    assert state(gov)["currentPhase"] == "L3"
    enforced = [e for e in events(gov) if e["ruleName"] == "High Error Rate" and not e["shadow"]]
    assert len(enforced) == 1 and enforced[0]["observed"]["effect"].startswith("reverted L4 -> L3")


def test_kill_switch_through_the_gate(gov, clock):
    set_phase(gov, "L3+", ["restart_service"])
    assert gov.gate.decide("restart_service").decision == "allow"
    gov.grant_role(OPERATOR, OPERATOR, "incident-commander")
    result = gov.overrides.engage_kill_switch(OPERATOR, "incident 42")
    assert result.changed
    d = gov.gate.decide("restart_service")
    assert d.decision == "deny" and "kill switch" in d.reason and d.exit_code == 4
    assert state(gov)["killSwitch"]["engaged"] and state(gov)["killSwitch"]["reason"] == "incident 42"
    with pytest.raises(InvalidInput):
        gov.overrides.release_kill_switch(OPERATOR, "  ")
    gov.overrides.release_kill_switch(OPERATOR, "resolved")
    assert gov.gate.decide("restart_service").decision == "allow"
    actions = [a["action"] for a in gov.audit_entries() if a["action"] != "action.grant"]  # the allows' grants
    assert actions[:2] == ["kill_switch.release", "kill_switch.engage"]


def test_kill_switch_roles(gov):
    gov.grant_role(OPERATOR, "oncall-bob", "on-call")
    gov.overrides.engage_kill_switch("oncall-bob", "page")
    with pytest.raises(PermissionDenied, match="incident-commander"):
        gov.overrides.release_kill_switch("oncall-bob", "done")
    with pytest.raises(PermissionDenied, match="on-call"):
        gov.overrides.engage_kill_switch("mallory", "x")


def test_drill_records_and_readiness_item_passes(gov):
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    result = gov.overrides.drill(OPERATOR, gov.gate)
    assert result.message.startswith("drill passed")
    assert not state(gov)["killSwitch"]["engaged"]
    items = {i["name"]: i for i in gov.readiness.assess().to_json()["technical"]["items"]}
    assert items["Kill switch tested"]["status"] is True


def test_manual_revert_from_l3_plus(gov, clock):
    gov.grant_role(OPERATOR, OPERATOR, "on-call")
    set_phase(gov, "L3+", ["restart_service"])
    r = gov.overrides.revert(OPERATOR, "stakeholder request")
    assert r.changed and "L3+ -> L3" in r.message
    s = state(gov)
    assert s["currentPhase"] == "L3" and s["commandWhitelist"] == []
    again = gov.overrides.revert(OPERATOR, "again")
    assert not again.changed
    assert [a["action"] for a in gov.audit_entries()].count("phase.revert") == 1


def test_gate_decisions(gov):
    assert gov.gate.decide("restart_service").decision == "needs_approval"  # L3
    set_phase(gov, "L3+", ["restart_service"])
    assert gov.gate.decide("restart_service").decision == "allow"
    d = gov.gate.decide("scale_pool")
    assert d.decision == "needs_approval" and "not on the L3+ whitelist" in d.reason
    assert gov.gate.decide("restart_service", confidence=1.5).decision == "deny"


def test_gate_fails_closed_when_the_store_is_unreadable(tmp_path, clock):
    from engine.gate import Gate
    from engine.governance import Governance
    from storage.store import Store
    path = tmp_path / "gate.db"
    store = Store(str(path))
    g = Governance(store, clock)
    g.init_store(OPERATOR)
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])
    assert g.gate.decide("restart_service").decision == "allow"
    store.dispose()
    path.write_bytes(b"this is not a database" * 100)  # the disk went bad under us
    for p in tmp_path.glob("gate.db-*"):
        p.unlink()
    d = Gate(store, clock).decide("restart_service")
    assert d.decision == "deny" and "failing closed" in d.reason
    store.dispose()


def test_rule_validation_and_audit_of_changes(gov):
    with pytest.raises(InvalidInput, match="did you mean errorRate"):
        gov.rules.add(OPERATOR, {"name": "x", "condition": "errorRat > 0.1", "window": "5m",
                                 "action": "alert_only", "alert_severity": "low"})
    with pytest.raises(InvalidInput, match="window"):
        gov.rules.add(OPERATOR, {"name": "x", "condition": "errorRate > 0.1", "window": "0m",
                                 "action": "alert_only", "alert_severity": "low"})
    with pytest.raises(InvalidInput, match="commandType"):
        gov.rules.add(OPERATOR, {"name": "x", "condition": "errorRate > 0.1", "window": "5m",
                                 "action": "pause_command_type", "alert_severity": "low"})
    assert len(gov.rules.list()) == 4
    before = gov.rules.show("High Error Rate")
    after = gov.rules.set(OPERATOR, "High Error Rate", {"condition": "errorRate > 0.08", "window": "10m"})
    assert after["condition"] == "errorRate > 0.08" and after["window"] == "10m"
    entry = gov.audit_entries(limit=1)[0]
    assert entry["action"] == "rule.set"
    assert entry["details"]["before"]["condition"] == before["condition"]
    assert entry["details"]["after"]["window"] == "10m"
    with pytest.raises(PermissionDenied, match="ops-lead"):
        gov.rules.set("mallory", "High Error Rate", {"enabled": False})


def test_rule_statistics_track_false_positives(gov, clock):
    gov.ingestor.ingest_objects(commands(3, 3, clock.now()))
    ev = events(gov, unresolved_only=True)[0]
    gov.breakers.resolve(OPERATOR, ev["id"], note="flaky probe", false_positive=True)
    stats = gov.rules.show("Repeated Command Failures")["statistics"]
    assert stats["trips"] == 1 and stats["falsePositives"] == 1 and stats["falsePositiveRate"] == 1.0
    assert stats["lastTrip"] == ev["timestamp"]


def test_backtest_finds_a_past_burst_and_the_incident_near_it(gov, clock):
    base = clock.now() - timedelta(days=3)
    history = []
    for h in range(48):  # two quiet days, 20 successes an hour
        t = base + timedelta(hours=h)
        history += [cmd(h * 100 + i, "succeeded", t + timedelta(minutes=i * 3), prefix="q") for i in range(20)]
    burst = base + timedelta(hours=30, minutes=1, seconds=17)  # not on a step boundary
    history += commands(20, 8, burst, prefix="burst")
    history.append({"kind": "incident", "id": "inc-burst", "severity": "high", "at": isoformat(burst + timedelta(minutes=4))})
    gov.ingestor.ingest_objects(history)
    assert events(gov) == []  # history never trips live
    result = gov.backtester.run("errorRate > 0.05", "5m", days=4).to_json()
    assert result["trips"] == 1
    trip = result["tripTimes"][0]
    assert abs(datetime.fromisoformat(trip["at"]) - burst) <= timedelta(minutes=6)
    assert trip["incidentsNearby"] == ["inc-burst (high)"]
    per_type = gov.backtester.run("commandType.failures >= 3", "5m", days=4).to_json()
    assert per_type["trips"] == 1 and per_type["tripTimes"][0]["commandType"] == "restart_service"
