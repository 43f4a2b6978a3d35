"""Screen 8, Actions, at 80x24 and 120x40 on the seeded store plus the fixed-id actions of
tests/pilot/seed.py (`seed_actions`): two pending requests, a grant in flight, recent outcomes; the
detail of a finished grant with its `govcon run` report; the approve and reject dialogs; the empty
screen. Update after an intended change with `pytest tests/snapshots --snapshot-update -k actions`."""

from __future__ import annotations

import pytest

from tests.pilot.seed import seed_actions
from tests.snapshots.test_snapshots import SIZES, _shoot


@pytest.mark.parametrize("size", SIZES)
def test_actions_screen(snap_compare, console_gov, make_console, size):
    seed_actions(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["8"])


@pytest.mark.parametrize("size", SIZES)
def test_actions_report_detail(snap_compare, console_gov, make_console, size):
    """The outcomes list (second Tab), its second row: the succeeded restart with its action report."""
    seed_actions(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["8", "tab", "tab", "down"])


@pytest.mark.parametrize("dialog", ["a", "x"])
def test_actions_dialog(snap_compare, console_gov, make_console, dialog):
    seed_actions(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), (80, 24), ["8", dialog])


def test_actions_screen_empty(snap_compare, console_gov, make_console):
    assert _shoot(snap_compare, make_console(console_gov), (80, 24), ["8"])
