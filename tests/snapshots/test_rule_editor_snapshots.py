"""The rule editor's half-open recovery fields (recovery, cooldown, probes) at 80x24 and 120x40: a pause
rule with probes = 0 typed, the refusal shown under the fields."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select

from tests.pilot.conftest import settle

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.mark.parametrize("size", SIZES)
def test_rule_editor_recovery_fields_refusing_probes_0(snap_compare, console_gov, make_console, size):
    async def run_before(pilot):
        await settle(pilot, 3)
        await pilot.press("5", "e")
        await settle(pilot, 3)
        screen = pilot.app.screen
        screen.query_one("#action", Select).value = "pause_command_type"
        screen.query_one("#condition", Input).value = "commandType.failures >= 3"
        screen.query_one("#cooldown", Input).value = "30m"
        probes = screen.query_one("#probes", Input)
        probes.value = ""
        probes.focus()
        await pilot.press("0")
        await settle(pilot, 3)
        screen.query_one("#validation").scroll_visible(animate=False)
        await settle(pilot, 3)
    assert snap_compare(make_console(console_gov), terminal_size=size, run_before=run_before)
