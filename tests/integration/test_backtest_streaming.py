"""The streamed backtest (issue 16 pt 3) gives the same answer as the one that held the whole history
(tests/integration/backtest_reference.py, the code before it streamed), and its memory is bounded by the
window: four times the history does not make the replay's peak grow. On both stores."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import pytest

from engine.backtest import Backtester
from engine.clock import isoformat
from tests.integration import backtest_reference
from tests.integration.test_breakers import cmd, commands

RULES = [("errorRate > 0.05", "5m"), ("commandType.failures >= 3", "5m"),
         ("commandType.consecutiveFailures >= 2", "10m"), ('incident.severity === "critical"', "1m"),
         ("autonomous.errorRate > 0.1", "5h"), ("errorRate > 0.2 && incidents.total >= 1", "30m")]


def _seed(gov, clock) -> None:
    base = clock.now() - timedelta(days=6)
    history = [cmd(h * 100 + i, "succeeded" if i % 7 else "failed", base + timedelta(hours=h, minutes=i * 3),
                   prefix="q", ctype=("restart_service", "scale_up")[i % 2], autonomous=bool(i % 3))
               for h in range(0, 140, 3) for i in range(20)]
    for n, hours in enumerate((20, 61, 119)):
        at = base + timedelta(hours=hours, minutes=7)
        history += commands(20, 9, at, prefix=f"burst{n}-")
        history.append({"kind": "incident", "id": f"inc{n}", "severity": ("high", "critical")[n % 2],
                        "at": isoformat(at + timedelta(minutes=2))})
    gov.ingestor.ingest_objects(history)


@pytest.mark.parametrize(("condition", "window"), RULES)
def test_streamed_backtest_equals_the_one_that_held_the_history(gov, clock, condition, window):
    _seed(gov, clock)
    new = Backtester(gov.store, clock).run(condition, window, days=7).to_json()
    old = backtest_reference.Backtester(gov.store, clock).run(condition, window, days=7).to_json()
    assert new == old
    if window in ("5m", "1m"):
        assert new["trips"] >= 1  # the bursts and the critical incident trip these rules


def _peak(backtester, days: int) -> int:
    tracemalloc.start()
    try:
        result = backtester.run("errorRate > 0.05", "5m", days=days)
        assert result.points == days * 24 * 60 + 1  # every window of the range reported is judged
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_backtest_memory_is_bounded_by_the_window_not_the_history(gov, clock):
    now = clock.now()
    # a command every 2 minutes for 40 days (two types, so every bucket holds a few groups)
    gov.ingestor.ingest_objects(
        cmd(i, "succeeded", now - timedelta(minutes=2 * i + 1), prefix="m",
            ctype=("restart_service", "scale_up")[i % 2]) for i in range(40 * 720))
    short = _peak(Backtester(gov.store, clock), 10)
    long = _peak(Backtester(gov.store, clock), 40)
    assert long < short * 1.3, (short, long)
    # the reference (the whole history in memory) does grow with it: the measure can tell them apart
    ref_short = _peak(backtest_reference.Backtester(gov.store, clock), 10)
    ref_long = _peak(backtest_reference.Backtester(gov.store, clock), 40)
    assert ref_long > ref_short * 2, (ref_short, ref_long)
