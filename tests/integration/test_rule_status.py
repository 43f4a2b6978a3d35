"""The console's rule statuses and trend series, answered by the engine (issue 17 pt 1, issue 15 pt 4):
a rule whose condition holds without an open event says why, judged by the breakers' own ``assess``;
the hourly rates are the contract's (failed / distinct commands), on both stores."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.rule_status import FIRING, OK, TRIPPED, rule_statuses
from engine.trends import load_trends
from storage import breaker_repo
from tests.conftest import OPERATOR
from tests.integration.test_breakers import commands


@pytest.fixture(autouse=True)
def _operator_is_ops_lead(gov):
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")


def statuses(gov) -> dict:
    with gov.store.read() as conn:
        return {s.name: s for s in rule_statuses(conn, gov.clock.now())}


def open_events(gov) -> list:
    with gov.store.read() as conn:
        return breaker_repo.list_events(conn, unresolved_only=True)


def test_a_resolved_event_leaves_its_rule_firing_and_says_why(gov, clock):
    gov.ingestor.ingest_objects(commands(3, 3, clock.now() - timedelta(minutes=1), prefix="a"))
    s = statuses(gov)["Repeated Command Failures"]
    assert s.state == TRIPPED and s.reason == ""
    [event] = open_events(gov)
    gov.breakers.resolve(OPERATOR, event.id, note="bad deploy rolled back")
    s = statuses(gov)["Repeated Command Failures"]
    assert s.state == FIRING and "(restart_service)" in s.observed
    assert s.reason.startswith("already resolved at ") and "after the resolution" in s.reason
    assert gov.breakers.evaluate() == []  # and indeed the breakers do not trip it again
    assert statuses(gov)["High Error Rate"].state in (OK, "too few")


def test_a_rule_firing_before_the_breakers_ran_says_it_trips_at_the_next_evaluation(gov, clock):
    """Shadow mode recorded a shadow trip; back to enforcing, that shadow event no longer holds the rule
    back: until the breakers' next evaluation the rule fires with no enforced event, and says so."""
    gov.overrides.set_breaker_mode(OPERATOR, "shadow", "rollout")
    gov.ingestor.ingest_objects(commands(3, 3, clock.now() - timedelta(minutes=1), prefix="a"))
    gov.overrides.set_breaker_mode(OPERATOR, "enforce", "rollout over")
    s = statuses(gov)["Repeated Command Failures"]
    assert s.state == FIRING and s.shadow_open
    assert s.reason.startswith("no event yet: trips at the breakers' next evaluation")
    [trip] = gov.breakers.evaluate()
    assert not trip.shadow and statuses(gov)["Repeated Command Failures"].state == TRIPPED


def test_a_shadow_event_open_holds_a_shadow_rule_back_and_says_so(gov, clock):
    gov.overrides.set_breaker_mode(OPERATOR, "shadow", "rollout")
    gov.ingestor.ingest_objects(commands(3, 3, clock.now() - timedelta(minutes=1), prefix="a"))
    [event] = open_events(gov)
    assert event.shadow
    s = statuses(gov)["Repeated Command Failures"]
    assert s.state == FIRING and s.shadow_open
    assert s.reason.startswith("held back: a shadow event for restart_service is already open")


def test_hourly_rates_are_the_contracts_over_distinct_commands(gov, clock):
    at = clock.now() - timedelta(hours=3, minutes=30)
    # 4 commands each proposed then finished: 3 succeeded, 1 failed -> success 75%, error 25% (not 1/8)
    batch = []
    for i, status in enumerate(("succeeded", "succeeded", "succeeded", "failed")):
        batch += [{"kind": "command", "id": f"t{i}", "type": "noop", "status": s, "autonomous": False,
                   "at": (at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")}
                  for s in ("proposed", status)]
    gov.ingestor.ingest_objects(batch)
    with gov.store.read() as conn:
        t = load_trends(conn, clock.now())
    known = [(h, s, e, v) for h, s, e, v in zip(t.hours, t.success, t.error, t.volume, strict=True) if v]
    assert len(known) == 1
    hour, success, error, volume = known[0]
    assert (success, error, volume) == (pytest.approx(75.0), pytest.approx(25.0), 4)
    assert hour in (-3.0, -4.0) and t.hours[-1] == 0.0
    assert all(s is None for s, v in zip(t.success, t.volume, strict=True) if not v)
