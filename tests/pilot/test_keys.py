"""Every console key, driven through Textual's Pilot against a real SQLite store: what it changes in the
store, and what the operator is told (refusals as notifications, never tracebacks)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from screens.actions import KILL_SWITCH_MODAL
from screens.audit import AuditScreen
from screens.dashboard import DashboardScreen
from screens.events import EventsScreen
from screens.header import StatusHeader
from screens.help import HelpModal
from screens.keys import KILL_CHORD
from screens.modals import ConfirmModal
from screens.proposals import ProposalsScreen
from screens.readiness import ReadinessScreen
from screens.reports import ReportsScreen
from screens.rules import RulesScreen
from screens.widgets import Table
from storage import outbox_repo, state_repo
from tests.pilot.conftest import bells, notifications, palette_offers, settle, text_of, until
from tests.pilot.seed import OPEN_EVENT, OPERATOR, PENDING, SHADOW_EVENT, T0

pytestmark = pytest.mark.anyio

SCREENS = {"1": DashboardScreen, "2": EventsScreen, "3": ReadinessScreen, "4": ProposalsScreen,
           "5": RulesScreen, "6": ReportsScreen, "7": AuditScreen}


def header_text(app) -> str:
    return text_of(app.gov_screen.query_one(StatusHeader))


def titles(app) -> list[str]:
    return [t for t, _, _ in notifications(app)]


def messages(app) -> str:
    return "\n".join(m for _, m, _ in notifications(app))


async def test_number_keys_switch_screens(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for key in "2345671":
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, SCREENS[key]), key
            assert f"[{SCREENS[key].SCREEN_TITLE}]" in header_text(app)
        assert not notifications(app), notifications(app)  # what was said, should this ever fail


async def test_dashboard_shows_the_seeded_state(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#unresolved", Table).selected_key == OPEN_EVENT
        assert screen.query_one("#pending", Table).selected_key == PENDING
        breakers = text_of(screen.query_one("#breakers"))
        assert "TRIPPED" in breakers and "Repeated Command Failures" in breakers
        assert "1 unresolved" in header_text(app) and "L3" in header_text(app)
        readiness = text_of(screen.query_one("#readiness"))
        assert "not ready" in readiness and "Blockers" in readiness


async def test_r_resolves_the_selected_event_with_note_and_false_positive(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ConfirmModal) and "Repeated Command Failures" in modal.title_text
        assert "un-pauses restart_service" in modal.body
        await pilot.press(*"fp")
        await pilot.press("tab", "space", "ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        event = next(e for e in console_gov.breaker_events() if e["id"] == OPEN_EVENT)
        assert event["resolved"] and event["note"] == "fp" and event["falsePositive"]
        assert event["resolvedBy"] == "alice"
        assert console_gov.status(with_readiness=False)["pausedCommandTypes"] == []
        assert "Resolved" in titles(app)
        assert app.screen.query_one("#unresolved", Table).row_count == 0


async def test_resolve_needs_a_note(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("r", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        assert "required" in text_of(app.screen.query_one("#dialog-error"))
        await pilot.press("escape")
        await settle(pilot)
        assert not console_gov.breaker_events(unresolved_only=False)[0]["resolved"]


async def test_resolve_without_the_role_is_refused_with_the_role_named(console_gov, make_console):
    app = make_console(console_gov, operator="dave")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("r", *"ok", "enter")
        await settle(pilot)
        title, message, severity = notifications(app)[-1]
        assert (title, severity) == ("Not allowed", "error")
        assert "on-call" in message and "dave" in message
        assert len(console_gov.breaker_events(unresolved_only=True)) == 1


async def test_keys_that_need_a_selection_say_so(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("r", "a", "x")
        await settle(pilot)
        assert titles(app) == ["Nothing selected"] * 3
        assert not isinstance(app.screen, ConfirmModal)


async def test_approve_is_refused_while_a_high_severity_event_is_open(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal) and "as tech-lead" in app.screen.title_text
        assert "APPLIED at once" in app.screen.body
        await pilot.press("enter")
        await settle(pilot)
        title, message, severity = notifications(app)[-1]
        assert title == "Refused" and severity == "error" and "resolve them before approving" in message
        assert console_gov.status(with_readiness=False)["currentPhase"] == "L3"


async def test_a_approves_and_the_last_approval_applies_the_transition(calm_gov, make_console):
    app = make_console(calm_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        status = calm_gov.status(with_readiness=False)
        assert status["currentPhase"] == "L3+"
        assert status["commandWhitelist"] == ["clear_cache", "rotate_logs"]
        assert status["validationPeriod"]["daysLeft"] == 14
        assert any("approved and applied" in m for m in messages(app).splitlines())
        await until(pilot, lambda: "L3+" in header_text(app) and "validation 14d left" in header_text(app),
                    what="the header to show L3+ and the validation period")


async def test_approve_without_a_needed_role_is_refused_before_any_dialog(calm_gov, make_console):
    calm_gov.grant_role("alice", "erin", "on-call")
    app = make_console(calm_gov, operator="erin")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        title, message, _ = notifications(app)[-1]
        assert title == "Not allowed" and "tech-lead" in message and "erin holds on-call" in message


async def test_x_rejects_with_a_reason(calm_gov, make_console):
    app = make_console(calm_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal) and app.screen.title_text.startswith(f"Reject {PENDING}")
        await pilot.press(*"nope", "enter")
        await settle(pilot)
        proposal = app.gov.proposals.show(PENDING)
        assert proposal["status"] == "rejected" and proposal["reason"] == "nope"
        assert "Rejected" in titles(app)


async def test_L_reverts_to_L3_after_confirmation(console_gov, make_console):
    with console_gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["clear_cache"])
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("L")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        assert "L3+ → L3" in app.screen.body and "clear_cache" in app.screen.body
        await pilot.press(*"oops", "enter")
        await settle(pilot)
        status = console_gov.status(with_readiness=False)
        assert status["currentPhase"] == "L3" and status["commandWhitelist"] == []
        assert console_gov.audit_entries(limit=1)[0]["reason"] == "oops"


async def test_L_at_L3_has_nothing_to_revert(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("L")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        assert titles(app) == ["Nothing to do"]


async def test_bang_enter_engages_the_kill_switch(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("!", "enter")
        await settle(pilot)
        ks = console_gov.status(with_readiness=False)["killSwitch"]
        assert ks["engaged"] and ks["by"] == "alice" and ks["reason"] == "engaged from the console by alice"
        await until(pilot, lambda: "KILL SWITCH ENGAGED" in header_text(app), what="the header to show the switch")


async def test_the_chord_works_from_inside_a_modal_with_a_text_field(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("r", *"half!")
        await settle(pilot)
        assert app.screen.id != KILL_SWITCH_MODAL  # `!` in a text field is a character
        await pilot.press(KILL_CHORD)
        await settle(pilot)
        assert app.screen.id == KILL_SWITCH_MODAL
        await pilot.press("enter")
        await settle(pilot)
        assert console_gov.status(with_readiness=False)["killSwitch"]["engaged"]
        resolve = app.screen
        assert isinstance(resolve, ConfirmModal) and resolve.query_one("#reason").value == "half!"


async def test_the_chord_from_the_filter_line_and_escape_cancels(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("/", *"hi!")
        await settle(pilot)
        field = app.focused
        assert field is not None and field.id == "filter" and field.value == "hi!"
        await pilot.press(KILL_CHORD)
        await settle(pilot)
        assert app.screen.id == KILL_SWITCH_MODAL
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is app.gov_screen and app.focused is field and field.value == "hi!"
        assert not console_gov.status(with_readiness=False)["killSwitch"]["engaged"]


async def test_bang_when_engaged_asks_a_reason_to_release(console_gov, make_console):
    console_gov.overrides.engage_kill_switch("alice", "bad rollout")
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("!")
        await settle(pilot)
        assert app.screen.title_text == "Release the kill switch" and "bad rollout" in app.screen.body
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.id == KILL_SWITCH_MODAL  # a reason is required
        await pilot.press(*"done", "enter")
        await settle(pilot)
        assert not console_gov.status(with_readiness=False)["killSwitch"]["engaged"]
        assert console_gov.audit_entries(limit=1)[0]["reason"] == "done"


async def test_release_needs_the_incident_commander_or_ops_lead_role(console_gov, make_console):
    console_gov.overrides.engage_kill_switch("alice", "bad rollout")
    console_gov.grant_role("alice", "frank", "on-call")
    app = make_console(console_gov, operator="frank")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("!", *"done", "enter")
        await settle(pilot)
        title, message, _ = notifications(app)[-1]
        assert title == "Not allowed" and "incident-commander" in message
        assert console_gov.status(with_readiness=False)["killSwitch"]["engaged"]


async def test_c_runs_the_governance_cycle(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot, 3)
        done = [m for t, m, _ in notifications(app) if t == "Cycle complete"]
        assert done and "recommendation investigate" in done[0] and "no proposal" in done[0]
        reports = app.gov.reports.list(5)
        assert len(reports) == 2 and reports[0]["id"] in done[0]
        await pilot.press("6")
        await settle(pilot)
        assert app.screen.query_one("#reports", Table).row_count == 2


async def test_slash_filters_the_events(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one("#events", Table)
        assert table.row_count == 3
        await pilot.press("/", *"false", "enter")
        await settle(pilot)
        assert table.row_count == 1 and table.selected_key == SHADOW_EVENT
        assert "matching 'false'" in text_of(app.screen.query_one("#events-note"))
        await pilot.press("/", "ctrl+a", "ctrl+k", "enter")
        await settle(pilot)
        assert table.row_count == 3


async def test_slash_searches_the_audit_log_in_the_store(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        everything = app.screen.query_one("#entries", Table).row_count
        await pilot.press("/", *"attest", "enter")
        await settle(pilot, 3)
        assert 0 < app.screen.query_one("#entries", Table).row_count == 6 < everything


async def test_question_mark_shows_every_contract_key(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("?")
        await settle(pilot)
        assert isinstance(app.screen, HelpModal)
        text = " ".join(text_of(s) for s in app.screen.query("Static"))
        for phrase in ("Approve the selected proposal", "Reject the selected", "Resolve the selected",
                       "Revert to L3", "! then Enter", "governance cycle", "Filter", "Leave the console"):
            assert phrase in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)


async def test_the_command_palette_offers_the_same_actions(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press(":")
        await settle(pilot)
        await pilot.press(*"Kill switch")
        await until(pilot, lambda: palette_offers(app, "Kill switch"), what="the palette's search")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.id == KILL_SWITCH_MODAL


async def test_a_trip_by_another_process_is_announced_with_the_bell(console_gov, console_url, console_clock,
                                                                   make_console):
    from engine.governance import Governance
    from storage.store import Store

    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert bells(app) == 0
        other = Governance(Store(console_url), console_clock)  # another process's view of the store
        at = T0 - timedelta(seconds=60)
        burst = [{"kind": "command", "id": f"burst-{i}", "type": "drain_node", "status": s, "autonomous": True,
                  "at": (at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")}
                 for i in range(12) for s in ("proposed", "failed")]
        other.ingestor.ingest_objects(burst)
        other.store.dispose()
        await until(pilot, lambda: any("breakers tripped" in t or t == "Circuit breaker tripped" for t in titles(app)),
                    timeout=15)
        assert any("breakers tripped" in t or t == "Circuit breaker tripped" for t in titles(app)), titles(app)
        assert bells(app) >= 1
        assert any("drain_node" in m for m in messages(app).splitlines())


async def test_t_attests_a_checklist_item_from_the_readiness_screen(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#items", Table)
        while app.screen.selected_item()["name"] != "Accountability framework documented":
            await pilot.press("down")
        await pilot.press("t")
        await settle(pilot)
        await pilot.press("down", "up", "enter", *"RACI", "enter")  # verdict pass, evidence
        await settle(pilot, 3)
        item = next(r for rs in console_gov.readiness.assess().results.values() for r in rs
                    if r.item.name == "Accountability framework documented")
        assert item.status and "RACI" in item.details
        assert table.row_count == 24


async def test_t_on_a_data_decided_item_is_refused(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        while app.screen.selected_item()["name"] != "Circuit breakers implemented":
            await pilot.press("down")
        await pilot.press("t")
        await settle(pilot)
        assert titles(app) == ["Not attestable"]


async def test_rule_editor_validates_as_you_type_backtests_and_saves(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        editor = app.screen
        validation = editor.query_one("#validation")
        assert "✓ valid" in text_of(validation)
        await pilot.press("end", "backspace", "backspace", "backspace", "backspace")  # "errorRate > "
        await pilot.pause()
        assert "✗ condition" in text_of(validation)
        await pilot.press(*"0.2")
        await pilot.pause()
        assert "trips when errorRate > 0.2" in text_of(validation)
        await pilot.press("ctrl+b")
        await settle(pilot, 3)
        assert "Backtest over 30 days" in text_of(editor.query_one("#backtest"))
        await pilot.press("ctrl+s")
        await settle(pilot, 3)
        assert console_gov.rules.show("High Error Rate")["condition"] == "errorRate > 0.2"
        assert "Rule saved" in titles(app)


async def test_rule_editor_puts_one_rule_in_shadow(console_gov, make_console):
    from textual.widgets import Checkbox
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5", "e")
        await settle(pilot)
        for _ in range(10):  # no mouse: tab to the checkbox, space to tick it
            if app.screen.focused is app.screen.query_one("#shadow", Checkbox):
                break
            await pilot.press("tab")
        await pilot.press("space")
        await pilot.pause()
        assert app.screen.query_one("#shadow", Checkbox).value
        await pilot.press("ctrl+s")
        await settle(pilot, 3)
        assert console_gov.rules.show("High Error Rate")["shadow"] is True
        assert console_gov.status(with_readiness=False)["breakerMode"] == "enforce"  # the others still enforce
        await settle(pilot, 3)
        assert "SHADOW: records what it would have done" in text_of(app.screen.query_one("#rule-detail"))


async def test_audit_v_verifies_the_chain_and_the_state_against_it(console_gov, make_console):
    from storage import state_repo
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("7", "v")
        await until(pilot, lambda: notifications(app), what="the verdict of v")
        title, message, _ = notifications(app)[-1]
        assert title == "Audit log verified", message
        assert "intact" in message and "state, roles, tokens, rules, policies and sinks match" in message
        with console_gov.store.write() as conn:  # a database writer widens the whitelist behind the log's back
            state_repo.update_state(conn, command_whitelist=["restart_service", "drain_node"])
        await pilot.press("v")
        await until(pilot, lambda: len(notifications(app)) >= 2, what="the second verdict of v")
        title, message, _ = notifications(app)[-1]
        assert title == "Audit log NOT verified" and "whitelist" in message and "without an audit entry" in message


async def test_q_quits(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running



async def test_store_unreachable_the_header_says_so_and_the_kill_switch_engages_by_its_marker_file(
        console_gov, console_url, make_console):
    db = Path(console_url)
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        aside = db.with_name("aside")
        aside.mkdir()
        for f in db.parent.glob(db.name + "*"):
            f.rename(aside / f.name)
        db.mkdir()  # the path is now a directory: every new connection fails
        console_gov.store.engine.dispose()
        await until(pilot, lambda: "STORE UNREACHABLE" in header_text(app), timeout=30)
        assert "STORE UNREACHABLE" in header_text(app)
        assert "L3" in header_text(app)  # the last state read stays on screen
        await pilot.press("!", "enter")
        await settle(pilot)
        title, message, severity = notifications(app)[-1]
        marker = console_gov.kill_marker.path
        assert message.startswith(f"store not writable: engaged by marker file {marker} only"), message
        await until(pilot, lambda: "(marker file)" in header_text(app), timeout=30)
        assert "KILL SWITCH ENGAGED" in header_text(app) and "(marker file)" in header_text(app)
        assert marker.exists()
        db.rmdir()
        for f in aside.iterdir():
            f.rename(db.parent / f.name)
        await until(pilot, lambda: "store ok" in header_text(app), timeout=30, what="the header to say store ok")
        assert "store ok" in header_text(app)
        console_gov.overrides.record_marker()  # the scheduler's tick, when this console leads
        with console_gov.store.read() as conn:
            assert state_repo.get_state(conn).kill_switch_engaged  # recorded once the store was back


async def test_no_color_is_honoured_plots_included(console_gov, make_console, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, 3)
        assert app.no_color
        plot = app.screen.query_one("#plot-rates")
        assert "┤" in plot.content.plain
        assert not [span for span in plot.content.spans if span.style]


@pytest.mark.postgres
async def test_the_console_works_on_postgresql(postgres_url, console_clock, make_console):
    from tests.pilot.seed import seeded_gov
    gov = seeded_gov(postgres_url, clock=console_clock)
    try:
        app = make_console(gov)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert app.screen.query_one("#unresolved", Table).selected_key == OPEN_EVENT
            assert "TRIPPED" in text_of(app.screen.query_one("#breakers"))
            await pilot.press("r", *"pg", "enter")
            await settle(pilot)
            assert not gov.breaker_events(unresolved_only=True)
            await until(pilot, lambda: "no open events" in header_text(app), what="the header to drop the event")
    finally:
        gov.store.dispose()


async def test_the_header_says_when_alerts_were_given_up_on(console_gov, make_console):
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "undelivered" not in header_text(app)
        with console_gov.store.write() as conn:  # the pager refused them (HTTP 400): dead-lettered
            outbox_repo.insert_many(conn, [{"created_at": T0, "sink": "pager", "severity": "critical",
                                            "kind": "trigger", "dedup_key": f"k-{i}", "payload": {},
                                            "next_attempt_at": T0} for i in range(2)])
            for row in outbox_repo.list_rows(conn):
                outbox_repo.mark_dead(conn, row.id, attempts=1, error="HTTP 400")
        app.refresh_all()
        await until(pilot, lambda: "2 alerts undelivered" in header_text(app), what="the undelivered count")
        console_gov.outbox.dismiss(OPERATOR, all_dead=True, reason="routing key rotated; paged by phone")
        app.refresh_all()
        await until(pilot, lambda: "undelivered" not in header_text(app), what="the count to clear")


async def test_a_refresh_asked_for_during_a_read_runs_after_it(console_gov, make_console):
    """A read that started before an action committed must not be the last word: the refresh the action
    asks for while it runs is queued, not dropped (else the header stays stale until the next tick)."""
    import threading
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        release, ran = threading.Event(), []
        app._in_thread("probe", lambda: (release.wait(10), ran.append("first")))
        app._in_thread("probe", lambda: ran.append("second"))
        app._in_thread("probe", lambda: ran.append("third"))  # replaces "second": one more read is enough
        release.set()
        await until(pilot, lambda: len(ran) == 2, what="the queued read")
        assert ran == ["first", "third"]
        await until(pilot, lambda: "probe" not in app._busy, what="the key to be free")
        app._in_thread("probe", lambda: ran.append("fourth"))
        await until(pilot, lambda: len(ran) == 3, what="a fresh read")
