"""Issue 15, point 8 on the console: the four-eyes refusal comes at the key press (not after the approve
dialog), an empty-note error goes away once a note is typed, and counts agree with their nouns."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from screens.fmt import plural
from screens.modals import ConfirmModal
from screens.rule_editor import backtest_text
from screens.rules import RulesScreen
from tests.pilot.conftest import notifications, settle, text_of
from tests.pilot.seed import PENDING

pytestmark = pytest.mark.anyio


async def test_four_eyes_refuses_at_the_key_press_naming_why(calm_gov, make_console):
    app = make_console(calm_gov, operator="bob")  # bob triggered PENDING and holds tech-lead, the role it needs
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        title, message, severity = notifications(app)[-1]
        assert (title, severity) == ("Not allowed", "error")
        assert message.startswith(f"bob triggered {PENDING} and may not approve it too (four eyes)")
        assert app.gov.proposals.show(PENDING)["status"] == "pending"


async def test_the_empty_note_error_is_cleared_once_a_note_is_typed(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("r", "enter")
        await settle(pilot)
        modal = app.screen
        error = modal.query_one("#dialog-error", Static)
        assert isinstance(modal, ConfirmModal) and "is required" in text_of(error)
        await pilot.press(" ")
        await settle(pilot)
        assert "is required" in text_of(error)  # blank is still no note
        await pilot.press("x")
        await settle(pilot)
        assert text_of(error).strip() == ""
        await pilot.press("backspace", "backspace", "enter")
        await settle(pilot)
        assert "is required" in text_of(error)


def test_plural_agrees_with_the_count():
    assert (plural(0, "trip"), plural(1, "trip"), plural(2, "trip")) == ("0 trips", "1 trip", "2 trips")
    assert plural(1204, "window") == "1,204 windows" and plural(1, "false positive") == "1 false positive"
    doc = {"trips": 1, "tripsWithIncidentNearby": 1, "tripsWithoutIncident": 0, "windowsJudged": 1,
           "tripTimes": [{"at": "2026-11-20T11:00:00Z", "commandType": None, "incidentsNearby": ["inc-1 (high)"]}]}
    assert backtest_text(doc).plain.startswith("Backtest over 30 days: 1 trip (1 with an incident nearby, 0 "
                                               "without) in 1 window\n")


async def test_the_rules_detail_says_1_trip(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RulesScreen)
        while screen.query_one("#rules").selected_key != "Repeated Command Failures":
            await pilot.press("down")
        await settle(pilot)
        detail = " ".join(text_of(s) for s in screen.query(Static))
        assert "1 trip · " in detail and "1 trips" not in detail
