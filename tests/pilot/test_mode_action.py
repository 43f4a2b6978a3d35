"""The degradation mode from the console (issue 14 pt 3): `m` on screen 8 asks for a mode and a reason in
a confirmation that names what each mode does; refused before the dialog, naming the roles, for an
operator without the kill switch's roles; applied (and audited) for one who holds them."""

from __future__ import annotations

import pytest

from screens.action_queue import MODE_MODAL, ActionQueueScreen
from screens.modals import ConfirmModal
from storage import state_repo
from tests.pilot.conftest import notifications, settle, until
from tests.pilot.seed import OPERATOR

pytestmark = pytest.mark.anyio


async def open_actions(pilot) -> ActionQueueScreen:
    await settle(pilot)
    await pilot.press("8")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ActionQueueScreen)
    return pilot.app.screen


def mode_in_store(gov) -> str:
    with gov.store.read() as conn:
        return state_repo.get_state(conn).mode or "normal"


async def test_the_mode_action_is_refused_without_the_role_and_names_it(console_gov, make_console):
    app = make_console(console_gov, operator="bob")  # bob holds tech-lead only
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.live is not None and app.live.ok, what="the first read")
        await open_actions(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)  # refused before the dialog
        title, message, severity = notifications(app)[-1]
        assert title == "Not allowed" and severity == "error"
        assert "changing the mode needs one of the roles" in message
        assert "incident-commander" in message and "on-call" in message and "bob holds tech-lead" in message
    assert mode_in_store(console_gov) == "normal"


async def test_the_mode_action_applies_with_the_role_after_a_confirmation(console_gov, make_console):
    app = make_console(console_gov)  # alice: admin, incident-commander, on-call, …
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.live is not None and app.live.ok, what="the first read")
        await open_actions(pilot)
        await pilot.press("m")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ConfirmModal) and modal.id == MODE_MODAL
        assert "minimal: only minimal_allowed classes act alone, the rest need approval" in modal.body
        assert "read_only: every autonomous action but reads is DENIED" in modal.body
        assert modal.choice == "minimal"
        await pilot.press("enter")            # pick minimal: focus moves to the reason
        await pilot.press(*"db failover drill")
        await pilot.press("enter")
        await until(pilot, lambda: mode_in_store(console_gov) == "minimal", what="the mode change")
        await until(pilot, lambda: any(t == "Mode" for t, _, _ in notifications(app)), what="the toast")
        assert any("mode normal -> minimal" in m for t, m, _ in notifications(app) if t == "Mode")
    [entry] = [e for e in console_gov.audit_entries(limit=20) if e["action"] == "mode.set"]
    assert entry["actor"] == OPERATOR and entry["reason"] == "db failover drill" and entry["target"] == "minimal"
