"""Issue 15, point 2 (detail panes): at 80x24 every list screen's detail scrolls and Tab reaches it, so
the end of a long detail (an event's effect and resolution) is on screen after End."""

from __future__ import annotations

import pytest

from screens.widgets import DetailPane, Table
from tests.pilot.conftest import settle
from tests.pilot.seed import RESOLVED_EVENT

pytestmark = pytest.mark.anyio


async def tab_to(pilot, pane: DetailPane, presses: int = 8) -> None:
    for _ in range(presses):
        if pilot.app.focused is pane:
            return
        await pilot.press("tab")
        await pilot.pause()
    assert pilot.app.focused is pane, f"Tab never reached #{pane.id}; focus is on {pilot.app.focused!r}"


@pytest.mark.parametrize("digit,pane_id", [("2", "pane-detail"), ("3", "pane-item"), ("4", "pane-proposal"),
                                           ("5", "pane-rule"), ("6", "pane-report"), ("7", "pane-entry"),
                                           ("8", "pane-action")])
async def test_tab_reaches_the_detail_and_end_scrolls_to_its_bottom(console_gov, make_console, digit, pane_id):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press(digit)
        await settle(pilot)
        pane = app.screen.query_one(f"#{pane_id}", DetailPane)
        await tab_to(pilot, pane)
        await pilot.press("end")
        await settle(pilot)
        assert pane.scroll_y == pane.max_scroll_y
        if pane.max_scroll_y:  # j/k scroll it as the arrows do
            await pilot.press("k")
            await settle(pilot)
            assert pane.scroll_y == pane.max_scroll_y - 1
            await pilot.press("j")
            await settle(pilot)
            assert pane.scroll_y == pane.max_scroll_y
        await pilot.press("home")
        await settle(pilot)
        assert pane.scroll_y == 0


async def test_the_resolved_events_resolution_is_reachable_at_80x24(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#events", Table)
        table.focus()
        while table.selected_key != RESOLVED_EVENT:
            await pilot.press("j")
        await settle(pilot)
        pane = app.screen.query_one("#pane-detail", DetailPane)
        assert pane.max_scroll_y > 0  # longer than the pane at 80x24: it was cut before
        await tab_to(pilot, pane)
        await pilot.press("pagedown", "end")
        await settle(pilot)
        assert pane.scroll_y == pane.max_scroll_y > 0
        detail = app.screen.query_one("#event-detail")
        lines = ["".join(s.text for s in detail.render_line(y)) for y in range(detail.size.height)]
        at = next(y for y, line in enumerate(lines) if "bad deploy rolled back" in line)  # the resolution note
        assert pane.scroll_y <= at < pane.scroll_y + pane.scrollable_content_region.height, (at, pane.scroll_y)
