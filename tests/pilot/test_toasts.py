"""Toasts (issue 15, point 6): one per event — one engage is one toast, the trips of one read one toast —
short-lived, and at 80x24 never over a list's row: one toast at a time, at most two rows, over the key
bar. The header keeps the last-read time visible at 80 columns."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.widgets._toast import Toast

from engine.governance import Governance
from screens.app import TOAST_ERROR_SECONDS, TOAST_SECONDS
from screens.header import StatusHeader
from screens.keybar import KeyBar
from storage.store import Store
from tests.pilot.conftest import bells, notifications, settle, until
from tests.pilot.seed import T0

pytestmark = pytest.mark.anyio


def burst(url: str, clock, ctype: str = "drain_node") -> None:
    """Another process stores failures that trip the breakers."""
    other = Governance(Store(url), clock)
    at = T0 - timedelta(seconds=60)
    other.ingestor.ingest_objects([
        {"kind": "command", "id": f"burst-{ctype}-{i}", "type": ctype, "status": s, "autonomous": True,
         "at": (at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")}
        for i in range(12) for s in ("proposed", "failed")])
    other.store.dispose()


def shown_toasts(app) -> list[Toast]:
    return list(app.screen.query(Toast))


async def test_one_engage_is_one_toast_and_it_is_short_lived(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("!", "enter")
        for _ in range(4):  # the engage's outcome, then the reads that see the engaged switch
            await settle(pilot)
            app.refresh_all()
        await settle(pilot)
        assert console_gov.status(with_readiness=False)["killSwitch"]["engaged"]
        kill = [t for t in notifications(app) if "KILL SWITCH" in t[0].upper()]
        assert len(kill) == 1, notifications(app)
        assert len(app._notifications) == 1
        assert all(n.timeout <= TOAST_ERROR_SECONDS for n in app._notifications)


async def test_an_engage_elsewhere_is_announced_once(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        console_gov.overrides.engage_kill_switch("alice", "from the CLI")
        for _ in range(3):
            app.refresh_all()
            await settle(pilot)
        assert [t for t, _, _ in notifications(app)] == ["KILL SWITCH ENGAGED"]
        assert bells(app) == 1


async def test_trips_at_80x24_are_one_toast_over_the_key_bar_and_the_selected_row_stays_visible(
        console_gov, console_url, console_clock, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:  # Textual's tests hide toasts
        await settle(pilot)
        burst(console_url, console_clock)
        await until(pilot, lambda: any("tripped" in t for t, _, _ in notifications(app)), timeout=15,
                    what="the trip's toast")
        await settle(pilot)
        trips = [n for n in notifications(app) if "tripped" in n[0]]
        assert len(trips) == 1 and "drain_node" in trips[0][1], notifications(app)
        assert len(app._notifications) == 1 and list(app._notifications)[0].timeout <= TOAST_ERROR_SECONDS
        await until(pilot, lambda: [t for t in shown_toasts(app) if t.region.height], what="the toast drawn")
        toasts = shown_toasts(app)
        assert len(toasts) == 1
        toast = toasts[0].region
        bar = app.screen.query_one(KeyBar).region
        assert toast.height <= 2 and toast.y >= bar.y, (toast, bar)  # over the key bar, not over any row
        assert toast.y + toast.height <= 24


async def test_info_toasts_last_a_few_seconds(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("L")  # at L3 already: an information toast
        await settle(pilot)
        assert [n.timeout for n in app._notifications] == [TOAST_SECONDS]


@pytest.mark.parametrize("width", [80, 120])
async def test_the_header_keeps_the_last_read_time_visible(console_gov, make_console, width):
    app = make_console(console_gov)
    async with app.run_test(size=(width, 24)) as pilot:
        await settle(pilot)
        header = app.screen.query_one(StatusHeader)
        shown = ["".join(segment.text for segment in header.render_line(y)) for y in range(header.size.height)]
        assert f"read {app.live.at:%H:%M:%S}Z" in shown[1], shown  # as drawn, cut to the terminal's width
