"""AutonomyMetrics from the real store: distinct commands per status, unknown (null) rates for zero
denominators, incident attribution, safety counts, [start, end) periods, snapshots."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from engine.metrics import collect_in
from storage import readiness_repo

DAY = timedelta(days=1)


def metrics(gov, since=DAY):
    return gov.metrics.collect_since(since)


def test_counts_are_of_distinct_commands_per_status(gov, ev, ingest):
    ingest([*ev.lifecycle("c1", ["proposed", "approved", "succeeded", "rolled_back"]),
            *ev.lifecycle("c2", ["proposed", "approved", "failed"]),
            *ev.lifecycle("c3", ["proposed", "rejected"]),
            *ev.lifecycle("c4", ["succeeded"]),
            ev.command("c4", "succeeded")])  # a duplicate is not a second command
    doc = metrics(gov).to_json()
    assert doc["commands"] == {"total": 4, "proposed": 3, "approved": 2, "rejected": 1, "succeeded": 2,
                               "failed": 1, "rolledBack": 1}
    assert doc["rates"] == {"successRate": 2 / 3, "approvalRate": 2 / 3, "rollbackRate": 0.5,
                            "errorRate": 0.25}


def test_autonomous_commands_are_counted_apart(gov, ev, ingest):
    ingest([*ev.lifecycle("a1", ["proposed", "succeeded"], autonomous=True),
            *ev.lifecycle("h1", ["proposed", "failed"], autonomous=False)])
    doc = metrics(gov).to_json()
    assert doc["commands"]["total"] == 2
    assert doc["autonomous"]["commands"]["total"] == 1
    assert doc["autonomous"]["rates"]["successRate"] == 1.0


@pytest.mark.parametrize("events, unknown", [
    pytest.param(lambda ev: [], {"successRate", "approvalRate", "rollbackRate", "errorRate"}, id="nothing"),
    pytest.param(lambda ev: [ev.command("c", "proposed"), ev.command("c", "approved")],
                 {"successRate", "rollbackRate"}, id="no-succeeded-or-failed"),
    pytest.param(lambda ev: [ev.command("c", "succeeded")], {"approvalRate"}, id="no-proposed"),
    pytest.param(lambda ev: [ev.command("c", "proposed"), ev.command("c", "failed")], {"rollbackRate"},
                 id="no-succeeded"),
])
def test_a_rate_with_a_zero_denominator_is_null(gov, ev, ingest, events, unknown):
    ingest(events(ev))
    m = metrics(gov)
    rates = m.rates
    assert {k for k, v in rates.items() if v is None} == unknown
    doc = json.loads(json.dumps(m.to_json()))
    for name in ("successRate", "approvalRate", "rollbackRate", "errorRate"):
        assert (doc["rates"][name] is None) == (name in unknown), name
    assert all(v is not None for k, v in doc["rates"].items() if k not in unknown)


def test_null_rates_are_json_null_not_zero(gov):
    text = json.dumps(metrics(gov).to_json())
    for name in ("successRate", "approvalRate", "rollbackRate", "errorRate"):
        assert f'"{name}": null' in text


def test_rates_of_zero_and_one_are_numbers(gov, ev, ingest):
    ingest([ev.command("c1", "proposed"), ev.command("c1", "failed"), ev.command("c2", "failed")])
    rates = metrics(gov).rates
    assert rates["successRate"] == 0.0 and rates["errorRate"] == 1.0 and rates["approvalRate"] == 0.0


def test_incidents_are_attributed_to_autonomous_commands(gov, ev, ingest):
    ingest([ev.command("auto", "proposed", autonomous=True),
            ev.command("auto", "failed", autonomous=True),
            ev.command("human", "failed", autonomous=False),
            ev.incident("i1", "critical", "auto"),
            ev.incident("i2", "high", "auto"),
            ev.incident("i3", "critical", "human"),
            ev.incident("i4", "critical"),                 # names no command
            ev.incident("i5", "low", "never-reported")])   # names a command we never saw
    inc = metrics(gov).to_json()["incidents"]
    assert inc == {"total": 5, "critical": 3, "fromAutonomousActions": 2}


def test_an_incident_counts_its_autonomous_command_even_when_the_command_came_before_the_period(
        gov, ev, ingest, clock):
    ingest([ev.command("auto", "succeeded", autonomous=True, at=clock.now() - timedelta(days=3)),
            ev.incident("i1", "medium", "auto")])
    m = metrics(gov)
    assert m.commands.total == 0
    assert m.incidents["fromAutonomousActions"] == 1


def test_an_incident_arriving_before_its_command_is_attributed_once_the_command_arrives(gov, ev, ingest):
    ingest([ev.incident("i1", "high", "auto")])
    assert metrics(gov).incidents["fromAutonomousActions"] == 0
    ingest([ev.command("auto", "failed", autonomous=True)])
    assert metrics(gov).incidents["fromAutonomousActions"] == 1


def test_safety_counts(gov, ev, ingest):
    ingest([ev.safety("constraint_violation", id="s1"), ev.safety("constraint_violation", id="s2"),
            ev.safety("emergency_abort"), ev.safety("safety_gate_trigger", id="g1"),
            ev.safety("safety_gate_trigger", id="g2"), ev.safety("safety_gate_trigger", id="g3")])
    assert metrics(gov).to_json()["safety"] == {"constraintViolations": 2, "emergencyAborts": 1,
                                                "safetyGateTriggers": 3}


def test_period_includes_its_start_and_excludes_its_end(gov, ev, ingest, clock):
    start, end = clock.now() - timedelta(hours=10), clock.now() - timedelta(hours=5)
    second = timedelta(seconds=1)
    ingest([ev.command("before", "succeeded", at=start - second),
            ev.command("at-start", "succeeded", at=start),
            ev.command("inside", "failed", at=start + timedelta(hours=1)),
            ev.command("last", "succeeded", at=end - timedelta(microseconds=1)),
            ev.command("at-end", "succeeded", at=end),
            ev.incident("i-start", "critical", at=start), ev.incident("i-end", "critical", at=end),
            ev.safety("emergency_abort", at=start), ev.safety("emergency_abort", at=end)])
    m = gov.metrics.collect(start, end)
    assert (m.commands.total, m.commands.succeeded, m.commands.failed) == (3, 2, 1)
    assert m.incidents["total"] == 1
    assert m.safety["emergencyAborts"] == 1
    doc = m.to_json()
    assert doc["period"] == {"start": "2026-11-20T02:00:00Z", "end": "2026-11-20T07:00:00Z"}


def test_a_command_whose_statuses_straddle_the_period_counts_what_fell_inside(gov, ev, ingest, clock):
    ingest(ev.lifecycle("c", ["proposed", "approved"], at=clock.now() - timedelta(days=2))
           + [ev.command("c", "succeeded")])
    m = metrics(gov)
    assert (m.commands.total, m.commands.proposed, m.commands.succeeded) == (1, 0, 1)
    assert m.rates["approvalRate"] is None


def test_the_default_since_is_a_moving_window(gov, ev, ingest, clock):
    ingest([ev.command("c", "failed")])
    assert metrics(gov, timedelta(days=7)).commands.failed == 1
    clock.advance(timedelta(days=7))
    assert metrics(gov, timedelta(days=7)).commands.failed == 0


def test_an_empty_or_inverted_period_is_refused(gov, clock):
    with gov.store.read() as conn, pytest.raises(ValueError, match="end after it starts"):
        collect_in(conn, clock.now(), clock.now())


def test_snapshot_stores_the_period_for_trend_plots(gov, ev, ingest, clock):
    ingest([ev.command("c1", "succeeded"), ev.command("c2", "failed")])
    gov.metrics.snapshot(timedelta(hours=2))
    with gov.store.read() as conn:
        [snap] = readiness_repo.snapshots(conn, clock.now() - DAY)
    assert snap.taken_at == clock.now()
    assert (snap.total, snap.success_rate, snap.error_rate, snap.approval_rate) == (2, 0.5, 0.5, None)
    assert snap.data["commands"]["total"] == 2
    assert snap.data["rates"]["approvalRate"] is None
