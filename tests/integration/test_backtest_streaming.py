"""The streamed backtest (issue 16 pt 3) gives the same answer as the one that held the whole history
(tests/integration/backtest_reference.py, the code before it streamed), and its memory is bounded by the
window: four times the history does not make the replay's peak grow. On both stores. The same for the
consecutive-failures replay, which streams the outcome events and holds only its window's."""

from __future__ import annotations

import random
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from engine import backtest
from engine.backtest import Backtester
from engine.clock import isoformat
from storage import backtest_repo
from storage.read_ahead import read_ahead
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
    # its read-ahead ended with it (the replay stops before the last bucket read: closed, not left waiting)
    assert "backtest-read-ahead" not in {t.name for t in threading.enumerate()}
    if window in ("5m", "1m"):
        assert new["trips"] >= 1  # the bursts and the critical incident trip these rules


def _peak(backtester, days: int) -> int:
    tracemalloc.start()  # (every thread's allocations: the read-ahead's chunks count too)
    try:
        # ten-minute steps: the bound does not depend on the step, and a tenth of the points keeps the
        # traced runs short
        result = backtester.run("errorRate > 0.05", "50m", days=days)
        assert result.points == days * 24 * 6 + 1  # every window of the range reported is judged
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _chunk_bytes(gov, clock) -> int:
    """What one day-long chunk of the replay's read-ahead holds (this rule reads no types and no autonomy)."""
    now = clock.now()
    with gov.store.read() as conn:
        chunks = backtest_repo.bucket_count_chunks(conn, now - timedelta(days=3), now, 600, by_type=False,
                                                   autonomous=False)
        next(chunks)  # the first is part of a day, and its statement is compiled and cached untraced
        tracemalloc.start()
        try:
            assert len(next(chunks)) == 144  # a full day of ten-minute buckets
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_backtest_memory_is_bounded_by_the_window_not_the_history(gov, clock):
    now = clock.now()
    # a command every 2 minutes for 40 days (two types, so every bucket holds a few groups)
    gov.ingestor.ingest_objects(
        cmd(i, "succeeded", now - timedelta(minutes=2 * i + 1), prefix="m",
            ctype=("restart_service", "scale_up")[i % 2]) for i in range(40 * 720))
    Backtester(gov.store, clock).run("errorRate > 0.05", "50m", days=1)  # first-use allocations, untraced
    short = _peak(Backtester(gov.store, clock), 10)
    long = _peak(Backtester(gov.store, clock), 40)
    # The read-ahead holds up to its depth of day-long chunks waiting, one being read and one being replayed;
    # how many of those are alive at the peak depends on who is ahead, the reader or the replay, which the
    # machine's load decides (a loaded CI run: 75 kB for 10 days, 133 kB for 40). That many chunks is the slack;
    # what grows with the history (the reference below: +7.7 MB for the 30 days more) is far outside it.
    slack = (read_ahead.__kwdefaults__["depth"] + 2) * _chunk_bytes(gov, clock)
    assert long < short + slack, (short, long, slack)
    # the reference (the whole history in memory) does grow with it: the measure can tell them apart
    ref_short = _peak(backtest_reference.Backtester(gov.store, clock), 10)
    ref_long = _peak(backtest_reference.Backtester(gov.store, clock), 40)
    assert ref_long > ref_short * 2, (ref_short, ref_long)


# --- consecutive failures: the streamed outcomes (issue 16 pt 3) ---

TYPES = ("restart_service", "scale_up", "rollback_deploy")


def _outcome_rows(seed: int, base: datetime, n: int) -> list[tuple[str, str, datetime]]:
    """Outcome rows by at: several types, whole minutes (window edges) and odd seconds, ties between a
    success and failures, long runs with no success."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        at = base + timedelta(seconds=rng.choice((60, 30, 7)) * rng.randrange(0, 2000))
        ctype = rng.choice(TYPES)
        status = rng.choices(("succeeded", "failed", "rolled_back"),
                             weights=(1, 4, 1) if ctype != "rollback_deploy" else (0.1, 4, 1))[0]
        rows.append((ctype, status, at))
    rows.sort(key=lambda r: r[2])  # ties keep an arbitrary order, as ORDER BY at does
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_streamed_outcomes_equal_the_whole_range_bisected(seed):
    """Every window the replay can ask (sliding by a step, some skipped as the replay skips empty ones)
    gets the reference's counts, for windows of 1 to 10 steps."""
    base = datetime(2026, 11, 1, tzinfo=UTC)
    rows = _outcome_rows(seed, base, 600)
    rng = random.Random(seed)
    for step_s, k in ((60, 1), (60, 5), (120, 5), (30, 10)):
        ref = backtest_reference._Outcomes(rows)
        new = backtest._Outcomes(iter(rows))
        asked = 0
        for t_end in range(int(base.timestamp()), int(base.timestamp()) + 2100 * 60, step_s):
            if rng.random() < 0.3:
                continue  # the replay does not ask the windows with nothing in them
            span = (datetime.fromtimestamp(t_end - k * step_s, tz=UTC), datetime.fromtimestamp(t_end, tz=UTC))
            assert new.window(*span) == ref.window(*span), (step_s, k, span)
            asked += 1
        assert asked > 100


