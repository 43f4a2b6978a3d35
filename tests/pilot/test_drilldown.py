"""Issue 15, point 3: Enter on a breaker event opens its drill-down (on 2 and on the dashboard), keyboard
only; at 80x24 it scrolls to its resolution; Esc returns to the list, the selection kept."""

from __future__ import annotations

import pytest

from screens.drilldown import DrilldownScreen
from screens.events import EventsScreen
from screens.widgets import DetailPane, Table
from tests.pilot.conftest import notifications, settle, until
from tests.pilot.drill_seed import FAILED, add_drilldown_evidence
from tests.pilot.seed import OPEN_EVENT, RESOLVED_EVENT

pytestmark = pytest.mark.anyio


def lines_of(screen) -> list[str]:
    static = screen.query_one("#drill")
    return static.content.plain.splitlines() if hasattr(static.content, "plain") else str(static.content).splitlines()


def visible(widget) -> str:
    return "\n".join("".join(s.text for s in widget.render_line(y)) for y in range(widget.size.height))


def on_screen(pane: DetailPane, text: str) -> bool:
    """Whether the line of the pane's text holding ``text`` is inside the pane's visible rows."""
    static = pane.query_one("#drill")
    rows = ["".join(s.text for s in static.render_line(y)) for y in range(static.size.height)]
    found = [y for y, row in enumerate(rows) if text in row]
    assert found, f"{text!r} is not in the drill-down at all"
    return pane.scroll_y <= found[0] < pane.scroll_y + pane.scrollable_content_region.height


async def open_drilldown(pilot, event_id: str) -> DrilldownScreen:
    app = pilot.app
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, EventsScreen) and app.screen.events, what="screen 2")
    table = app.screen.query_one("#events", Table)
    assert app.focused is table
    while table.selected_key != event_id:
        await pilot.press("j")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, DrilldownScreen) and app.screen.doc is not None,
                what="the drill-down")
    return app.screen


async def test_enter_on_an_event_shows_what_made_it_trip(console_gov, make_console):
    add_drilldown_evidence(console_gov)
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = await open_drilldown(pilot, OPEN_EVENT)
        assert screen.event_id == OPEN_EVENT
        text = lines_of(screen)
        assert text[0] == "Repeated Command Failures  OPEN"
        for cid in FAILED:
            assert any(f"{cid}  restart_service  failed" in line for line in text), cid
        assert any("inc-dd-1  high  names cmd-dd-3" in line for line in text)
        assert "  paused restart_service (still paused)" in text
        spark = [line.split() for line in text[:12] if line.strip() and set(line.split()[0]) <= set("▁▂▃▄▅▆▇█")]
        assert len(spark) == 1 and len(spark[0][0]) == 30 and spark[0][1] == "4"  # 4 failures seen by the trip


async def test_scrolls_at_80x24_and_esc_returns_with_the_selection_kept(console_gov, make_console):
    add_drilldown_evidence(console_gov)
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await open_drilldown(pilot, RESOLVED_EVENT)
        pane = screen.query_one("#pane-drill", DetailPane)
        assert app.focused is pane
        assert pane.max_scroll_y > 0  # longer than 80x24 shows: it must scroll
        assert not on_screen(pane, "bad deploy rolled back")
        await pilot.press("pagedown", "end")
        await settle(pilot)
        assert pane.scroll_y == pane.max_scroll_y
        assert on_screen(pane, "bad deploy rolled back")  # the resolution, at the bottom
        await pilot.press("home")
        await settle(pilot)
        assert pane.scroll_y == 0
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, EventsScreen), what="screen 2 again")
        assert app.screen.query_one("#events", Table).selected_key == RESOLVED_EVENT


async def test_enter_on_the_dashboards_unresolved_event_opens_it_and_r_resolves_from_there(console_gov,
                                                                                         make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.screen.query_one("#unresolved", Table).selected_key == OPEN_EVENT,
                    what="the dashboard's unresolved events")
        app.screen.query_one("#unresolved", Table).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DrilldownScreen) and app.screen.doc is not None,
                    what="the drill-down")
        assert app.screen.event_id == OPEN_EVENT
        await pilot.press("r")  # resolve the event shown: the dialog names it
        await settle(pilot)
        assert OPEN_EVENT in visible(app.screen.query_one("#dialog-body")) or \
            "Repeated Command Failures" in visible(app.screen.query_one("#dialog-title"))
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, DrilldownScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.SCREEN_NAME == "dashboard"


async def test_enter_elsewhere_does_nothing(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("tab", "enter")
        await settle(pilot)
        assert app.screen.SCREEN_NAME == "readiness" and not any(t == "Nothing selected" for t, _, _ in notifications(app))


@pytest.mark.parametrize("key,name", [("2", "events"), ("3", "readiness")])
async def test_a_screen_key_leaves_the_drilldown(console_gov, make_console, key, name):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_drilldown(pilot, OPEN_EVENT)
        await pilot.press(key)
        await until(pilot, lambda: app.screen.SCREEN_NAME == name, what=f"screen {key}")
