"""A backtest covers the whole range it reports (issue 16 pt 3): 180 days with a 1-minute window are
259,201 windows, more than the 200,000 the old silent cap judged; a burst in the last day (past the old
cap) is found and every window is counted. On both stores."""

from __future__ import annotations

from datetime import timedelta

from engine.backtest import Backtester
from tests.integration.test_breakers import cmd, commands


def test_backtest_judges_every_window_of_a_long_range(gov, clock):
    now = clock.now()
    early = now - timedelta(days=170)
    history = [cmd(i, "succeeded", early + timedelta(minutes=i), prefix="q") for i in range(20)]
    burst = now - timedelta(hours=20)  # past day 138, where 200,000 one-minute windows ended
    history += commands(20, 10, burst, prefix="burst")
    gov.ingestor.ingest_objects(history)
    result = Backtester(gov.store, clock).run("errorRate > 0.2", "1m", days=180)
    assert result.points == 180 * 24 * 60 + 1
    assert len(result.trips) == 1
    assert abs(result.trips[0].at - burst) <= timedelta(minutes=3)
    assert result.to_json()["windowsJudged"] == result.points