def test_streamed_outcomes_edges():
    """A success exactly at a window's start counts (failures after it only); one exactly at its end does
    not (it is the next window's); a failure at a success's very time does not count; no success in the
    window: every failure in it."""
    t = datetime(2026, 11, 1, tzinfo=UTC)
    m = timedelta(minutes=1)
    rows = [("a", "failed", t), ("a", "failed", t + m), ("a", "succeeded", t + 2 * m),
            ("a", "failed", t + 2 * m), ("a", "failed", t + 3 * m), ("b", "rolled_back", t + 3 * m),
            ("a", "succeeded", t + 5 * m), ("a", "failed", t + 6 * m)]
    spans = [(t, t + 2 * m), (t, t + 3 * m), (t + 2 * m, t + 5 * m), (t + 2 * m, t + 6 * m),
             (t + 3 * m, t + 7 * m), (t + 6 * m, t + 8 * m)]
    ref = backtest_reference._Outcomes(rows)
    new = backtest._Outcomes(iter(rows))
    got = [new.window(*span) for span in spans]
    assert got == [ref.window(*span) for span in spans]
    assert got == [{"a": 2}, {}, {"a": 1, "b": 1}, {"b": 1}, {"a": 1, "b": 1}, {"a": 1}]


CONSECUTIVE_RULES = [("commandType.consecutiveFailures >= 2", "10m"),
                     ("commandType.consecutiveFailures >= 1", "1m"),
                     ("commandType.consecutiveFailures >= 3 && commandType.failures >= 3", "5m"),
                     ("commandType.consecutiveFailures >= 4 || errorRate > 0.5", "30m"),
                     ("commandType.consecutiveFailures >= 6", "2h")]


def _seed_outcomes(gov, clock) -> None:
    """Three days of outcome events of three types (one rarely succeeds), on whole minutes, odd seconds
    and ties, plus a run of failures with no success and successes exactly on step edges."""
    now = clock.now()
    base = datetime.fromtimestamp(int(now.timestamp()) // 3600 * 3600, tz=UTC) - timedelta(days=3)
    events = []
    for day in range(3):
        for n, (ctype, status, at) in enumerate(_outcome_rows(day, base + timedelta(days=day), 500)):
            events.append(cmd(day * 1000 + n, status, at, prefix="o", ctype=ctype, autonomous=bool(n % 2)))
    edge = base + timedelta(hours=30)  # a multiple of every step used (1, 2, 6 and 24 minutes)
    for j in range(12):  # failures every minute, a success on each 6-minute edge
        at = edge + timedelta(minutes=j)
        events.append(cmd(5000 + j, "succeeded" if j % 6 == 0 else "failed", at, prefix="e", ctype="scale_up"))
        events.append(cmd(6000 + j, "failed", at, prefix="e", ctype="restart_service"))  # no success at all
    gov.ingestor.ingest_objects(events)


@pytest.mark.parametrize(("condition", "window"), CONSECUTIVE_RULES)
def test_streamed_consecutive_failures_equal_the_reference(gov, clock, condition, window):
    _seed_outcomes(gov, clock)
    new = Backtester(gov.store, clock).run(condition, window, days=4).to_json()
    old = backtest_reference.Backtester(gov.store, clock).run(condition, window, days=4).to_json()
    assert new == old
    assert new["trips"] >= 1
    assert {t["commandType"] for t in new["tripTimes"]} >= {"restart_service", "rollback_deploy"}


def _consecutive_peak(backtester, days: int) -> int:
    tracemalloc.start()
    try:
        result = backtester.run("commandType.consecutiveFailures >= 12", "30m", days=days)
        assert result.points == days * 24 * 10 + 1
        assert len(result.trips) == 2  # the two bursts, whatever the range: the output does not grow
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_consecutive_failures_memory_is_bounded_by_the_window_not_the_history(gov, clock):
    now = clock.now()
    # an outcome every 2 minutes for 40 days, two types, a success every fifth command of each type (so
    # every window holds failures after a success); two bursts of 15 failures in the last 10 days trip
    history = [cmd(i, "succeeded" if i % 10 < 2 else "failed", now - timedelta(minutes=2 * i + 1), prefix="m",
                   ctype=("restart_service", "scale_up")[i % 2]) for i in range(40 * 720)]
    for n, days in enumerate((2, 7)):
        history += commands(15, 15, now - timedelta(days=days, seconds=30), prefix=f"burst{n}-")
    gov.ingestor.ingest_objects(history)
    short = _consecutive_peak(Backtester(gov.store, clock), 10)
    long = _consecutive_peak(Backtester(gov.store, clock), 40)
    assert long < short * 1.3, (short, long)
    # the reference (every outcome time of the range in memory) does grow with it
    ref_short = _consecutive_peak(backtest_reference.Backtester(gov.store, clock), 10)
    ref_long = _consecutive_peak(backtest_reference.Backtester(gov.store, clock), 40)
    assert ref_long > ref_short * 2, (ref_short, ref_long)
