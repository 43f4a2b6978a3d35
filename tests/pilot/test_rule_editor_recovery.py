"""The rule editor's half-open recovery fields (DESIGN.md "Recovery": recovery, cooldown, probes): shown
with the rule's values, refusals (probes 0, a negative cooldown, a cooldown with recovery manual) shown
under the fields and nothing saved, valid values saved through the rule book, and an edit of another
field keeping them."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, Static

from screens.rule_editor import RuleEditModal
from tests.pilot.conftest import settle, until

pytestmark = pytest.mark.anyio


async def _type(pilot, field: Input, text: str) -> None:
    field.focus()
    field.value = ""
    await pilot.press(*text)
    await settle(pilot, 1)


def _said(app) -> str:
    return str(app.screen.query_one("#validation", Static).render())


async def test_recovery_fields_are_edited_refused_and_kept(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5", "e")
        await until(pilot, lambda: isinstance(app.screen, RuleEditModal), what="the rule editor")
        screen = app.screen
        name = screen.rule["name"]
        assert screen.query_one("#recovery", Select).value == (screen.rule.get("recovery") or "half_open")
        screen.query_one("#action", Select).value = "pause_command_type"
        await _type(pilot, screen.query_one("#condition", Input), "commandType.failures >= 3")
        probes, cooldown = screen.query_one("#probes", Input), screen.query_one("#cooldown", Input)

        await _type(pilot, probes, "0")
        assert "probes 0 must be a whole number from 1 to 1000" in _said(app)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, RuleEditModal)  # refused: still editing, nothing saved
        assert console_gov.rules.show(name)["probes"] == 3

        await _type(pilot, probes, "5")
        await _type(pilot, cooldown, "-5m")
        assert "cooldown '-5m' is negative" in _said(app)
        await _type(pilot, cooldown, "30m")
        screen.query_one("#recovery", Select).value = "manual"
        await settle(pilot, 1)
        assert "recovery = manual forbids" in _said(app)
        screen.query_one("#recovery", Select).value = "half_open"
        await settle(pilot, 1)
        assert "half-open after resolution or 30m, closed after 5 succeeded probes" in _said(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, RuleEditModal), what="the save")
        saved = console_gov.rules.show(name)
        assert (saved["action"], saved["recovery"], saved["cooldown"], saved["probes"]) == (
            "pause_command_type", "half_open", "30m", 5)

        # opened again: the stored values are in the fields, and an edit elsewhere keeps them
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, RuleEditModal), what="the rule editor again")
        screen = app.screen
        assert screen.rule["name"] == name
        assert (screen.query_one("#cooldown", Input).value, screen.query_one("#probes", Input).value) == ("30m", "5")
        await _type(pilot, screen.query_one("#min-samples", Input), "12")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, RuleEditModal), what="the second save")
        again = console_gov.rules.show(name)
        assert (again["minSamples"], again["cooldown"], again["probes"]) == (12, "30m", 5)
