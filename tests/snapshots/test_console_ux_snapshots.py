"""Issue 15 point 7: `/` filters as you type, in a line of the screen (no dialog), at 80x24 and 120x40.
Update with `pytest --snapshot-update` on these ids only, then look at the SVGs."""

from __future__ import annotations

import pytest

from tests.snapshots.test_snapshots import SIZES, _shoot


@pytest.mark.parametrize("size", SIZES)
def test_events_filtered_as_typed(snap_compare, console_gov, make_console, size):
    """Screen 2, `/` then "roll" typed and not submitted: the one matching event, the filter line open."""
    assert _shoot(snap_compare, make_console(console_gov), size, ["2", "slash", "r", "o", "l", "l"])


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_filter_kept_after_enter(snap_compare, console_gov, make_console, size):
    """The dashboard, a filter that matches nothing kept with Enter: the line stays, the note says so."""
    assert _shoot(snap_compare, make_console(console_gov), size, ["slash", *"nothing", "enter"])
