"""The kill switch's keys (DESIGN.md, console keys): bare `!` only when no text field has focus — typed
into a note it is a character, and the Enter that submits the note submits the note — and a chord
(keys.KILL_CHORD) that works everywhere, text fields included. Issue 15: "fixed!" in a resolve note
engaged the kill switch for the whole fleet."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette
from textual.widgets import Input

from screens.actions import KILL_SWITCH_MODAL
from screens.keybar import KeyBar
from screens.keys import KILL_CHORD
from screens.modals import ConfirmModal
from screens.rule_editor import RuleEditModal
from storage import state_repo
from tests.pilot.conftest import settle, text_of
from tests.pilot.seed import OPEN_EVENT, seed_actions

pytestmark = pytest.mark.anyio

TYPED = "fixed!"


def engaged(gov) -> bool:
    return gov.status(with_readiness=False)["killSwitch"]["engaged"]


async def type_into_every_field(pilot, where: str) -> list[str]:
    """Focus each text field of the dialog on top (or of the screen: `/`'s filter line), type TYPED, and
    check the `!` landed in the field and nothing else happened. Returns the fields typed into, as
    "where#id"."""
    app = pilot.app
    dialog = app.screen
    fields = [f for f in dialog.query(Input) if f.display and not f.disabled and f.region.height]
    assert fields, f"{where}: no text field in {dialog!r}"
    stack = list(app.screen_stack)
    done = []
    for field in fields:
        field.focus()
        await pilot.pause()
        before = field.value
        await pilot.press(*TYPED)
        await settle(pilot)
        assert app.screen is dialog, f"{where}: typing '!' in #{field.id} opened {app.screen!r}"
        assert list(app.screen_stack) == stack, where
        assert TYPED in field.value and field.value.count("!") == before.count("!") + 1, (where, field.value)
        done.append(f"{where}#{field.id}")
    return done


async def close(pilot, kind: type) -> None:
    await pilot.press("escape")
    await settle(pilot)
    assert not isinstance(pilot.app.screen, kind)


async def test_fixed_bang_then_enter_resolves_the_event_and_leaves_the_kill_switch_released(console_gov,
                                                                                             make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("r", *TYPED)
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ConfirmModal) and modal.query_one("#reason", Input).value == TYPED
        await pilot.press("enter")
        await settle(pilot, 3)
        assert not isinstance(app.screen, ConfirmModal)
        event = next(e for e in console_gov.breaker_events() if e["id"] == OPEN_EVENT)
        assert event["resolved"] and event["note"] == TYPED
        assert not engaged(console_gov)
        assert console_gov.audit_entries(limit=1)[0]["reason"] == TYPED


async def test_bang_is_a_character_in_every_text_field_of_the_console(console_gov, make_console):
    seed_actions(console_gov)  # screen 8's pending requests: approve note, reject reason
    with console_gov.store.write() as conn:  # something to revert
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["clear_cache"])
    app = make_console(console_gov)
    typed: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)

        async def dialog(keys: tuple[str, ...], kind: type, where: str) -> None:
            await pilot.press(*keys)
            await settle(pilot)
            assert isinstance(app.screen, kind), f"{where}: {keys} opened {app.screen!r}"
            typed.extend(await type_into_every_field(pilot, where))
            await close(pilot, kind)

        await dialog(("r",), ConfirmModal, "resolve note")
        await dialog(("L",), ConfirmModal, "revert reason")
        await dialog(("!",), ConfirmModal, "kill-switch reason")  # bare ! with no field focused: opens it
        await dialog((":",), CommandPalette, "palette")
        for digit in "12345678":  # `/` filters as you type, in a line of the screen: no dialog opens
            await pilot.press(digit)
            await settle(pilot)
            screen = app.screen
            await pilot.press("/")
            await settle(pilot)
            assert app.focused is not None and app.focused.id == "filter", f"/ on {digit}: {app.focused!r}"
            typed.extend(await type_into_every_field(pilot, f"filter on {digit}"))
            assert screen.filter_text == TYPED, (digit, screen.filter_text)  # the list is filtered by it
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen is screen and screen.filter_text == "" and app.focused.id != "filter", digit
        await pilot.press("4")
        await settle(pilot)
        await dialog(("x",), ConfirmModal, "proposal reject reason")
        await pilot.press("5")
        await settle(pilot)
        await dialog(("e",), RuleEditModal, "rule editor (edit)")
        await dialog(("n",), RuleEditModal, "rule editor (new)")
        await pilot.press("3")
        await settle(pilot)
        screen = app.screen
        while screen.selected_item()["decidedBy"] != "attestation":
            await pilot.press("down")
        await dialog(("t",), ConfirmModal, "attest evidence")
        await pilot.press("8")
        await settle(pilot)
        await dialog(("a",), ConfirmModal, "request approve note")
        await dialog(("x",), ConfirmModal, "request reject reason")
        assert not engaged(console_gov)
    fields = {t.split("#")[1] for t in typed}
    assert {"reason", "filter", "condition", "window", "min-samples", "name"} <= fields, typed
    assert len(typed) >= 22, typed


async def test_bang_in_the_release_reason_is_a_character_and_the_switch_stays_engaged(console_gov, make_console):
    console_gov.overrides.engage_kill_switch("alice", "bad rollout")
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("!")
        await settle(pilot)
        assert app.screen.id == KILL_SWITCH_MODAL and app.screen.title_text == "Release the kill switch"
        await type_into_every_field(pilot, "release reason")
        await pilot.press("escape")
        await settle(pilot)
        assert engaged(console_gov)


async def test_the_chord_engages_from_a_text_field_and_is_in_the_footer(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert f"!/{KILL_CHORD} Kill switch" in text_of(app.screen.query_one(KeyBar))
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("e", *"!=")
        await settle(pilot)
        assert isinstance(app.screen, RuleEditModal)
        await pilot.press(KILL_CHORD)
        await settle(pilot)
        assert app.screen.id == KILL_SWITCH_MODAL
        await pilot.press("enter")
        await settle(pilot)
        assert engaged(console_gov)
        assert isinstance(app.screen, RuleEditModal)
        assert "!=" in app.screen.query_one("#condition", Input).value
