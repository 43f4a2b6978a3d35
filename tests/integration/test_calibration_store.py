"""Calibration from real grants and their outcomes, on both stores."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.calibration import CalibrationBook
from engine.governance import Governance
from engine.policies import load_policies
from tests.conftest import OPERATOR
from tests.integration.test_governed_actions import at_l4, outcome

POLICIES = {"rotation": {"command_types": ["rotate_logs"], "max_per_day": 1000}}


@pytest.fixture
def cgov(store, clock) -> Governance:
    g = Governance(store, clock, policies=load_policies(POLICIES))
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    return at_l4(g)


def act(gov, agent: str, confidence: float, status: str | None, gap: timedelta = timedelta(seconds=5)) -> str:
    d = gov.gate.decide("rotate_logs", confidence=confidence, agent=agent)
    assert d.decision == "allow", d.reason
    grant_id = d.extra["grantId"]
    if status:
        outcome(gov, grant_id, status, type="rotate_logs")
    gov.clock.advance(gap)
    return grant_id


def test_calibration_counts_outcomes_of_real_grants(cgov):
    for status in ["succeeded"] * 6 + ["failed", "rolled_back"]:
        act(cgov, "rollback-bot", 0.92, status)
    act(cgov, "rollback-bot", 0.92, None)  # in flight: no outcome yet, not counted
    act(cgov, "pool-tuner", 0.5, "succeeded")
    book = CalibrationBook(cgov.store, cgov.clock, min_outcomes=5)
    [bot] = book.report("rollback-bot")
    assert (bot.outcomes, bot.succeeded) == (8, 6)
    assert bot.bins[9].count == 8 and bot.bins[9].observed == pytest.approx(0.75)
    value, note = bot.judge(0.95)
    assert value == pytest.approx(0.75) and "succeeded 6 of 8" in note
    everyone = book.report()
    assert [(c.agent, c.outcomes) for c in everyone] == [("pool-tuner", 1), ("rollback-bot", 8)]


def test_an_agent_without_outcomes_has_null_figures(cgov):
    act(cgov, "fresh-bot", 0.9, None)
    book = CalibrationBook(cgov.store, cgov.clock)
    assert book.report("fresh-bot") == []
    with cgov.store.read() as conn:
        cal = book.of(conn, "fresh-bot", "rotate_logs")
    assert (cal.outcomes, cal.brier, cal.ece) == (0, None, None)
    assert cal.judge(0.9)[0] == 0.9


def test_calibration_over_http(cgov):
    from tests.integration.test_api import make_api
    for status in ("succeeded", "failed"):
        act(cgov, "rollback-bot", 0.8, status)
    api = make_api(cgov)
    with api.client:
        doc = api.get("/api/agents/rollback-bot/calibration").json()
        assert doc["agent"] == "rollback-bot"
        [cal] = doc["calibrations"]
        assert (cal["commandType"], cal["outcomes"], cal["succeeded"]) == ("rotate_logs", 2, 1)
        assert cal["bins"][8] == {"low": 0.8, "high": 0.9, "count": 2, "statedMean": 0.8, "observed": 0.5}
        assert cal["brier"] == pytest.approx((0.2 ** 2 + 0.8 ** 2) / 2, abs=1e-4)
        assert api.get("/api/agents/nobody/calibration").json() == {"agent": "nobody", "calibrations": []}
        assert api.get("/api/agents/x%00y/calibration").status_code == 422


def test_agents_calibration_on_the_command_line(cgov, cli):
    for status in ["succeeded"] * 3 + ["failed"]:
        act(cgov, "rollback-bot", 0.95, status)
    r = cli("agents", "calibration", "rollback-bot")
    assert r.code == 0, r.err
    assert "rollback-bot · rotate_logs: 4 outcomes, 3 succeeded" in r.out
    assert "0.9–1.0" in r.out and " 0.75 " in r.out
    r = cli("agents", "calibration", "rollback-bot", "--json")
    assert r.json()["calibrations"][0]["bins"][9]["observed"] == 0.75
    r = cli("agents", "calibration", "nobody")
    assert r.code == 0 and "nobody has no finished grants" in r.out


def test_a_calibrated_policy_judges_the_observed_rate_once_the_bin_is_full(store, clock):
    policies = load_policies({"rotation": {"command_types": ["rotate_logs"], "max_per_day": 1000,
                                           "confidence_threshold": 0.9, "calibrated": True}})
    g = Governance(store, clock, policies=policies)
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    at_l4(g)
    # nine outcomes at 0.95, one short of calibrating; failures far apart (no breaker trips on them)
    for status in ["failed", "succeeded", "succeeded"] * 3:
        act(g, "overconfident-bot", 0.95, status, gap=timedelta(minutes=3))
    d = g.gate.decide("rotate_logs", confidence=0.95, agent="overconfident-bot")
    assert d.decision == "allow"
    assert "has 9 outcomes at stated 0.9–1.0 (calibration needs 10): the stated confidence 0.95 is used" \
        in d.extra["calibration"]
    outcome(g, d.extra["grantId"], "failed", type="rotate_logs")  # the tenth: 6 of 10
    clock.advance(timedelta(minutes=3))
    d = g.gate.decide("rotate_logs", confidence=0.95, agent="overconfident-bot")
    assert d.decision == "needs_approval"
    assert "calibrated confidence 60% below threshold 90%" in d.reason and "succeeded 6 of 10" in d.reason
    # another agent, and another bin of the same agent, are not judged by these outcomes
    assert g.gate.decide("rotate_logs", confidence=0.95, agent="careful-bot").decision == "allow"
    assert g.gate.decide("rotate_logs", confidence=0.91, agent="overconfident-bot").decision == "needs_approval"
    assert g.gate.decide("rotate_logs", confidence=0.89, agent="overconfident-bot").decision == "needs_approval"


def test_calibrated_must_be_true_or_false():
    from engine.errors import InvalidInput
    with pytest.raises(InvalidInput, match="calibrated"):
        load_policies({"p": {"command_types": ["x"], "calibrated": "yes"}})
