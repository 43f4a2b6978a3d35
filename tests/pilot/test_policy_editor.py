"""Issue 13 pt 2, the console's half: gate policies and alert sinks edited on screen 5 (`p` then `n`/`e`/`d`;
`s` for the sinks), through the same books as `govcon policies set` and `govcon alerts sinks set` — one
transaction, one audit entry with before and after. Only admin and ops-lead: the refusal names the roles
before any dialog opens. A saved policy is the one the gate decides by, at once; a sink's URL never shows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.widgets import Input, Static

from screens.modals import ConfirmModal
from screens.policy_editor import PolicyEditModal
from screens.rules import RulesScreen
from screens.sinks import SinkEditModal, SinksModal
from storage import state_repo
from tests.pilot.conftest import notifications, settle, text_of, until
from tests.pilot.seed import OPERATOR, T0

pytestmark = pytest.mark.anyio
SECRET_PATH = "/services/T0001/B0002/s3cr3tT0k3nXYZ"
SECRET_URL = "https://hooks.example.com" + SECRET_PATH
ROLE_REFUSAL = "needs one of the roles admin, ops-lead; bob holds tech-lead"


def expand(gov) -> None:
    """L3+ with purge_cdn (no history) whitelisted: the gate allows it within its policy (none yet)."""
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["purge_cdn"],
                                validation_until=T0 + timedelta(days=9))


async def type_into(pilot, screen, selector: str, text: str) -> None:
    field = screen.query_one(selector, Input)
    field.focus()
    await pilot.pause()
    field.cursor_position = len(field.value)
    await pilot.press("ctrl+u")
    if text:
        await pilot.press(*text)


async def policies_view(pilot, app) -> RulesScreen:
    await until(pilot, lambda: app.live is not None, what="the first read")
    await pilot.press("5")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, RulesScreen)
    await pilot.press("p")
    await settle(pilot)
    return screen


def last_audit(gov, action: str | None = None) -> dict:
    """The newest audit entry (of ``action``: a gate's allow writes its grant's entry after ours)."""
    return next(e for e in gov.audit_entries(limit=50) if action is None or e["action"] == action)


async def test_admin_creates_and_edits_a_policy_and_the_gate_decides_by_it(console_gov, make_console):
    expand(console_gov)
    assert console_gov.gate.decide("purge_cdn", confidence=0.9).decision == "allow"  # no policy yet
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await policies_view(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PolicyEditModal), what="the editor")
        editor = app.screen
        await type_into(pilot, editor, "#pol-name", "cache_purge")
        await type_into(pilot, editor, "#pol-command-types", "purge_cdn")
        await type_into(pilot, editor, "#pol-confidence-threshold", "0.95")
        await type_into(pilot, editor, "#pol-max-per-day", "4")
        await type_into(pilot, editor, "#pol-reason", "purges need more certainty")
        assert "✓ valid" in text_of(editor.query_one("#validation", Static))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen, what="the editor to close on save")
        assert any(t == "Policy saved" and "created policy 'cache_purge'" in m for t, m, _ in notifications(app))
        await until(pilot, lambda: screen.query_one("#policies").row_count == 1, what="the new policy listed")

        # the gate (this process's, and any other process's on the store) decides by it at once
        decision = console_gov.gate.decide("purge_cdn", confidence=0.9)
        assert decision.decision == "needs_approval" and "confidence" in decision.reason
        entry = last_audit(console_gov)
        assert (entry["action"], entry["actor"], entry["target"]) == ("policy.set", OPERATOR, "cache_purge")
        assert entry["details"]["before"] is None
        assert entry["details"]["after"] == {"command_types": ["purge_cdn"], "max_per_day": 4,
                                             "confidence_threshold": 0.95}
        assert entry["reason"] == "purges need more certainty"

        # edit: every field is there, prefilled; lower the threshold, add a weekly limit
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, PolicyEditModal), what="the editor")
        editor = app.screen
        assert editor.query_one("#pol-confidence-threshold", Input).value == "0.95"
        assert editor.query_one("#pol-max-per-day", Input).value == "4"
        await type_into(pilot, editor, "#pol-confidence-threshold", "0.85")
        await type_into(pilot, editor, "#pol-max-per-week", "10")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen, what="the editor to close on save")
        assert console_gov.gate.decide("purge_cdn", confidence=0.9).decision == "allow"
        entry = last_audit(console_gov, "policy.set")
        assert entry["details"] == {"before": {"command_types": ["purge_cdn"], "max_per_day": 4,
                                               "confidence_threshold": 0.95},
                                    "after": {"command_types": ["purge_cdn"], "max_per_day": 4,
                                              "max_per_week": 10, "confidence_threshold": 0.85}}
        await until(pilot, lambda: "conf≥85%" in text_of(screen.query_one("#policy-detail", Static)),
                    what="the list to show the edit")


async def test_a_bad_value_is_refused_in_the_editor_naming_the_field_and_nothing_is_written(console_gov, make_console):
    app = make_console(console_gov)
    entries = len(console_gov.audit_entries(limit=10_000))
    async with app.run_test(size=(80, 24)) as pilot:
        await policies_view(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PolicyEditModal), what="the editor")
        editor = app.screen
        await type_into(pilot, editor, "#pol-name", "restarts")
        await type_into(pilot, editor, "#pol-command-types", "restart_service")
        await type_into(pilot, editor, "#pol-max-per-day", "-1")
        assert "Max per day: must be a whole number >= 0" in text_of(editor.query_one("#validation", Static))
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is editor
        error = text_of(editor.query_one("#policy-error", Static))
        assert "not saved" in error and "Max per day" in error
        await type_into(pilot, editor, "#pol-max-per-day", "two")
        await type_into(pilot, editor, "#pol-maintenance-window", "25:00-03:00")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Max per day: 'two' is not a whole number" in text_of(editor.query_one("#policy-error", Static))
        await type_into(pilot, editor, "#pol-max-per-day", "")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Maintenance window" in text_of(editor.query_one("#policy-error", Static))
        await pilot.press("escape")
        await settle(pilot)
    assert console_gov.policy_book.list() == []
    assert len(console_gov.audit_entries(limit=10_000)) == entries


async def test_an_operator_without_the_role_is_refused_before_any_dialog(console_gov, make_console):
    console_gov.policy_book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "max_per_day": 2})
    console_gov.sink_book.set(OPERATOR, "ops", {"type": "webhook", "url": SECRET_URL})
    app = make_console(console_gov, operator="bob")  # tech-lead only
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await policies_view(pilot, app)
        await until(pilot, lambda: screen.query_one("#policies").row_count == 1, what="the policy")
        for key in ("n", "e", "d"):
            before = len(notifications(app))
            await pilot.press(key)
            await until(pilot, lambda: len(notifications(app)) > before, what=f"the refusal of {key}")
            title, message, severity = notifications(app)[-1]
            assert ROLE_REFUSAL in message and severity == "error" and title == "Not allowed", (key, message)
            assert app.screen is screen, f"{key} opened a dialog for an operator without the role"
        await pilot.press("s")  # reading the sinks is anyone's; changing them is not
        await until(pilot, lambda: isinstance(app.screen, SinksModal), what="the sinks list")
        sinks = app.screen
        await until(pilot, lambda: sinks.query_one("#sinks").row_count == 1, what="the sink")
        for key in ("n", "e", "d"):
            before = len(notifications(app))
            await pilot.press(key)
            await until(pilot, lambda: len(notifications(app)) > before, what=f"the refusal of {key}")
            message = notifications(app)[-1][1]
            assert "editing alert sinks and their routing needs one of the roles admin, ops-lead" in message
            assert app.screen is sinks
    assert [p["maxPerDay"] for p in console_gov.policy_book.list()] == [2]
    assert [s["name"] for s in console_gov.sink_book.list()] == ["ops"]


async def test_delete_asks_first_and_is_audited(console_gov, make_console):
    console_gov.policy_book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "max_per_day": 2})
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await policies_view(pilot, app)
        await until(pilot, lambda: screen.query_one("#policies").row_count == 1, what="the policy")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation")
        assert "Delete the gate policy 'restarts'" in text_of(app.screen.query_one("#dialog-body", Static))
        await pilot.press("escape")
        await settle(pilot)
        assert len(console_gov.policy_book.list()) == 1
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation")
        await pilot.press(*"retired", "enter")
        await until(pilot, lambda: console_gov.policy_book.list() == [], what="the delete")
        await until(pilot, lambda: screen.query_one("#policies").row_count == 0, what="the list to follow")
        assert any(t == "Policy deleted" for t, _m, _s in notifications(app))
    entry = last_audit(console_gov)
    assert (entry["action"], entry["target"], entry["reason"]) == ("policy.delete", "restarts", "retired")
    assert entry["details"]["before"] == {"command_types": ["restart_service"], "max_per_day": 2}


def screen_text(app) -> str:
    return app.export_screenshot()


async def test_sinks_are_added_edited_and_deleted_and_the_secret_never_shows(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await policies_view(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SinksModal), what="the sinks list")
        sinks = app.screen
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, SinkEditModal), what="the sink editor")
        editor = app.screen
        await type_into(pilot, editor, "#sink-name", "ops-hook")
        await type_into(pilot, editor, "#sink-url", "ftp://nowhere")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "URL must be an http:// or https:// URL" in text_of(editor.query_one("#sink-error", Static))
        await type_into(pilot, editor, "#sink-url", SECRET_URL)
        await type_into(pilot, editor, "#sink-severities", "critical, high")
        assert SECRET_PATH not in screen_text(app)  # typed, masked
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is sinks, what="the editor to close on save")
        await until(pilot, lambda: sinks.query_one("#sinks").row_count == 1, what="the new sink")
        shown = screen_text(app)
        assert "https://hooks.example.com/…" in shown and SECRET_PATH not in shown
        stored = console_gov.sink_book.show("ops-hook")
        assert stored["severities"] == ["critical", "high"]
        entry = last_audit(console_gov)
        assert (entry["action"], entry["target"], entry["details"]["before"]) == ("sink.set", "ops-hook", None)
        assert SECRET_PATH not in str(entry)

        # edit: the URL field starts empty (masked placeholder); left empty, the stored secret stays
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, SinkEditModal), what="the sink editor")
        editor = app.screen
        assert editor.query_one("#sink-url", Input).value == ""
        assert SECRET_PATH not in screen_text(app)
        await type_into(pilot, editor, "#sink-severities", "critical")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is sinks, what="the editor to close on save")
        after = console_gov.sink_book.show("ops-hook")
        assert after["severities"] == ["critical"]
        assert after["secretFingerprint"] == stored["secretFingerprint"]  # the URL kept
        entry = last_audit(console_gov)
        assert entry["details"]["before"]["severities"] == ["critical", "high"]
        assert entry["details"]["after"]["severities"] == ["critical"]

        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation")
        assert SECRET_PATH not in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: console_gov.sink_book.list() == [], what="the delete")
        await until(pilot, lambda: sinks.query_one("#sinks").row_count == 0, what="the list to follow")
        assert last_audit(console_gov)["action"] == "sink.delete"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RulesScreen)
