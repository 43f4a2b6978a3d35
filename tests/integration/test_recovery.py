"""Half-open recovery of paused command types (seed 002's OPEN -> HALF_OPEN -> CLOSED), the rule language's
commandType.consecutiveFailures, and seed 002's default policies (issue 14 points 2 and 4)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import pytest

from engine.clock import isoformat
from engine.errors import InvalidInput
from engine.governance import Governance
from engine.jobs import GovconScheduler
from storage import audit_repo, state_repo
from storage.store import Store
from tests.conftest import OPERATOR

TYPE = "restart_service"
RULE = "Three In A Row"
DEFAULT_RULES = ("High Error Rate", "Repeated Command Failures", "Critical Incident Detected",
                 "High Rollback Rate")


@pytest.fixture
def rgov(gov):
    """L4 with TYPE whitelisted; only RULE is enabled: three consecutive failures pause the type."""
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    for name in DEFAULT_RULES:
        gov.rules.set(OPERATOR, name, {"enabled": False})
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=[TYPE, "clear_cache"])
    return gov


def add_rule(gov, **extra) -> dict:
    return gov.rules.add(OPERATOR, {"name": RULE, "condition": "commandType.consecutiveFailures >= 3",
                                    "window": "1h", "action": "pause_command_type", "alert_severity": "high",
                                    **extra})


_seq = iter(range(10**9))


def ran(gov, *statuses: str, ctype: str = TYPE, at: datetime | None = None) -> None:
    """Commands of ctype, one per status, a second apart, ending now."""
    now = at or gov.clock.now()
    n = len(statuses)
    gov.ingestor.ingest_objects([
        {"kind": "command", "id": f"c{next(_seq)}", "type": ctype, "status": s, "autonomous": True,
         "at": isoformat(now - timedelta(seconds=n - i))} for i, s in enumerate(statuses)])


def outcome(gov, grant_id: str, status: str, ctype: str = TYPE) -> None:
    report = gov.ingestor.ingest_objects([{"kind": "command", "id": grant_id, "type": ctype, "status": status,
                                           "autonomous": True, "at": isoformat(gov.clock.now())}])
    assert report.accepted == 1, report


def status(gov) -> dict:
    return gov.status(with_readiness=False)


def open_events(gov) -> list[dict]:
    return [e for e in gov.breaker_events(unresolved_only=True) if e["commandType"] == TYPE]


def trip_and_resolve(gov) -> str:
    ran(gov, "failed", "failed", "failed")
    (event,) = open_events(gov)
    assert TYPE in status(gov)["pausedCommandTypes"]
    gov.breakers.resolve(OPERATOR, event["id"], note="pool exhausted; fixed the config")
    return event["id"]


def audit_actions(gov, limit: int = 50) -> list:
    with gov.store.read() as conn:
        return audit_repo.list_entries(conn, limit=limit)


# --- half-open ----------------------------------------------------------------------------------


def test_three_probes_close_it_with_one_audit_entry_and_an_info_alert(rgov, clock, caplog):
    add_rule(rgov)
    trip_and_resolve(rgov)
    doc = status(rgov)
    assert TYPE not in doc["pausedCommandTypes"] and doc["halfOpen"] == {TYPE: 3}
    for left in (3, 2, 1):
        probe = rgov.gate.decide(TYPE, agent="bot")
        assert probe.decision == "allow" and probe.extra["probe"] is True, probe
        assert probe.extra["halfOpen"] == {"probesLeft": left} and "half-open" in probe.reason
        busy = rgov.gate.decide(TYPE, agent="bot")
        assert busy.decision == "needs_approval" and probe.grant_id in busy.reason and busy.grant_id is None
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="govcon"):
            outcome(rgov, probe.grant_id, "succeeded")
        clock.advance(timedelta(minutes=1))
        assert status(rgov)["halfOpen"] == ({TYPE: left - 1} if left > 1 else {})
    assert any("Circuit closed: restart_service" in r.getMessage() and "alert info low" in r.getMessage()
               for r in caplog.records)
    closes = [e for e in audit_actions(rgov) if e.action == "breaker.close"]
    assert len(closes) == 1 and closes[0].target == TYPE
    assert len([e for e in audit_actions(rgov) if e.action == "breaker.probe"]) == 2
    # closed: full autonomy, several grants in flight at once
    assert [rgov.gate.decide(TYPE, agent="bot").decision for _ in range(3)] == ["allow"] * 3
    assert not open_events(rgov)


@pytest.mark.parametrize("failure", ["failed", "rolled_back"])
def test_one_failed_probe_pauses_again_with_a_new_event(rgov, clock, failure):
    add_rule(rgov)
    first = trip_and_resolve(rgov)
    ok = rgov.gate.decide(TYPE, agent="bot")
    outcome(rgov, ok.grant_id, "succeeded")
    probe = rgov.gate.decide(TYPE, agent="bot")
    assert probe.extra["halfOpen"] == {"probesLeft": 2}
    outcome(rgov, probe.grant_id, failure)
    doc = status(rgov)
    assert TYPE in doc["pausedCommandTypes"] and doc["halfOpen"] == {}
    (event,) = open_events(rgov)
    assert event["id"] != first and event["ruleName"] == RULE and event["action"] == "pause_command_type"
    assert event["observed"]["probe"] == probe.grant_id and event["observed"]["outcome"] == failure
    trip = next(e for e in audit_actions(rgov) if e.action == "breaker.trip")
    assert trip.details["event"] == event["id"]
    assert rgov.gate.decide(TYPE, agent="bot").decision == "needs_approval"
    # resolving the new event starts probing over, with the rule's full count
    rgov.breakers.resolve(OPERATOR, event["id"], note="second fix")
    assert status(rgov)["halfOpen"] == {TYPE: 3}


@pytest.mark.parametrize("probes", [1, 3], ids=["it-closed-the-type", "still-half-open"])
def test_a_succeeded_probe_rolled_back_later_pauses_the_type_again(rgov, clock, probes):
    """Its success was counted (and the half-open row no longer names it), so the later rollback used to be
    stored and nothing else: with probes = 1 the type stayed closed with full autonomy."""
    add_rule(rgov, probes=probes)
    first = trip_and_resolve(rgov)
    probe = rgov.gate.decide(TYPE, agent="bot")
    outcome(rgov, probe.grant_id, "succeeded")
    assert status(rgov)["halfOpen"] == ({} if probes == 1 else {TYPE: probes - 1})
    clock.advance(timedelta(minutes=1))
    outcome(rgov, probe.grant_id, "rolled_back")
    doc = status(rgov)
    assert TYPE in doc["pausedCommandTypes"] and doc["halfOpen"] == {}
    (event,) = open_events(rgov)
    assert event["id"] != first and event["ruleName"] == RULE
    assert event["observed"]["probe"] == probe.grant_id
    assert event["observed"]["outcome"] == "rolled back after it succeeded"
    assert rgov.gate.decide(TYPE, agent="bot").decision == "needs_approval"
    assert len(open_events(rgov)) == 1


def test_a_dry_run_answers_as_a_real_ask_while_a_probe_is_in_flight(rgov, clock):
    """`govcon run --dry-run` asks without taking a grant, judged on a read: that read did not apply half-open
    recovery, so it said allow (would run) while a real ask waited for the probe in flight."""
    add_rule(rgov)
    trip_and_resolve(rgov)
    probe = rgov.gate.decide(TYPE, agent="bot")
    for _ in range(2):  # the second from the kept snapshot
        dry = rgov.gate.decide(TYPE, agent="bot", take_grant=False)
        assert dry.decision == "needs_approval" and probe.grant_id in dry.reason, dry
        clock.advance(timedelta(milliseconds=100))
    assert rgov.gate.decide(TYPE, agent="bot").decision == "needs_approval"
    outcome(rgov, probe.grant_id, "succeeded")
    dry = rgov.gate.decide(TYPE, agent="bot", take_grant=False)
    assert dry.decision == "allow" and dry.extra["probe"] is True and dry.grant_id is None


def test_a_succeeded_probe_rolled_back_in_the_same_batch_counts_as_failed(rgov):
    add_rule(rgov)
    trip_and_resolve(rgov)
    probe = rgov.gate.decide(TYPE, agent="bot")
    at = isoformat(rgov.clock.now())
    rgov.ingestor.ingest_objects([{"kind": "command", "id": probe.grant_id, "type": TYPE, "status": s,
                                   "autonomous": True, "at": at} for s in ("succeeded", "rolled_back")])
    assert TYPE in status(rgov)["pausedCommandTypes"] and status(rgov)["halfOpen"] == {}


def test_only_one_probe_at_a_time_under_concurrent_asks(rgov, store_url, clock):
    """16 askers with their own connection pools, as separate agents: exactly one probe, 5 rounds."""
    add_rule(rgov, probes=5)
    trip_and_resolve(rgov)
    govs = [Governance(Store(store_url, apply_migrations=False), clock) for _ in range(8)]
    try:
        for round_ in range(5):
            barrier = threading.Barrier(16)
            answers: list = []

            def ask(g: Governance) -> None:
                barrier.wait()
                answers.append(g.gate.decide(TYPE, agent="bot"))

            threads = [threading.Thread(target=ask, args=(govs[i % 8],)) for i in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            allowed = [d for d in answers if d.decision == "allow"]
            assert len(answers) == 16 and len(allowed) == 1, (round_, [d.reason for d in answers])
            # the others wait for the probe; on a loaded machine one may miss the store's safety deadline and
            # fail closed instead (a deny that names it): never a second allow, which the line above checks
            assert all(d.decision == "needs_approval" or (d.decision == "deny" and "failing closed" in d.reason)
                       for d in answers if d is not allowed[0]), [d.reason for d in answers]
            outcome(rgov, allowed[0].grant_id, "succeeded")
            clock.advance(timedelta(seconds=10))
        assert status(rgov)["halfOpen"] == {}
    finally:
        for g in govs:
            g.close()


def test_cooldown_reopens_without_a_human(rgov, clock):
    add_rule(rgov, cooldown="30m", probes=2)
    ran(rgov, "failed", "failed", "failed")
    (event,) = open_events(rgov)
    scheduler = GovconScheduler(rgov, "test-holder")
    clock.advance(timedelta(minutes=29))
    assert scheduler.reopen_after_cooldown() == []
    assert TYPE in status(rgov)["pausedCommandTypes"]
    clock.advance(timedelta(minutes=1))
    assert scheduler.reopen_after_cooldown() == [event["id"]]
    assert scheduler.reopen_after_cooldown() == []  # resolved once
    doc = status(rgov)
    assert TYPE not in doc["pausedCommandTypes"] and doc["halfOpen"] == {TYPE: 2}
    resolved = next(e for e in rgov.breaker_events() if e["id"] == event["id"])
    assert resolved["resolved"] and resolved["resolvedBy"] == "scheduler" and "cooldown 30m" in resolved["note"]
    assert rgov.gate.decide(TYPE, agent="bot").extra["probe"] is True


def test_the_cooldown_job_is_scheduled_with_its_own_id(rgov):
    import asyncio

    async def main() -> str | None:
        s = GovconScheduler(rgov, "test-holder")
        s.start()
        try:
            job = s.scheduler.get_job("breaker-recovery")
            return job.func.__name__ if job is not None else None
        finally:
            s.shutdown()
    assert asyncio.run(main()) == "breaker-recovery"


def test_an_expired_probe_counts_as_a_failure(rgov, clock):
    add_rule(rgov)
    trip_and_resolve(rgov)
    probe = rgov.gate.decide(TYPE, agent="bot")
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert rgov.actions.expire_due()["grants"] == 0
    # past its expiry but not yet expired by the job: still in flight, so no second probe (fail closed)
    assert rgov.gate.decide(TYPE, agent="bot").decision == "needs_approval"
    clock.advance(timedelta(seconds=1))
    assert rgov.actions.expire_due()["grants"] == 1
    (event,) = open_events(rgov)
    assert event["observed"] == {**event["observed"], "probe": probe.grant_id, "outcome": "expired"}
    assert TYPE in status(rgov)["pausedCommandTypes"]


def test_a_new_trip_while_half_open_pauses_and_ends_probing(rgov, clock):
    add_rule(rgov)
    trip_and_resolve(rgov)
    rgov.gate.decide(TYPE, agent="bot")  # a probe in flight
    clock.advance(timedelta(seconds=5))
    ran(rgov, "failed", "failed", "failed")  # unrelated runs of the type fail again: the rule trips anew
    doc = status(rgov)
    assert TYPE in doc["pausedCommandTypes"] and doc["halfOpen"] == {}
    (event,) = open_events(rgov)
    rgov.breakers.resolve(OPERATOR, event["id"], note="fixed again")
    assert status(rgov)["halfOpen"] == {TYPE: 3}
    assert rgov.gate.decide(TYPE, agent="bot").decision == "allow"  # the old probe no longer holds the slot


def test_a_released_probe_frees_the_slot(rgov):
    add_rule(rgov)
    trip_and_resolve(rgov)
    probe = rgov.gate.decide(TYPE, agent="bot")
    assert rgov.actions.release("bot", probe.grant_id, "a check failed: nothing ran")
    again = rgov.gate.decide(TYPE, agent="bot")
    assert again.decision == "allow" and again.extra["halfOpen"] == {"probesLeft": 3}


def test_manual_recovery_keeps_the_old_behaviour(rgov):
    add_rule(rgov, recovery="manual")
    trip_and_resolve(rgov)
    assert status(rgov)["halfOpen"] == {}
    decisions = [rgov.gate.decide(TYPE, agent="bot") for _ in range(3)]
    assert [d.decision for d in decisions] == ["allow"] * 3 and not any("probe" in d.extra for d in decisions)


def test_a_false_positive_gives_full_autonomy_back(rgov):
    add_rule(rgov)
    ran(rgov, "failed", "failed", "failed")
    (event,) = open_events(rgov)
    rgov.breakers.resolve(OPERATOR, event["id"], note="the monitor was wrong", false_positive=True)
    assert status(rgov)["halfOpen"] == {}


def test_other_types_are_untouched_while_one_is_half_open(rgov):
    add_rule(rgov)
    trip_and_resolve(rgov)
    rgov.gate.decide(TYPE, agent="bot")
    assert [rgov.gate.decide("clear_cache").decision for _ in range(2)] == ["allow", "allow"]


def test_govcon_status_shows_half_open(rgov, cli):
    import json
    add_rule(rgov, probes=2)
    trip_and_resolve(rgov)
    res = cli("status")
    assert res.code == 0 and "Half-open" in res.out and "restart_service (2 probes left)" in res.out, res.out
    assert json.loads(cli("status", "--json").out)["halfOpen"] == {TYPE: 2}
    probe = rgov.gate.decide(TYPE, agent="bot")
    outcome(rgov, probe.grant_id, "succeeded")
    assert "restart_service (1 probe left)" in cli("status").out


@pytest.mark.parametrize(("extra", "message"), [
    ({"probes": 0}, "rule 'Three In A Row': probes 0 must be a whole number from 1"),
    ({"probes": -2}, "rule 'Three In A Row': probes -2 must be a whole number from 1"),
    ({"cooldown": "-5m"}, "rule 'Three In A Row': cooldown '-5m' is negative"),
    ({"cooldown": "5 parsecs"}, "rule 'Three In A Row': cooldown:"),
    ({"recovery": "sometimes"}, "rule 'Three In A Row': recovery 'sometimes' is not one of half_open, manual"),
    ({"recovery": "manual", "cooldown": "1h"}, "recovery = manual forbids"),
])
def test_bad_recovery_settings_are_refused_naming_the_rule(rgov, extra, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        add_rule(rgov, **extra)
    assert RULE not in [r["name"] for r in rgov.rules.list()]  # nothing half-written


def test_rules_show_says_how_a_paused_type_comes_back(rgov, cli, me):
    rgov.grant_role(OPERATOR, me, "ops-lead")
    add_rule(rgov, cooldown="1h", probes=4)
    out = cli("rules", "show", RULE).out
    assert "recovery half-open after resolution, 4 probe(s) close it; re-opens by itself after 1h" in out, out
    res = cli("rules", "set", RULE, "--probes", "0")
    assert res.code != 0 and "rule 'Three In A Row': probes 0" in res.out + res.err
    res = cli("rules", "set", RULE, "--cooldown=-10m")
    assert res.code != 0 and "cooldown '-10m' is negative" in res.out + res.err
    assert cli("rules", "set", RULE, "--probes", "2").code == 0
    assert rgov.rules.show(RULE)["probes"] == 2


def test_rule_settings_are_shown_and_changed(rgov):
    rule = add_rule(rgov, cooldown="90m")
    assert (rule["recovery"], rule["cooldown"], rule["probes"]) == ("half_open", "90m", 3)
    changed = rgov.rules.set(OPERATOR, RULE, {"probes": 5, "cooldown": None})
    assert (changed["cooldown"], changed["probes"]) == (None, 5)
    with pytest.raises(InvalidInput, match="probes 0"):
        rgov.rules.set(OPERATOR, RULE, {"probes": 0})
    assert rgov.rules.show(RULE)["probes"] == 5


# --- commandType.consecutiveFailures ----------------------------------------------------------


def test_two_consecutive_failures_do_not_trip_three_do(rgov):
    add_rule(rgov)
    ran(rgov, "failed", "failed")
    assert not open_events(rgov)
    ran(rgov, "failed")
    (event,) = open_events(rgov)
    assert event["observed"]["commandType.consecutiveFailures"] == 3


def test_a_success_in_between_resets_the_run(rgov, clock):
    add_rule(rgov)
    ran(rgov, "failed", "failed", "succeeded", "failed", "failed")
    assert not open_events(rgov)
    clock.advance(timedelta(seconds=10))
    ran(rgov, "rolled_back")  # a rollback is a failure too (seed 002: anything but success)
    assert len(open_events(rgov)) == 1


def test_other_statuses_do_not_break_the_run_and_types_count_apart(rgov, clock):
    add_rule(rgov)
    ran(rgov, "failed", "proposed", "approved", "failed")
    ran(rgov, "failed", ctype="clear_cache")
    assert not open_events(rgov)
    clock.advance(timedelta(seconds=10))
    ran(rgov, "failed")
    assert [e["commandType"] for e in rgov.breaker_events(unresolved_only=True)] == [TYPE]


def test_failures_before_the_window_do_not_count(rgov, clock):
    add_rule(rgov)
    ran(rgov, "failed", "failed", at=clock.now() - timedelta(minutes=61))
    ran(rgov, "failed")
    assert not open_events(rgov)


def test_backtest_replays_consecutive_failures(rgov, clock):
    start = clock.now() - timedelta(days=1)
    ran(rgov, "failed", "failed", at=start)  # 2: no trip
    ran(rgov, "failed", "failed", "succeeded", "failed", "failed", at=start + timedelta(hours=3))  # reset: none
    ran(rgov, "failed", "rolled_back", "failed", at=start + timedelta(hours=6))  # 3: one trip
    result = rgov.backtester.run("commandType.consecutiveFailures >= 3", "10m", days=2).to_json()
    assert result["trips"] == 1, result["tripTimes"]
    trip = result["tripTimes"][0]
    assert trip["commandType"] == TYPE and trip["observed"]["commandType.consecutiveFailures"] == 3
    assert rgov.backtester.run("commandType.consecutiveFailures >= 2", "10m", days=2).to_json()["trips"] == 3


# --- policies: seed 002's defaults, stability, spacing, approval and rollback keys -------------------


def pgov_with(store, clock, section: dict | None) -> Governance:
    from engine.policies import configured_policies
    g = Governance(store, clock, policies=configured_policies({} if section is None else {"policies": section}))
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with g.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4",
                                command_whitelist=[TYPE, "pool_tuning", "service_restart", "code_deployment"])
    return g


def test_seed_002_policies_ship_when_none_are_configured(store, clock):
    from engine.policies import configured_policies
    byname = {p.name: p for p in configured_policies({})}
    assert set(byname) == {"pool_tuning", "service_restart", "code_deployment"}
    assert (byname["pool_tuning"].max_per_day, byname["pool_tuning"].max_per_week,
            byname["pool_tuning"].confidence_threshold, byname["pool_tuning"].rollback_mandatory) == (5, 20, 0.85, True)
    assert (byname["service_restart"].max_per_day, byname["service_restart"].max_per_week,
            byname["service_restart"].confidence_threshold) == (2, 7, 0.90)
    assert configured_policies({"policies": {}}) == []  # an empty [policies] table: no policies at all
    g = pgov_with(store, clock, None)
    assert "below threshold 85%" in g.gate.decide("pool_tuning", confidence=0.84).reason
    assert [g.gate.decide("pool_tuning", confidence=0.85).decision for _ in range(6)] == ["allow"] * 5 + [
        "needs_approval"]
    assert "below threshold 90%" in g.gate.decide("service_restart", confidence=0.89).reason
    assert [g.gate.decide("service_restart", confidence=0.9).decision for _ in range(3)] == [
        "allow", "allow", "needs_approval"]
    deploy = g.gate.decide("code_deployment", confidence=1.0)
    assert deploy.decision == "needs_approval" and "policy code_deployment" in deploy.reason
    assert g.gate.decide(TYPE).decision == "allow"  # a type no default covers: no policy


def test_requires_approval_is_a_policy_answer_not_a_store_failure(store, clock):
    g = pgov_with(store, clock, {"restarts": {"command_types": [TYPE], "requires_approval": True}})
    d = g.gate.decide(TYPE, confidence=0.99)
    assert d.decision == "needs_approval" and d.reason == "policy restarts: requires human approval for every action"


def test_the_default_pool_tuning_policy_makes_govcon_run_refuse_without_rollback(rgov, cli, me, tmp_path):
    """No config file, so no [policies]: `db init` seeds seed 002's defaults into the store (done here as the
    CLI does it), and their pool_tuning (rollback_mandatory) applies to `govcon run`."""
    from engine.policies import DEFAULT_POLICIES, load_policies
    from engine.store_config import import_config
    import_config(rgov.store, rgov.clock, OPERATOR, policies=load_policies(DEFAULT_POLICIES), sinks=None,
                  source="seed 002's default policies")
    rgov.grant_role(OPERATOR, me, "on-call")
    with rgov.store.write() as conn:
        state_repo.update_state(conn, command_whitelist=["pool_tuning"])
    mark = tmp_path / "ran"
    res = cli("run", "pool_tuning", "--agent", "tuner", "--confidence", "0.9", "--", "touch", str(mark))
    assert res.code == 2 and "makes a rollback mandatory: give --rollback CMD" in res.out, res.out + res.err
    assert not mark.exists() and rgov.actions.list()["grants"] == []
    res = cli("run", "pool_tuning", "--agent", "tuner", "--confidence", "0.9", "--rollback", "true", "--",
              "touch", str(mark))
    assert res.code == 0, res.out + res.err
    assert mark.exists()


def test_stability_check_names_the_incident_on_the_same_service(store, clock):
    g = pgov_with(store, clock, {"restarts": {"command_types": [TYPE], "stable_for": "30m"}})
    assert g.policies.find(TYPE).to_json()["stableFor"] == "30m"
    g.ingestor.ingest_objects([{"kind": "incident", "id": "INC-7", "severity": "high", "service": "api",
                                "at": isoformat(clock.now() - timedelta(minutes=10))}])
    d = g.gate.decide(TYPE, service="api")
    assert d.decision == "needs_approval" and "api is not stable: incident INC-7 (high)" in d.reason
    assert g.gate.decide(TYPE, service="db").decision == "allow"  # another service's incident does not count
    assert "name the service" in g.gate.decide(TYPE).reason  # fail closed: which service is unknown
    clock.advance(timedelta(minutes=20))  # INC-7 is exactly 30 minutes old: still within the window
    assert g.gate.decide(TYPE, service="api").decision == "needs_approval"
    clock.advance(timedelta(seconds=1))
    assert g.gate.decide(TYPE, service="api").decision == "allow"


def test_min_interval_expresses_seed_004s_five_minutes_between_actions(store, clock):
    g = pgov_with(store, clock, {"spaced": {"command_types": [TYPE], "min_interval": "5m"}})
    assert g.gate.decide(TYPE).decision == "allow"
    clock.advance(timedelta(minutes=5) - timedelta(seconds=1))
    d = g.gate.decide(TYPE)
    assert d.decision == "needs_approval" and "at least 5m between actions" in d.reason
    clock.advance(timedelta(seconds=1))
    assert g.gate.decide(TYPE).decision == "allow"


def test_bad_stability_window_is_refused_with_the_place():
    from engine.policies import load_policies
    with pytest.raises(InvalidInput, match=r"\[policies.x\].stable_for"):
        load_policies({"x": {"stable_for": "-30m"}})
    with pytest.raises(InvalidInput, match="did you mean stable_for"):
        load_policies({"x": {"stable_fro": "30m"}})
