"""Gate policies from the config file: rate limits, confidence, maintenance windows, explain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.clock import isoformat
from engine.errors import InvalidInput
from engine.governance import Governance
from engine.policies import load_policies
from storage import state_repo
from tests.conftest import OPERATOR

POLICIES = {
    "service_restart": {"command_types": ["restart_service"], "max_per_day": 2, "max_per_week": 3,
                        "confidence_threshold": 0.9, "notification_level": "alert"},
    "pool_tuning": {"maintenance_window_required": True, "maintenance_window": "02:00-05:00"},
    "code_deployment": {"enabled": False, "notification_level": "approval_required"},
}


@pytest.fixture
def pgov(store, clock):
    g = Governance(store, clock, policies=load_policies(POLICIES))
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4",
                                command_whitelist=["restart_service", "pool_tuning", "code_deployment"])
    return g


def ran(gov, n: int, at: datetime, prefix: str) -> None:
    gov.ingestor.ingest_objects([{"kind": "command", "id": f"{prefix}{i}", "type": "restart_service",
                                  "status": "succeeded", "autonomous": True, "at": isoformat(at)} for i in range(n)])


def test_daily_and_weekly_limits_with_remaining_budget(pgov, clock):
    d = pgov.gate.decide("restart_service", confidence=0.95, take_grant=False)  # a dry run takes no budget
    assert d.decision == "allow" and d.grant_id is None
    assert d.to_json()["budget"]["day"] == {"used": 0, "limit": 2, "remaining": 2}
    ran(pgov, 2, clock.now() - timedelta(hours=3), "a")
    d = pgov.gate.decide("restart_service", confidence=0.95)
    assert d.decision == "needs_approval" and "daily limit reached (2/2)" in d.reason
    clock.advance(timedelta(days=1, hours=1))
    ran(pgov, 1, clock.now() - timedelta(hours=1), "b")
    d = pgov.gate.decide("restart_service", confidence=0.95)
    assert d.decision == "needs_approval" and "weekly limit reached (3/3)" in d.reason


def test_confidence_threshold(pgov):
    assert "below threshold 90%" in pgov.gate.decide("restart_service", confidence=0.85).reason
    assert "confidence required" in pgov.gate.decide("restart_service").reason
    assert pgov.gate.decide("restart_service", confidence=0.9).decision == "allow"


def test_maintenance_window(pgov, clock):
    clock.set(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    d = pgov.gate.decide("pool_tuning")
    assert d.decision == "needs_approval" and "outside the maintenance window 02:00-05:00 UTC" in d.reason
    clock.set(datetime(2026, 11, 22, 2, 30, tzinfo=UTC))
    assert pgov.gate.decide("pool_tuning").decision == "allow"


def test_disabled_policy_and_action_class(pgov):
    assert "disabled" in pgov.gate.decide("code_deployment").reason
    # an action class adds the policy it names to the one covering the type: it can only narrow
    assert "disabled" in pgov.gate.decide("restart_service", confidence=0.95, action_class="code_deployment").reason


def test_kill_switch_still_wins(pgov):
    pgov.grant_role(OPERATOR, OPERATOR, "on-call")
    pgov.overrides.engage_kill_switch(OPERATOR, "drill")
    assert pgov.gate.decide("restart_service", confidence=0.99).decision == "deny"


def test_bad_policies_are_refused_with_the_place():
    with pytest.raises(InvalidInput, match=r"\[policies.x\].max_per_day"):
        load_policies({"x": {"max_per_day": -1}})
    with pytest.raises(InvalidInput, match="maintenance_window"):
        load_policies({"x": {"maintenance_window_required": True}})
    with pytest.raises(InvalidInput, match="unknown keys"):
        load_policies({"x": {"max_per_hour": 1}})


def test_explain_lists_the_policy(pgov):
    p = pgov.policies.find("restart_service", None)
    assert p.to_json()["maxPerDay"] == 2 and p.name == "service_restart"
    assert {x["name"] for x in pgov.policies.explain()} == set(POLICIES)


def test_reused_counts_are_refreshed_by_new_events_and_by_age(pgov, clock):
    """Counts of runs reported without a grant are reused only while no command event arrives, and for at
    most 30 s: a reused count can only be too high (runs age out of the window), never too low. Grants are
    counted afresh on every ask."""
    ran(pgov, 2, clock.now() - timedelta(hours=23, minutes=59, seconds=40), "old")
    assert "daily limit reached" in pgov.gate.decide("restart_service", confidence=0.95).reason
    clock.advance(timedelta(seconds=25))  # the two have aged out of the day; the reused count still says 2
    assert pgov.gate.decide("restart_service", confidence=0.95).decision == "needs_approval"
    clock.advance(timedelta(seconds=10))  # past the reuse limit: counted again
    d = pgov.gate.decide("restart_service", confidence=0.95, take_grant=False)
    assert d.decision == "allow" and d.to_json()["budget"]["day"]["used"] == 0
    ran(pgov, 2, clock.now(), "new")  # new events invalidate at once
    assert "daily limit reached" in pgov.gate.decide("restart_service", confidence=0.95).reason
