"""`govcon demo`: the scratch store it builds, its live agent tripping the breakers, and the console
opening on it with the demo notice. Run on a ManualClock so the 90-second incident takes no wall time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from console.demo import INCIDENT_AFTER, LiveAgent, build_demo_store
from engine.clock import ManualClock
from screens.header import StatusHeader
from tests.pilot.conftest import settle, text_of
from tests.pilot.seed import T0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    clock = ManualClock(T0)
    gov = build_demo_store(str(tmp_path_factory.mktemp("demo") / "demo.db"), "alice", clock=clock)
    yield gov, clock
    gov.store.dispose()


def test_the_demo_store_has_history_roles_and_a_readiness_story(demo):
    gov, _ = demo
    assert gov.roles_of("alice") >= {"tech-lead", "ops-lead", "product-lead", "exec-sponsor", "on-call",
                                     "incident-commander", "admin"}
    assert gov.metrics.collect_since(timedelta(days=180)).commands.total > 30_000
    report = gov.readiness.assess()
    # every blocker but the scheduler's: the console's scheduler takes the lease when it opens
    assert report.blockers == ["Real-time monitoring operational"]
    assert not gov.breaker_events()  # history was loaded without the breakers judging it
    with gov.store.read() as conn:
        from storage import readiness_repo
        scores = [a.score for a in readiness_repo.assessments(conn, T0 - timedelta(days=200))]
    assert len(scores) >= 20 and scores[0] < scores[-1]


def test_the_live_agent_trips_the_breakers_after_the_scripted_incident(demo):
    gov, clock = demo
    agent = LiveAgent(gov)
    for _ in range(int(INCIDENT_AFTER.total_seconds()) - 5):
        clock.advance(1)
        agent.step()
    assert agent.sent > 100 and not gov.breaker_events()
    for _ in range(30):
        clock.advance(1)
        agent.step()
    tripped = {e["ruleName"] for e in gov.breaker_events(unresolved_only=True)}
    assert {"High Error Rate", "Repeated Command Failures", "Critical Incident Detected"} <= tripped


@pytest.mark.anyio
async def test_the_console_says_it_is_a_demo(demo):
    from console.app import make_app
    gov, _ = demo
    app = make_app(gov, operator="alice", demo=True, scheduler=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        header = text_of(app.screen.query_one(StatusHeader))
        assert "DEMO" in header and "four-eyes is relaxed here only" in header
