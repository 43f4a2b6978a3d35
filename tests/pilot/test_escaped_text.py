"""The console shows terminal escapes from stored values escaped (issue 11 pt 6): Textual strips only BEL,
BS, VT, FF and CR, so an ESC, a CSI or a bidi override in a command type or a kill-switch reason would
reach the terminal unless screens/fmt.py ``safe`` escapes it (tables, detail panes, the header)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.content import Content
from textual.widgets import Static

from engine.clock import isoformat
from screens.header import StatusHeader
from screens.widgets import Table
from tests.pilot.conftest import settle, text_of
from tests.pilot.seed import OPERATOR

pytestmark = pytest.mark.anyio

EVIL = "x\x1b[2Jevil\u202e"


def test_textual_alone_would_pass_the_escape_through():
    """The premise: without fmt.safe the ESC and the bidi override survive into what Textual draws."""
    assert "\x1b" in Content(EVIL).plain and "\u202e" in Content(EVIL).plain


async def test_events_table_detail_and_header_show_escapes(console_gov, console_clock, make_console):
    at = isoformat(console_clock.now() - timedelta(seconds=30))
    console_gov.ingestor.ingest_objects([{"kind": "command", "id": f"evil-{i}", "type": EVIL, "status": "failed",
                                          "autonomous": True, "at": at} for i in range(12)])
    console_gov.breakers.evaluate()
    console_gov.overrides.engage_kill_switch(OPERATOR, "stop \x1b]0;owned\x07 now")
    app = make_console(console_gov)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        header = text_of(app.screen.query_one(StatusHeader))
        assert "KILL" in header.upper() and "\x1b" not in header and "\x07" not in header
        statics = " ".join(text_of(w) for w in app.screen.query(Static))  # the dashboard's panes
        assert "\x1b" not in statics and "\u202e" not in statics and "\x07" not in statics
        assert "owned\\x07" in statics or "x\\x1b[2Jevil" in statics
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#events", Table)
        cells = [str(table.get_row_at(i)[j]) for i in range(table.row_count) for j in range(len(table.columns))]
        shown = [c for c in cells if "evil" in c]
        assert shown and all("\x1b" not in c and "\u202e" not in c for c in cells)
        assert "x\\x1b[2Jevil\\u202e" in shown
        row = next(i for i in range(table.row_count) if any("evil" in str(c) for c in table.get_row_at(i)))
        table.move_cursor(row=row)
        await settle(pilot)
        detail = text_of(app.screen.query_one("#event-detail"))
        assert "x\\x1b[2Jevil\\u202e" in detail and "\x1b" not in detail
