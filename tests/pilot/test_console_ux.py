"""Issue 15, what the fifth session found still missing: `/` filters as you type (a line in the screen,
not a dialog; Esc clears and gives the list back the focus), the dashboard's tables readable at 120x40
and 80x24 (no `Repeated Command Failures · res`, no `comma` header), the drill-down's `r` in its key
bar, and the header's last-read time kept when the store is unreachable."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from screens.audit import AuditScreen
from screens.dashboard import DashboardScreen
from screens.drilldown import DrilldownScreen
from screens.events import EventsScreen
from screens.header import StatusHeader
from screens.keybar import KeyBar
from screens.modals import ConfirmModal
from screens.widgets import FilterInput, FilterRow, Table
from tests.pilot.conftest import settle, text_of, until
from tests.pilot.seed import OPEN_EVENT, OPERATOR

pytestmark = pytest.mark.anyio


def screen_text(app) -> str:
    """What the terminal shows, as plain text (every row of the composed screen)."""
    return "\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips())


def keys_of(table: Table) -> list[str]:
    return list(table._keys)


async def on_events(pilot) -> EventsScreen:
    app = pilot.app
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, EventsScreen) and app.screen.events, what="screen 2")
    return app.screen


# --- `/`: filter as you type --------------------------------------------------------------------

@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_slash_filters_as_you_type_and_esc_clears_and_refocuses_the_table(console_gov, make_console, size):
    app = make_console(console_gov)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = await on_events(pilot)
        table = screen.query_one("#events", Table)
        everything = keys_of(table)
        assert len(everything) == 3
        row = screen.query_one(FilterRow)
        assert not row.display or not row.has_class("-open")
        await pilot.press("/")
        await settle(pilot)
        field = screen.query_one("#filter", FilterInput)
        assert app.screen is screen, "the filter is a line in the screen, not a dialog"
        assert app.focused is field and row.has_class("-open")
        assert "Filter" in screen_text(app)
        shown: list[int] = []
        for ch in "rollback":  # each keystroke narrows (or keeps) the list, without Enter
            await pilot.press(ch)
            await settle(pilot, 1)
            shown.append(len(keys_of(table)))
        assert shown[0] == 3 and shown[-1] == 1, shown  # "r" matches all three, "rollback" one
        assert shown == sorted(shown, reverse=True), shown
        assert screen.filter_text == "rollback"
        assert "1 of 3 events matching 'rollback'" in text_of(screen.query_one("#events-note"))
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen and app.focused is table
        assert field.value == "" and screen.filter_text == "" and keys_of(table) == everything
        assert not row.has_class("-open") and "Filter (" not in screen_text(app)


async def test_enter_keeps_the_filter_and_the_list_has_the_focus(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await on_events(pilot)
        table = screen.query_one("#events", Table)
        await pilot.press("/", *"rollback", "enter")
        await settle(pilot)
        assert app.focused is table and screen.filter_text == "rollback" and len(keys_of(table)) == 1
        assert screen.query_one(FilterRow).has_class("-open")  # the active filter stays in sight
        await pilot.press("j")  # the list has the keys again: j is not typed into the filter
        await settle(pilot)
        assert screen.query_one("#filter", FilterInput).value == "rollback"
        await pilot.press("/")  # back in the filter, its text kept, the cursor at its end
        await settle(pilot)
        assert app.focused is screen.query_one("#filter", FilterInput)
        await pilot.press(*["backspace"] * len("rollback"))
        await settle(pilot)
        assert len(keys_of(table)) == 3


async def test_keys_typed_into_the_filter_are_characters_not_commands(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await on_events(pilot)
        await pilot.press("/", *"q1r!cL?x")  # quit, screen 1, resolve, kill switch, cycle, revert, help, reject
        await settle(pilot)
        assert app.is_running and app.screen is screen and len(app.screen_stack) == 1
        assert screen.query_one("#filter", FilterInput).value == "q1r!cL?x"
        assert not console_gov.status(with_readiness=False)["killSwitch"]["engaged"]


async def test_the_dashboards_filter_narrows_the_unresolved_events(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        table = screen.query_one("#unresolved", Table)
        await until(pilot, lambda: keys_of(table) == [OPEN_EVENT], what="the unresolved event")
        await pilot.press("/", *"nothing-like-it")
        await settle(pilot)
        assert keys_of(table) == []
        assert "0 of 1" in text_of(screen.query_one("#unresolved-note"))
        await pilot.press("escape")
        await settle(pilot)
        assert keys_of(table) == [OPEN_EVENT] and app.focused is table


async def test_the_audit_search_follows_the_last_keystroke(console_gov, make_console):
    """7 searches the store: a keystroke arriving while a search runs is not lost (the newest search
    runs after the running one). No refresh tick comes to the rescue: the console refreshes hourly here."""
    from console.app import make_app
    app = make_app(console_gov, operator=OPERATOR, scheduler=False, refresh_seconds=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await until(pilot, lambda: isinstance(app.screen, AuditScreen) and app.screen.entries, what="screen 7")
        screen = app.screen
        everything = len(screen.entries)
        gate, real = threading.Event(), console_gov.audit_entries

        def slow_store(**kw):  # the first search waits until every key has been typed
            if kw.get("search"):
                gate.wait(10)
            return real(**kw)

        console_gov.audit_entries = slow_store
        await pilot.press("/", *"role.grant")
        gate.set()
        await until(pilot, lambda: "matching 'role.grant'" in screen_text(app), what="the last search's answer")
        assert 0 < len(screen.entries) < everything
        assert all("role.grant" in str(e).lower() for e in screen.entries)


# --- the dashboard's tables and the header at 120x40 and 80x24 ------------------------------------

@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_dashboards_tables_show_every_header_and_cell_without_scrolling_sideways(
        console_gov, make_console, size):
    app = make_console(console_gov)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen
        await until(pilot, lambda: keys_of(screen.query_one("#unresolved", Table))
                    and keys_of(screen.query_one("#pending", Table)), what="both tables")
        await settle(pilot)
        for name in ("#unresolved", "#pending"):
            table = screen.query_one(name, Table)
            table.scroll_visible(animate=False)
            await settle(pilot)
            assert table.virtual_size.width <= table.scrollable_content_region.width, (
                f"{name} needs {table.virtual_size.width} columns, has {table.scrollable_content_region.width}")
            text = screen_text(app)
            for column in table.columns.values():
                assert column.label.plain in text, (name, column.label.plain)
            for key in keys_of(table):
                for cell in table.get_row(key):
                    for line in cell.plain.splitlines():
                        assert line in text, (name, line)
        text = screen_text(app)
        assert "Repeated Command Failures" in text and "restart_service · pause_command_type" in text
        assert "whitelist +" in text and "clear_cache," in text and "rotate_logs" in text
        header = screen.query_one(StatusHeader)
        row = "".join(s.text for s in header.render_line(1))
        assert "read 12:00:00Z" in row, row  # the last-read time, on screen at both widths


async def test_the_header_keeps_the_last_read_time_when_the_store_is_unreachable(
        console_gov, console_url, make_console):
    db = Path(console_url)
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        header = app.screen.query_one(StatusHeader)
        assert "read 12:00:00Z" in "".join(s.text for s in header.render_line(1))
        aside = db.with_name("aside")
        aside.mkdir()
        for f in db.parent.glob(db.name + "*"):
            f.rename(aside / f.name)
        db.mkdir()  # every new connection fails
        console_gov.store.engine.dispose()
        await until(pilot, lambda: "STORE UNREACHABLE" in text_of(header), what="the store to be unreachable")
        row = "".join(s.text for s in header.render_line(1))
        assert "STORE UNREACHABLE" in row and "shown: read 12:00:00Z" in row, row  # within 80 columns
        db.rmdir()


# --- the drill-down's keys ----------------------------------------------------------------------

async def test_the_drilldowns_key_bar_offers_r_and_r_opens_the_resolve_dialog(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await on_events(pilot)
        table = screen.query_one("#events", Table)
        while table.selected_key != OPEN_EVENT:
            await pilot.press("j")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DrilldownScreen) and app.screen.doc is not None,
                    what="the drill-down")
        bar = text_of(app.screen.query_one(KeyBar))
        assert "r Resolve" in bar and "Esc Back" in bar, bar
        assert "/ Filter" not in bar and "a Approve" not in bar, bar  # nothing to filter or approve here
        assert "r Resolve" in screen_text(app)  # on screen at 80x24, not wrapped away
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal) and "Repeated Command Failures" in app.screen.title_text
