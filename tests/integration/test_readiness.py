"""Readiness from real data: seed 000's checklists and arithmetic (76/80 is ready, a failing required
item never is), data-decided items decided from the store, attestations that expire."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from engine.errors import InvalidInput, NotFound
from engine.readiness import ALL_ITEMS, CHECKLISTS, find_item, slugify
from storage import readiness_repo, state_repo
from tests.conftest import OPERATOR

SEED = {  # seed 000, verbatim: name -> (weight, required)
    "technical": [("6+ months running at L3", 5, True), ("Command success rate >99.5%", 5, True),
                  ("Command approval rate >80%", 3, False), ("Rollback rate <2%", 2, False),
                  ("Eval coverage >90%", 5, True), ("Zero critical incidents from commands", 5, True),
                  ("Circuit breakers implemented", 3, True), ("Real-time monitoring operational", 3, True),
                  ("Kill switch tested", 2, True), ("Chaos engineering tests passing", 2, False)],
    "process": [("Incident response playbook complete", 5, True), ("Runbooks for autonomous actions", 3, True),
                ("Accountability framework documented", 2, True), ("Approval workflow defined", 5, True),
                ("Escalation paths established", 3, True), ("Rollback procedures tested", 2, True),
                ("Compliance requirements validated", 3, False), ("Audit trail comprehensive", 2, True)],
    "organizational": [("Team trained on monitoring", 5, True), ("On-call rotation established", 3, True),
                       ("24/7 coverage available", 2, False), ("Leadership approval obtained", 5, True),
                       ("Customer communication plan ready", 3, False),
                       ("Design partner validation complete", 2, True)],
}
ATTESTED = [i.name for i in ALL_ITEMS if i.decided_by == "attestation"]
CHAOS = "Chaos engineering tests passing"


def build(gov, ev, ingest, clock, *, commands=100, rolled_back=0, failed=0, coverage=(46, 50),
          drill=True, lease=True, attest_all_but=(CHAOS,), incidents=()):
    """A store whose data-decided items pass (unless told otherwise), built the way production builds
    it: ingested events, a recorded drill, a held leader lease, attestations through gov.attest."""
    events = []
    for i in range(commands):
        end = "failed" if i < failed else "succeeded"
        events += ev.lifecycle(f"cmd-{i}", ["proposed", "approved", end], at=ev.base - timedelta(days=i % 20))
    events += [ev.command(f"cmd-{i}", "rolled_back") for i in range(failed, failed + rolled_back)]
    if coverage:
        events.append(ev.coverage(*coverage))
    events += list(incidents)
    report = ingest(events)
    assert report.rejected == 0
    now = clock.now()
    with gov.store.write() as conn:
        if drill:
            state_repo.record_drill(conn, at=now - timedelta(days=3), operator=OPERATOR, passed=True,
                                    details="gate refused while engaged")
        if lease:
            assert state_repo.try_acquire_lease(conn, name="scheduler", holder="console@host:1", now=now,
                                                expires_at=now + timedelta(minutes=1))
    for name in ATTESTED:
        if name not in attest_all_but:
            gov.attest(OPERATOR, name, passed=True, evidence=f"https://wiki/{slugify(name)}")
    return gov.readiness.assess()


def item(report, name):
    return next(r for rs in report.results.values() for r in rs if r.item.name == name)


def failing(report):
    return sorted(r.item.name for rs in report.results.values() for r in rs if not r.status)


def test_checklists_are_seed_000_verbatim():
    assert {c: [(i.name, i.weight, i.required) for i in items] for c, items in CHECKLISTS.items()} == SEED
    assert [sum(i.weight for i in items) for items in CHECKLISTS.values()] == [35, 25, 20]


def test_items_are_found_by_name_or_slug():
    assert find_item("incident-response-playbook-complete").name == "Incident response playbook complete"
    assert find_item("24-7-coverage-available").name == "24/7 coverage available"
    assert find_item("Chaos engineering tests passing").slug == "chaos-engineering-tests-passing"
    assert find_item("no such item") is None
    assert len({i.slug for i in ALL_ITEMS}) == len(ALL_ITEMS)


def test_at_76_of_80_with_only_optional_items_failing_it_is_ready(gov, ev, ingest, clock):
    report = build(gov, ev, ingest, clock, rolled_back=2)  # rollback rate 2/100 = 2%: not < 2%
    assert failing(report) == sorted(["Rollback rate <2%", CHAOS])
    assert report.points == (76, 80)
    assert report.score == 0.95
    assert report.blockers == []
    assert report.ready is True
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["overall"] == {"score": 0.95, "ready": True, "blockers": [], "points": 76, "possible": 80}
    assert doc["technical"]["score"] == round(31 / 35, 4)
    assert doc["process"]["score"] == 1.0 and doc["organizational"]["score"] == 1.0
    assert "2.00%" in item(report, "Rollback rate <2%").details
    assert doc["recommendations"][0]["type"] == "expand_scope"
    assert {a["item"] for a in doc["nextActions"]} == {"Rollback rate <2%", CHAOS}


def test_at_76_of_80_with_a_required_item_failing_it_is_not_ready(gov, ev, ingest, clock):
    report = build(gov, ev, ingest, clock, rolled_back=1, drill=False)  # Kill switch tested: 2, required
    assert failing(report) == sorted(["Kill switch tested", CHAOS])
    assert report.score == 0.95
    assert report.ready is False
    assert report.blockers == ["Kill switch tested"]
    doc = report.to_json()
    assert doc["overall"]["blockers"] == ["Kill switch tested"] and doc["overall"]["ready"] is False
    assert "no kill-switch drill" in item(report, "Kill switch tested").details
    assert doc["recommendations"][0]["type"] != "expand_scope"
    assert doc["nextActions"][0] == {"item": "Kill switch tested", "required": True, "points": 2,
                                     "action": item(report, "Kill switch tested").details,
                                     "command": "govcon kill-switch drill"}


def test_just_below_the_threshold_it_is_not_ready_even_without_blockers(gov, ev, ingest, clock):
    report = build(gov, ev, ingest, clock, attest_all_but=(CHAOS, "Compliance requirements validated"))
    assert report.points == (75, 80)
    assert report.blockers == [] and report.ready is False


def test_everything_passing_scores_one(gov, ev, ingest, clock):
    report = build(gov, ev, ingest, clock, attest_all_but=())
    assert failing(report) == [] and report.score == 1.0 and report.ready


def test_a_failed_attestation_of_a_required_item_is_a_blocker(gov, ev, ingest, clock):
    build(gov, ev, ingest, clock)
    gov.attest(OPERATOR, "approval-workflow-defined", passed=False, evidence="workflow still in draft")
    report = gov.readiness.assess()
    result = item(report, "Approval workflow defined")
    assert result.status is False
    assert result.details.startswith(f"failed by {OPERATOR} on 2026-11-20")
    assert "workflow still in draft" in result.details
    assert report.blockers == ["Approval workflow defined"] and not report.ready


def test_the_newest_attestation_replaces_the_older_ones(gov, ev, ingest, clock):
    gov.attest(OPERATOR, CHAOS, passed=False, evidence="game day failed")
    clock.advance(timedelta(hours=1))
    gov.attest(OPERATOR, CHAOS, passed=True, evidence="game day rerun passed")
    result = item(gov.readiness.assess(), CHAOS)
    assert result.status is True and "rerun passed" in result.details


def test_an_attestation_expires(gov, ev, ingest, clock):
    build(gov, ev, ingest, clock)
    gov.attest(OPERATOR, CHAOS, passed=True, evidence="game day 12", valid_for=timedelta(days=10))
    expires = clock.now() + timedelta(days=10)
    clock.set(expires - timedelta(seconds=1))
    assert item(gov.readiness.assess(), CHAOS).status is True
    clock.set(expires)
    result = item(gov.readiness.assess(), CHAOS)
    assert result.status is False
    assert "expired" in result.details and "2026-11-30" in result.details


def test_attestations_expire_after_90_days_by_default(gov, clock):
    doc = gov.attest(OPERATOR, "audit-trail-comprehensive", passed=True, evidence="audit verify in CI")
    assert doc["expiresAt"] == "2027-02-18T12:00:00Z"
    clock.advance(timedelta(days=90))
    assert "expired" in item(gov.readiness.assess(), "Audit trail comprehensive").details


def test_an_unattested_item_says_how_to_attest_it(gov):
    result = item(gov.readiness.assess(), "Team trained on monitoring")
    assert result.status is False
    assert "govcon attest team-trained-on-monitoring --pass" in result.details


def test_attest_refuses_unknown_items_data_items_and_empty_evidence(gov):
    with pytest.raises(NotFound, match="no checklist item 'Vibes are good'"):
        gov.attest(OPERATOR, "Vibes are good", passed=True, evidence="trust me")
    with pytest.raises(InvalidInput, match="decided from the store's data"):
        gov.attest(OPERATOR, "Kill switch tested", passed=True, evidence="we did it")
    with pytest.raises(InvalidInput, match="--evidence"):
        gov.attest(OPERATOR, CHAOS, passed=True, evidence="   ")
    with gov.store.read() as conn:
        assert readiness_repo.latest_attestations(conn) == {}


# --- data-decided items, one at a time --------------------------------------------------------


def test_success_rate_at_99_5_percent_is_not_above_it(gov, ev, ingest, clock):
    report = build(gov, ev, ingest, clock, commands=200, failed=1)  # 199/200 = 99.5%
    result = item(report, "Command success rate >99.5%")
    assert result.status is False and "99.50%" in result.details
    assert "Command success rate >99.5%" in report.blockers


def test_rates_with_no_data_fail_as_unknown(gov):
    report = gov.readiness.assess()
    for name in ("Command success rate >99.5%", "Command approval rate >80%", "Rollback rate <2%"):
        result = item(report, name)
        assert result.status is False and "unknown" in result.details, name


def test_eval_coverage_uses_the_latest_report(gov, ev, ingest, clock):
    ingest([ev.coverage(49, 50, at=ev.base - timedelta(days=2)), ev.coverage(45, 50)])  # latest: 90%
    result = item(gov.readiness.assess(), "Eval coverage >90%")
    assert result.status is False and "45/50" in result.details
    ingest([ev.coverage(46, 50, at=ev.base + timedelta(minutes=1))])
    assert item(gov.readiness.assess(), "Eval coverage >90%").status is True


def test_eval_coverage_older_than_the_lookback_does_not_count(gov, ev, ingest, clock):
    ingest([ev.coverage(50, 50, at=clock.now() - timedelta(days=31))])
    result = item(gov.readiness.assess(), "Eval coverage >90%")
    assert result.status is False and "no eval coverage" in result.details


def test_a_critical_incident_naming_a_command_fails_the_item(gov, ev, ingest, clock):
    report = build(gov, ev, ingest, clock, incidents=[ev.incident("inc-1", "critical"),       # no command
                                                       ev.incident("inc-2", "high", "cmd-3")])  # not critical
    assert item(report, "Zero critical incidents from commands").status is True
    ingest([ev.incident("inc-3", "critical", "cmd-4")])
    report = gov.readiness.assess()
    result = item(report, "Zero critical incidents from commands")
    assert result.status is False and result.details.startswith("1 critical")
    assert "Zero critical incidents from commands" in report.blockers


def test_time_at_l3_counts_from_adoption(gov, clock):
    result = item(gov.readiness.assess(), "6+ months running at L3")
    assert result.status is True and result.details.startswith("200 days since entering L3 on 2026-05-04")


def test_breakers_need_an_enabled_revert_rule_in_enforce_mode(gov, store):
    assert item(gov.readiness.assess(), "Circuit breakers implemented").status is True
    with store.write() as conn:
        state_repo.update_state(conn, breaker_mode="shadow")
    result = item(gov.readiness.assess(), "Circuit breakers implemented")
    assert result.status is False and "mode shadow" in result.details


def test_monitoring_needs_a_live_leader_lease(gov, store, clock):
    assert "no scheduler" in item(gov.readiness.assess(), "Real-time monitoring operational").details
    now = clock.now()
    with store.write() as conn:
        state_repo.try_acquire_lease(conn, name="scheduler", holder="serve@h:9", now=now,
                                     expires_at=now + timedelta(seconds=30))
    assert item(gov.readiness.assess(), "Real-time monitoring operational").status is True
    clock.advance(timedelta(seconds=30))
    result = item(gov.readiness.assess(), "Real-time monitoring operational")
    assert result.status is False and "lost its lease" in result.details


def test_a_kill_switch_drill_counts_for_90_days_and_only_if_it_passed(gov, store, clock):
    with store.write() as conn:
        state_repo.record_drill(conn, at=clock.now(), operator=OPERATOR, passed=False, details="gate allowed")
    assert item(gov.readiness.assess(), "Kill switch tested").status is False
    with store.write() as conn:
        state_repo.record_drill(conn, at=clock.now(), operator=OPERATOR, passed=True, details="ok")
    assert item(gov.readiness.assess(), "Kill switch tested").status is True
    clock.advance(timedelta(days=90, seconds=1))
    result = item(gov.readiness.assess(), "Kill switch tested")
    assert result.status is False and "older than 90 days" in result.details


def test_record_stores_the_assessment(gov, ev, ingest, clock):
    report = build(gov, ev, ingest, clock, rolled_back=2)
    gov.readiness.record(report)
    with gov.store.read() as conn:
        [row] = readiness_repo.assessments(conn, clock.now() - timedelta(days=1))
    assert (row.score, row.ready) == (0.95, True)
