"""Issue 15 points 6 and 7: `/` filters as you type, in a line of the screen (no dialog), and the header
says how stale the screen is when the store is unreachable, at 80x24 and 120x40.
Update with `pytest --snapshot-update` on these ids only, then look at the SVGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pilot.conftest import settle
from tests.snapshots.test_snapshots import SIZES, _shoot


@pytest.mark.parametrize("size", SIZES)
def test_events_filtered_as_typed(snap_compare, console_gov, make_console, size):
    """Screen 2, `/` then "roll" typed and not submitted: the one matching event, the filter line open."""
    assert _shoot(snap_compare, make_console(console_gov), size, ["2", "slash", "r", "o", "l", "l"])


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_filter_kept_after_enter(snap_compare, console_gov, make_console, size):
    """The dashboard, a filter that matches nothing kept with Enter: the line stays, the note says so."""
    assert _shoot(snap_compare, make_console(console_gov), size, ["slash", *"nothing", "enter"])


@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24")])
def test_header_when_the_store_is_unreachable(snap_compare, console_gov, console_url, make_console, size):
    """The header after the store went away: STORE UNREACHABLE, then when what is still shown was read.
    80x24 only: at 120 columns the error goes on to name the store's path, a temporary directory that
    differs per run (tests/pilot/test_console_ux.py checks the header at both widths)."""
    db = Path(console_url)
    app = make_console(console_gov)

    async def run_before(pilot):
        await settle(pilot, 3)
        aside = db.with_name("aside")
        aside.mkdir()
        for f in db.parent.glob(db.name + "*"):
            f.rename(aside / f.name)
        db.mkdir()  # every new connection fails
        console_gov.store.engine.dispose()
        app.refresh_all()
        for _ in range(100):
            await settle(pilot, 1)
            if app.live is not None and app.live.error is not None:
                break
        await settle(pilot, 3)

    try:
        assert snap_compare(app, terminal_size=size, run_before=run_before)
    finally:
        if db.is_dir():
            db.rmdir()
