"""Issue 15, point 7: help scrolls at 80x24, the palette offers the screen's own actions once each, j/k
move in lists, a/x/r are offered only where they apply, and the checkboxes read differently on and off
without colour."""

from __future__ import annotations

import pytest

from screens.help import HelpModal, HelpScroll
from screens.keybar import KeyBar
from screens.rule_editor import RuleEditModal
from screens.widgets import Table, TickBox
from tests.pilot.conftest import notifications, palette_offers, settle, text_of, until

pytestmark = pytest.mark.anyio


async def test_help_scrolls_to_its_end_at_80x24(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5", "?")
        await settle(pilot)
        assert isinstance(app.screen, HelpModal)
        body = app.screen.query_one(HelpScroll)
        assert app.focused is body and body.max_scroll_y > 0  # longer than the screen
        await pilot.press("pagedown")
        await settle(pilot)
        assert body.scroll_y > 0
        await pilot.press("end")
        await settle(pilot)
        assert body.scroll_y == body.max_scroll_y
        await pilot.press("home", "j")
        await settle(pilot)
        assert body.scroll_y == 1
        own = text_of(body.query("Static").last())
        assert "Add a rule" in own  # the screen's own keys are in it, also those kept out of the key bar
        assert "delete the selected policy" in own and "The alert sinks" in own and "gate policies" in own


def titles(app) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


async def test_the_palette_offers_each_screens_actions_once(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        on_dashboard = titles(app)
        assert len(on_dashboard) == len(set(on_dashboard)), on_dashboard
        assert on_dashboard.count("Quit (q)") == 1 and "Quit" not in on_dashboard
        assert sum("Kill switch" in t for t in on_dashboard) == 1
        assert {"Approve (a)", "Reject (x)", "Resolve (r)"} <= set(on_dashboard)
        await pilot.press("5")
        await settle(pilot)
        on_rules = titles(app)
        assert {"Edit (e)", "New (n)", "Policies (p)"} <= set(on_rules) and "Approve (a)" not in on_rules
        await pilot.press("3")
        await settle(pilot)
        assert "Attest (t)" in titles(app) and "Resolve (r)" not in titles(app)
        await pilot.press(":", *"attest")
        await until(pilot, lambda: palette_offers(app, "attest"), what="the palette's search")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.title_text.startswith(("Attest: ",)) or "Not attestable" in [
            t for t, _, _ in notifications(app)]


async def test_j_and_k_move_in_tables(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#events", Table)
        table.focus()
        await pilot.pause()
        assert table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1


@pytest.mark.parametrize("digit,offered,absent", [
    ("1", ["a Approve", "x Reject", "r Resolve"], []),
    ("2", ["r Resolve"], ["a Approve", "x Reject"]),
    ("3", ["t Attest"], ["a Approve", "x Reject", "r Resolve"]),
    ("4", ["a Approve", "x Reject"], ["r Resolve"]),
    ("7", ["v Verify"], ["a Approve", "x Reject", "r Resolve"]),
    ("8", ["a Approve", "x Reject"], ["r Resolve"]),
])
async def test_screen_specific_keys_only_where_they_apply(console_gov, make_console, digit, offered, absent):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press(digit)
        await settle(pilot)
        bar = text_of(app.screen.query_one(KeyBar))
        for item in offered:
            assert item in bar, bar
        for item in absent:
            assert item not in bar, bar
        assert "!/ctrl+g Kill switch" in bar and "q Quit" in bar


@pytest.mark.parametrize("no_color", [False, True])
async def test_rule_editor_checkboxes_read_differently_on_and_off(console_gov, make_console, monkeypatch,
                                                                  no_color):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5", "e")
        await settle(pilot)
        assert isinstance(app.screen, RuleEditModal) and app.no_color is no_color
        enabled, shadow = app.screen.query_one("#enabled", TickBox), app.screen.query_one("#shadow", TickBox)
        assert enabled.value and not shadow.value
        assert enabled.render().plain.strip() == "[x] enabled"
        assert shadow.render().plain.strip() == "[ ] shadow: records what it would do"
        shadow.focus()
        await pilot.press("space")
        await settle(pilot)
        assert shadow.value and shadow.render().plain.startswith("[x] ")
