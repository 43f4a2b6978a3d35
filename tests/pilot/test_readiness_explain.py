"""Issue 15 point 5 on screen 3: the summary says what stands in the way (never a bare READY), and a
failing item's detail says what earns it and the score if it passed."""

from __future__ import annotations

import pytest

from screens.readiness import ReadinessScreen
from screens.widgets import Table
from tests.pilot.conftest import text_of, until
from tests.pilot.seed import _seed_events

pytestmark = pytest.mark.anyio


async def test_failing_item_says_what_earns_it_and_the_score_then(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ReadinessScreen) and app.screen.explained is not None,
                    what="the explained readiness")
        screen = app.screen
        summary = text_of(screen.query_one("#readiness-summary"))
        assert "not ready: 71.2% of 80 points (needs 95%) · 5 required items failing · 19 more points needed" \
            in " ".join(summary.split())
        table = screen.query_one("#items", Table)
        while table.selected_key != "leadership-approval-obtained":
            await pilot.press("j")
        await until(pilot, lambda: "Leadership approval" in text_of(screen.query_one("#item-detail")))
        detail = text_of(screen.query_one("#item-detail"))
        assert "run: govcon attest leadership-approval-obtained --pass --evidence TEXT" in detail
        assert "if it passed: score 77.5%" in detail  # (57 + 5) / 80


async def test_checklist_ready_with_an_open_event_is_not_a_bare_ready(calm_gov, make_console):
    with calm_gov.store.write() as conn:
        _seed_events(conn)  # one open event
    app = make_console(calm_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ReadinessScreen) and app.screen.explained is not None,
                    what="the explained readiness")
        summary = text_of(app.screen.query_one("#readiness-summary"))
        assert "checklist ready — 1 open event blocks expansion" in summary and "READY" not in summary
