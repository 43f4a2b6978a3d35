"""A breaker event's drill-down in the 1M-event store (issue 15 "Speed": <= 150 ms to render).

Three events at the store's end: Repeated Command Failures (5m, per type), a one-day error-rate rule (the
heaviest window: ~5,800 command events) and Critical Incident Detected (1m). Measured in the same run:
- the engine's answer (Drilldown.show) against the raw SQL of the same window (sqlite3, the command
  events stamped in it, fetched);
- the console: DrilldownScreen pushed until its text is drawn, against a bare Textual app pushing a screen
  with the same text (no store).
Run: `GOVCON_BENCH_CACHE=DIR .venv/bin/python -m pytest -q -s tests/bench/bench_drilldown.py`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta

import pytest
from textual.app import App
from textual.screen import Screen
from textual.widgets import Static

from engine.drilldown import Drilldown
from storage import breaker_repo
from tests.bench.conftest import END, BigStore
from tests.bench.figures import ms, p50, report, runs

TARGET = 0.150
RUNS = 10
UI_RUNS = 5
DAILY = "Daily Error Rate (bench)"
EVENTS = {
    "cbe-bench-000001": ("Repeated Command Failures", "pause_command_type", "5m", timedelta(minutes=5)),
    "cbe-bench-000002": (DAILY, "revert_to_l3", "1d", timedelta(days=1)),
    "cbe-bench-000003": ("Critical Incident Detected", "revert_to_l3", "1m", timedelta(minutes=1)),
}


@pytest.fixture(scope="module")
def events(big_sqlite: BigStore):
    store = big_sqlite.store
    with store.write() as conn:
        busiest = conn.exec_driver_sql("SELECT command_type FROM command_events WHERE at >= ? GROUP BY command_type "
                                       "ORDER BY count(*) DESC LIMIT 1",
                                       ((END - timedelta(days=1)).replace(tzinfo=None),)).scalar_one()
        if breaker_repo.get_rule(conn, DAILY) is None:
            breaker_repo.insert_rule(conn, name=DAILY, enabled=False, condition="errorRate > 0.01", window="1d",
                                     action="revert_to_l3", alert_severity="critical", min_samples=10,
                                     created_at=END, updated_at=END)
        for eid, (rule, action, window, _) in EVENTS.items():
            if breaker_repo.get_event(conn, eid) is None:
                breaker_repo.insert_event(conn, id=eid, rule_name=rule, timestamp=END, severity="high", action=action,
                                          command_type=busiest if action == "pause_command_type" else None,
                                          observed={"window": window, "effect": "bench"}, shadow=False)
    yield big_sqlite
    with store.write() as conn:
        for eid in EVENTS:
            conn.exec_driver_sql("DELETE FROM breaker_events WHERE id = ?", (eid,))


def _raw_window(path: str, length: timedelta) -> int:
    con = sqlite3.connect(path)
    try:
        start = (END - length).replace(tzinfo=None).isoformat(sep=" ")
        end = (END + timedelta(seconds=5)).replace(tzinfo=None).isoformat(sep=" ")
        return len(con.execute("SELECT command_id, command_type, status, at FROM command_events "
                               "WHERE at >= ? AND at < ?", (start, end)).fetchall())
    finally:
        con.close()


def test_drilldown_engine_against_the_raw_sql_of_its_window(events: BigStore):
    path = str(events.store.engine.url.database)
    drill = Drilldown(events.store)
    figures = {}
    for eid, (rule, _, window, length) in EVENTS.items():
        ours = p50(runs(lambda eid=eid: drill.show(eid), RUNS))
        rows = _raw_window(path, length)
        raw = p50(runs(lambda length=length: _raw_window(path, length), RUNS))
        figures[f"{rule} ({window})"] = (f"drill-down p50 {ms(ours)}; raw SQL of the window ({rows:,} rows) "
                                         f"{ms(raw)}; ratio {ours / raw:.1f}x")
        assert ours <= TARGET, f"{rule}: {ms(ours)}"
    report(f"drill-down, engine answer, 1M-event SQLite store ({events.events:,} events), p50 of {RUNS}", **figures)


class _Bare(App):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class _BareScreen(Screen):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self):
        yield Static(self.text, id="drill")


async def _time_bare(text: str) -> float:
    app = _Bare(text)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        start = time.perf_counter()
        await app.push_screen(_BareScreen(text))
        await pilot.pause()
        return time.perf_counter() - start


async def _time_console(gov, eid: str) -> float:
    from console.app import make_app
    from screens.drilldown import DrilldownScreen
    app = make_app(gov, operator="bench", scheduler=False, refresh_seconds=3600.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        start = time.perf_counter()
        screen = DrilldownScreen(eid)
        await app.push_screen(screen)
        deadline = start + 10
        while screen.doc is None and time.perf_counter() < deadline:
            await asyncio.sleep(0.002)
        await pilot.pause()  # the text drawn
        return time.perf_counter() - start


def test_drilldown_on_screen_against_a_bare_textual_app(events: BigStore):
    from screens.drilldown_text import drilldown_text
    figures = {}
    for eid, (rule, _, window, _) in EVENTS.items():
        text = drilldown_text(Drilldown(events.store).show(eid))
        ours = p50([asyncio.run(_time_console(events.gov, eid)) for _ in range(UI_RUNS)])
        bare = p50([asyncio.run(_time_bare(text.plain)) for _ in range(UI_RUNS)])
        figures[f"{rule} ({window})"] = (f"Enter to drawn p50 {ms(ours)}; bare Textual app pushing the same text "
                                         f"{ms(bare)}; ratio {ours / bare:.1f}x")
        assert ours <= TARGET, f"{rule}: {ms(ours)}"
    report(f"drill-down, console, 1M-event SQLite store, 120x40, p50 of {UI_RUNS}", **figures)
