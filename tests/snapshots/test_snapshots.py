"""Every screen and every dialog of the console at 80x24 and 120x40, on the seeded store with a fixed
clock (tests/pilot/seed.py). Update after an intended change with `pytest --snapshot-update`, then look at
the SVGs under tests/snapshots/__snapshots__/."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import state_repo
from tests.pilot.conftest import settle
from tests.pilot.seed import T0

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
SCREENS = ["1", "2", "3", "4", "5", "6", "7"]
DIALOGS = {
    "approve": ["a"],
    "reject": ["x"],
    "resolve": ["r"],
    "kill-switch-engage": ["!"],
    "filter": ["2", "/"],
    "help": ["?"],
    "rule-editor": ["5", "e"],
    "new-rule": ["5", "n"],
    "attest": ["3", "t"],
    "palette": [":"],
}


def _shoot(snap_compare, app, size, keys):
    async def run_before(pilot):
        await settle(pilot, 3)
        for key in keys:
            await pilot.press(key)
            await settle(pilot, 3)  # a key may start a worker whose answer opens the dialog
        await settle(pilot, 3)
    return snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", SCREENS)
def test_screen(snap_compare, console_gov, make_console, key, size):
    assert _shoot(snap_compare, make_console(console_gov), size, [key])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dialog", list(DIALOGS))
def test_dialog(snap_compare, console_gov, make_console, dialog, size):
    assert _shoot(snap_compare, make_console(console_gov), size, DIALOGS[dialog])


def _expanded_and_killed(gov):
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["clear_cache", "rotate_logs"],
                                validation_until=T0 + timedelta(days=9), validation_proposal_id="prop-0000000001")
    gov.overrides.engage_kill_switch("alice", "runaway restarts in eu-west")


@pytest.mark.parametrize("size", SIZES)
def test_dialog_revert(snap_compare, console_gov, make_console, size):
    _expanded_and_killed(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["L"])


@pytest.mark.parametrize("size", SIZES)
def test_dialog_kill_switch_release(snap_compare, console_gov, make_console, size):
    _expanded_and_killed(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, ["!"])


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_expanded_with_kill_switch_engaged(snap_compare, console_gov, make_console, size):
    _expanded_and_killed(console_gov)
    assert _shoot(snap_compare, make_console(console_gov), size, [])


@pytest.mark.parametrize("size", SIZES)
def test_long_event_detail_scrolled_to_its_end(snap_compare, console_gov, make_console, size):
    """The resolved event's detail (effect and resolution at its bottom), Tab to it, End: its end shows."""
    assert _shoot(snap_compare, make_console(console_gov), size, ["2", "j", "tab", "end"])
