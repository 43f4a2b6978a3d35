"""Screen 5 shows the gate policies the store holds (`p`), the ones every process decides by: a policy set
from elsewhere (the CLI, another console) appears; the view is read-only and says how to edit."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from screens.policy_editor import PolicyEditModal
from screens.rules import RulesScreen
from tests.pilot.conftest import notifications, settle, text_of, until
from tests.pilot.seed import OPERATOR

pytestmark = pytest.mark.anyio


async def test_p_shows_the_stores_policies_and_their_changes(console_gov, make_console):
    console_gov.policy_book.set(OPERATOR, "service_restart", {"command_types": ["restart_service"],
                                                              "max_per_day": 2, "confidence_threshold": 0.9})
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RulesScreen)
        await pilot.press("p")
        table = screen.query_one("#policies")
        await until(pilot, lambda: table.row_count == 1, what="the policies to load")
        assert screen.query_one("#pane-policies").display and not screen.query_one("#pane-rules").display
        detail = text_of(screen.query_one("#policy-detail", Static))
        assert "covers restart_service" in detail and "2/day, conf≥90%" in detail
        console_gov.policy_book.set(OPERATOR, "pool_tuning", {"command_types": ["tune_pool"], "max_per_week": 3})
        await pilot.press("p", "p")  # back to the rules and again: read afresh
        await until(pilot, lambda: table.row_count == 2, what="the new policy")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, PolicyEditModal), what="the policy editor")
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen and not notifications(app)
        await pilot.press("p")
        await settle(pilot)
        assert screen.query_one("#pane-rules").display and not screen.query_one("#pane-policies").display
