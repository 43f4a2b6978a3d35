"""An honest dashboard (issue 15, point 4): a rule firing without an open event says why on the breaker
pane; a ready checklist with events open says they block expansion instead of a bare READY; tables
scroll sideways."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.widgets import Static

from engine.governance import Governance
from storage import breaker_repo
from storage.store import Store
from tests.pilot.conftest import settle, text_of, until
from tests.pilot.seed import OPERATOR, T0

pytestmark = pytest.mark.anyio


def failures(url: str, clock, prefix: str) -> None:
    """Another process stores three failures of one type: Repeated Command Failures trips."""
    other = Governance(Store(url), clock)
    at = T0 - timedelta(seconds=60)
    other.ingestor.ingest_objects([
        {"kind": "command", "id": f"{prefix}-{i}", "type": "drain_node", "status": s, "autonomous": True,
         "at": (at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")}
        for i in range(3) for s in ("proposed", "failed")])
    other.store.dispose()


def breakers_text(app) -> str:
    return " ".join(text_of(app.screen.query_one("#breakers", Static)).split())


def readiness(app) -> str:
    return " ".join(text_of(app.screen.query_one("#readiness", Static)).split())


async def test_a_rule_firing_after_its_event_was_resolved_says_why(calm_gov, make_console, console_clock):
    gov = calm_gov
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    failures(gov.store.url, console_clock, "f")
    with gov.store.read() as conn:
        events = breaker_repo.list_events(conn, unresolved_only=True)
    assert events
    for event in events:
        gov.breakers.resolve(OPERATOR, event.id, note="drained by hand")
    app = make_console(gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "FIRING" in breakers_text(app), what="the rule to show FIRING")
        text = breakers_text(app)
        assert "no open event: already resolved at" in text
        assert "only what happens or arrives after the resolution is judged" in text


async def test_readiness_says_open_events_block_expansion_instead_of_ready(calm_gov, make_console,
                                                                           console_clock):
    app = make_console(calm_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "READY" in readiness(app) or "checklist" in readiness(app),
                    what="the readiness pane")
        assert "READY" in readiness(app) and "checklist ready" not in readiness(app)
        failures(calm_gov.store.url, console_clock, "g")
        with calm_gov.store.read() as conn:
            n = sum(1 for e in breaker_repo.list_events(conn, unresolved_only=True) if not e.shadow)
        assert n >= 1
        words = "1 open event blocks" if n == 1 else f"{n} open events block"
        await until(pilot, lambda: f"checklist ready — {words} expansion" in readiness(app),
                    timeout=15, what="the open events to show in the readiness pane")
        assert "READY" not in readiness(app)


async def test_tables_scroll_sideways_to_a_clipped_column(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=3)
        await pilot.press("2")  # the dashboard's tables fit at 80 columns (two lines a row); screen 2's does not
        await until(pilot, lambda: app.screen.query("#events") and app.screen.query_one("#events").row_count > 0,
                    what="the breaker events")
        table = app.screen.query_one("#events")
        assert table.max_scroll_x > 0  # the type and action columns lie past the edge at 80 columns
        table.focus()
        await pilot.press("right", "right", "right")
        table.scroll_to(x=table.max_scroll_x, animate=False)
        await settle(pilot)
        assert table.scroll_x == table.max_scroll_x > 0


def test_the_breaker_pane_lists_half_open_types_first():
    from io import StringIO

    from rich.console import Console

    from screens.dashboard import breaker_table
    console = Console(file=StringIO(), width=80, color_system=None)
    console.print(breaker_table((), {"restart_service": 2}))
    text = " ".join(console.file.getvalue().split())
    assert text.startswith("HALF-OPEN restart_service: probing back to autonomy, 2 successful probe(s) to close")
