"""The event simulator: deterministic, ordered, valid, at the rates asked for; the scripted burst
produces what the default breakers trip on (checked through a real store and MetricsCollector)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from engine.clock import ManualClock
from engine.events import parse_event
from engine.ingest import Ingestor
from engine.metrics import MetricsCollector
from engine.simulator import COMMAND_TYPES, AgentSimulator, generate_history
from storage import events_repo
from storage.store import Store

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = END - timedelta(days=20)

#: statuses each status may follow within one command's lifecycle
NEXT = {None: {"proposed"}, "proposed": {"approved", "rejected"}, "approved": {"succeeded", "failed"},
        "succeeded": {"rolled_back"}, "rejected": set(), "failed": set(), "rolled_back": set()}


def _at(event: dict) -> datetime:
    return datetime.fromisoformat(event["at"])


@pytest.fixture(scope="module")
def history() -> list[dict]:
    return list(generate_history(START, END, seed=7))


def test_same_seed_same_events_other_seed_other_events(history):
    assert list(generate_history(START, END, seed=7)) == history
    assert list(generate_history(START, END, seed=8)) != history


def test_history_is_ordered_in_range_and_every_event_parses(history):
    times = [_at(e) for e in history]
    assert times == sorted(times)
    assert START <= times[0] and times[-1] < END
    assert all(e["at"].endswith("Z") for e in history)
    kinds = Counter(parse_event(e, END).kind for e in history)
    assert set(kinds) == {"command", "incident", "safety", "eval_coverage"}


def test_command_lifecycles_follow_the_status_order(history):
    last: dict[str, str | None] = defaultdict(lambda: None)
    flags: dict[str, set] = defaultdict(set)
    for e in (e for e in history if e["kind"] == "command"):
        assert e["status"] in NEXT[last[e["id"]]], f"{e['id']}: {last[e['id']]} -> {e['status']}"
        last[e["id"]] = e["status"]
        flags[e["id"]].add((e["type"], e["autonomous"]))
    assert all(len(f) == 1 for f in flags.values()), "type and autonomous flag are fixed per command"


def test_rates_are_roughly_as_configured():
    events = list(generate_history(START, END, seed=3, commands_per_hour=60, failure_rate=0.05,
                                   autonomous_share=0.4, rollback_rate=0.1, incident_rate=5,
                                   safety_rate=2, eval_coverage=(40, 50)))
    statuses = defaultdict(set)
    autonomous = set()
    for e in (e for e in events if e["kind"] == "command"):
        statuses[e["id"]].add(e["status"])
        if e["autonomous"]:
            autonomous.add(e["id"])
    days = (END - START).days
    assert 0.9 * 60 * 24 * days < len(statuses) < 1.1 * 60 * 24 * days
    executed = [s for s in statuses.values() if s & {"succeeded", "failed"}]
    failed = sum("failed" in s for s in executed)
    assert 0.04 < failed / len(executed) < 0.06
    succeeded = [s for s in executed if "succeeded" in s]
    assert 0.08 < sum("rolled_back" in s for s in succeeded) / len(succeeded) < 0.12
    assert 0.36 < len(autonomous) / len(statuses) < 0.44
    incidents = [e for e in events if e["kind"] == "incident"]
    assert 0.6 * 5 * days < len(incidents) < 1.4 * 5 * days
    severities = Counter(e["severity"] for e in incidents)
    assert severities["low"] + severities["medium"] > len(incidents) / 2
    assert all(e["command_id"] in statuses for e in incidents if "command_id" in e)
    assert 0.6 * 2 * days < sum(e["kind"] == "safety" for e in events) < 1.4 * 2 * days
    coverage = [e for e in events if e["kind"] == "eval_coverage"]
    assert len(coverage) == days and all(40 <= e["covered"] <= 50 == e["total"] for e in coverage)


def test_critical_incidents_name_a_command():
    events = list(generate_history(START, END, seed=1, incident_rate=50))
    critical = [e for e in events if e["kind"] == "incident" and e["severity"] == "critical"]
    assert critical and all(e.get("command_id", "").startswith("hist-cmd-") for e in critical)


def test_bad_period_is_refused():
    with pytest.raises(ValueError, match="end after start"):
        next(generate_history(END, START))


def _run_agent(agent: AgentSimulator, seconds: int) -> list[tuple[datetime, list[dict]]]:
    return [(END + timedelta(seconds=s), agent.next_events(END + timedelta(seconds=s)))
            for s in range(seconds + 1)]


def test_agent_sends_about_one_command_a_second_each_event_due_by_its_call():
    calls = _run_agent(AgentSimulator(seed=5), 600)
    previous = END - timedelta(seconds=1)
    for now, events in calls:
        for e in events:
            parse_event(e, now)
            assert previous < _at(e) <= now
        previous = now
    events = [e for _, events in calls for e in events]
    proposed = sum(e.get("status") == "proposed" for e in events)
    assert 500 < proposed < 700
    assert not any(e.get("severity") == "critical" for e in events), "only the script makes a critical"
    assert [e for _, es in _run_agent(AgentSimulator(seed=5), 600) for e in es] == events


def test_agent_refuses_time_going_backwards():
    agent = AgentSimulator()
    agent.next_events(END)
    with pytest.raises(ValueError, match="before the previous call"):
        agent.next_events(END - timedelta(seconds=5))


def test_failure_burst_trips_the_default_breakers_conditions(sqlite_url):
    """Ingest 8 minutes of the live agent with a burst at 4:00 into a real store, then judge the
    default rules' conditions as the breaker evaluator will: over windows ending now."""
    agent = AgentSimulator(seed=11)
    burst_at = END + timedelta(minutes=4)
    agent.script_failure_burst(burst_at, "drain_node", 20)
    calls = _run_agent(agent, 8 * 60)
    events = [e for _, es in calls for e in es]

    burst_failures = {e["id"] for e in events if e.get("status") == "failed" and e["type"] == "drain_node"
                      and e["autonomous"] and _at(e) >= burst_at}
    assert len(burst_failures) >= 20
    critical = [e for e in events if e["kind"] == "incident" and e["severity"] == "critical"]
    assert len(critical) == 1 and critical[0]["command_id"] in burst_failures
    assert burst_at < _at(critical[0]) < burst_at + timedelta(seconds=30)

    clock = ManualClock(END + timedelta(minutes=8))
    store = Store(sqlite_url)
    try:
        report = Ingestor(store, clock).ingest_objects(events)
        assert report.rejected == 0 and report.accepted == len(events)
        judged_at = _at(critical[0]) + timedelta(seconds=5)
        metrics = MetricsCollector(store, clock).collect(judged_at - timedelta(minutes=5), judged_at)
        assert metrics.commands.total >= 10 and metrics.rates["errorRate"] > 0.05
        with store.read() as conn:
            by_type = events_repo.command_counts_by_type(conn, judged_at - timedelta(minutes=5), judged_at)
            severities = events_repo.incident_severities(conn, judged_at - timedelta(minutes=1), judged_at)
        assert by_type["drain_node"].get("failed", 0) >= 3
        assert "critical" in severities
        before = MetricsCollector(store, clock).collect(burst_at - timedelta(minutes=5), burst_at)
        assert before.commands.total >= 10 and before.rates["errorRate"] <= 0.05, "calm before the burst"
    finally:
        store.dispose()


def test_burst_needs_at_least_one_command():
    with pytest.raises(ValueError, match="n >= 1"):
        AgentSimulator().script_failure_burst(END, COMMAND_TYPES[0], 0)
