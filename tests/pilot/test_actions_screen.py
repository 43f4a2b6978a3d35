"""Screen 8, Actions, through Textual's Pilot against a real SQLite store: a request queued by the real
gate at L3 is approved with `a` (the grant is in the store file), rejected with `x` and a reason, and
refused — before any dialog — for an operator without an approver role, for the requester (four eyes)
and under the kill switch; a refusal the engine makes after the dialog names who decided first."""

from __future__ import annotations

from datetime import timedelta

import pytest

from screens.action_queue import ActionQueueScreen
from screens.help import HelpModal
from screens.keybar import KeyBar
from screens.modals import ConfirmModal
from screens.proposals import ProposalsScreen
from screens.widgets import Table
from storage import actions_repo
from storage.store import Store
from tests.pilot.conftest import notifications, settle, text_of, until
from tests.pilot.seed import GRANT_DONE, OPERATOR, PENDING, REQ_RESTART, seed_actions

pytestmark = pytest.mark.anyio


def ask(gov, requested_by: str = "bot-operator") -> str:
    """What an agent does at L3: ask the gate with request=True; the answer queues an action request."""
    decision = gov.gate.decide("restart_service", agent="rollback-bot", service="api", confidence=0.93,
                               request=True, requested_by=requested_by)
    assert decision.decision == "needs_approval" and decision.request_id, decision.to_json()
    return decision.request_id


def last(app) -> tuple[str, str, str]:
    return notifications(app)[-1]


def in_the_file(url: str, request_id: str):
    """The request and its grant as a fresh connection to the SQLite file reads them."""
    store = Store(url)
    try:
        with store.read() as conn:
            request = actions_repo.get_request(conn, request_id)
            grant = actions_repo.get_grant(conn, request.grant_id) if request.grant_id else None
            return request, grant
    finally:
        store.dispose()


async def open_actions(pilot) -> ActionQueueScreen:
    await settle(pilot)
    await pilot.press("8")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ActionQueueScreen)
    return screen


async def test_a_approves_the_selected_request_and_the_grant_is_in_the_store(console_gov, console_url,
                                                                              make_console):
    rid = ask(console_gov)
    app = make_console(console_gov)  # alice holds on-call; bot-operator asked
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_actions(pilot)
        assert screen.query_one("#aq-pending", Table).selected_key == rid
        detail = text_of(screen.query_one("#action-detail"))
        assert "restart_service on api" in detail and "paused by a circuit breaker" in detail
        assert "a approves" in detail
        await pilot.press("a")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        assert modal.title_text == "Approve restart_service on api for rollback-bot: a grant lets it act once, now"
        assert "once" in modal.body and "bot-operator" in modal.body
        await pilot.press(*"runbook step 3", "enter")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        request, grant = in_the_file(console_url, rid)
        assert (request.status, request.decided_by, request.note) == ("approved", OPERATOR, "runbook step 3")
        assert grant is not None and grant.status == "granted" and grant.approved_by == OPERATOR
        assert (grant.command_type, grant.service, grant.agent) == ("restart_service", "api", "rollback-bot")
        title, message, _ = last(app)
        assert title == "Approved" and grant.id in message
        await settle(pilot)
        assert screen.query_one("#aq-flight", Table).selected_key == grant.id  # the list moved on to the grant
        assert not screen.query_one("#aq-pending", Table).display
        assert "Pending requests: none" in text_of(screen.query_one("#aq-pending-title"))


async def test_x_rejects_with_a_reason_which_is_required(console_gov, console_url, make_console):
    rid = ask(console_gov)
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_actions(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal) and "Reject restart_service on api" in app.screen.title_text
        await pilot.press("enter")
        await settle(pilot)
        assert "required" in text_of(app.screen.query_one("#dialog-error"))
        assert in_the_file(console_url, rid)[0].status == "pending"
        await pilot.press(*"not during the freeze", "enter")
        await settle(pilot)
        request, grant = in_the_file(console_url, rid)
        assert (request.status, request.decided_by, request.note) == ("rejected", OPERATOR, "not during the freeze")
        assert grant is None
        assert last(app)[0] == "Rejected"
        done = screen.query_one("#aq-done", Table)
        await until(pilot, lambda: done.selected_key == rid, what="the rejected request selected in recent")
        assert "REJECTED" in text_of(screen.query_one("#action-detail"))


async def test_an_operator_without_an_approver_role_is_refused_before_any_dialog(console_gov, console_url,
                                                                                 make_console):
    rid = ask(console_gov)
    app = make_console(console_gov, operator="bob")  # tech-lead only
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_actions(pilot)
        assert "hold none of them" in text_of(screen.query_one("#action-detail"))
        for key in "ax":
            await pilot.press(key)
            await settle(pilot)
            assert not isinstance(app.screen, ConfirmModal), key
            title, message, severity = last(app)
            assert (title, severity) == ("Not allowed", "error")
            assert "on-call" in message and "bob holds tech-lead" in message
            assert "govcon roles grant bob on-call" in message
        assert in_the_file(console_url, rid)[0].status == "pending"


async def test_the_requester_cannot_approve_but_can_reject(console_gov, make_console):
    ask(console_gov, requested_by=OPERATOR)
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_actions(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        title, message, _ = last(app)
        assert title == "Not allowed" and "cannot approve it too" in message
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)


async def test_the_kill_switch_refuses_approval_before_the_dialog(console_gov, console_url, make_console):
    rid = ask(console_gov)
    console_gov.grant_role(OPERATOR, "carol", "on-call")
    console_gov.overrides.engage_kill_switch("carol", "runaway restarts")
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_actions(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        title, message, _ = last(app)
        assert title == "Refused" and "kill switch is engaged (by carol: runaway restarts)" in message
        assert rid in message
        assert in_the_file(console_url, rid)[0].status == "pending"


async def test_a_request_decided_meanwhile_is_refused_naming_who_decided(console_gov, console_url, make_console):
    rid = ask(console_gov)
    console_gov.grant_role(OPERATOR, "carol", "on-call")
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_actions(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        console_gov.actions.reject("carol", rid, "the restart already happened by hand")  # another console
        await pilot.press("enter")
        await settle(pilot)
        title, message, severity = last(app)
        assert (title, severity) == ("Refused", "error")
        assert f"{rid} was rejected already by carol" in message
        request, grant = in_the_file(console_url, rid)
        assert request.status == "rejected" and grant is None


async def test_an_expired_request_leaves_the_pending_list(console_gov, console_clock, make_console):
    rid = ask(console_gov)
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_actions(pilot)
        console_clock.advance(timedelta(minutes=31))
        app.refresh_all()
        await settle(pilot)
        assert not screen.query_one("#aq-pending", Table).display
        assert screen.query_one("#aq-done", Table).selected_key == rid
        assert "EXPIRED" in text_of(screen.query_one("#action-detail"))
        await pilot.press("a")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        title, message, _ = last(app)
        assert title == "Refused" and f"{rid} was expired" in message


async def test_a_and_x_on_a_grant_say_what_they_act_on(console_gov, make_console):
    seed_actions(console_gov)
    app = make_console(console_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_actions(pilot)
        assert screen.query_one("#aq-pending", Table)._keys[0] == REQ_RESTART  # the soonest to expire first
        done = screen.query_one("#aq-done", Table)
        done.focus()
        await settle(pilot)
        done.move_cursor(row=done._keys.index(GRANT_DONE))
        await settle(pilot)
        detail = text_of(screen.query_one("#action-detail"))
        assert "Action report" in detail and "systemctl restart worker" in detail and "2310 ms" in detail
        await pilot.press("a")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmModal)
        assert last(app)[0] == "Nothing selected" and f"{GRANT_DONE} is a grant" in last(app)[1]


async def test_a_on_screen_4_still_approves_proposals(calm_gov, make_console):
    ask(calm_gov)
    app = make_console(calm_gov)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, ProposalsScreen)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal) and PENDING in app.screen.title_text


async def test_8_opens_actions_from_every_screen_and_is_in_the_footer_help_and_palette(console_gov, make_console):
    ask(console_gov)
    app = make_console(console_gov)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key in "1234567":
            await pilot.press(key)
            await settle(pilot)
            await pilot.press("8")
            await settle(pilot)
            assert isinstance(app.screen, ActionQueueScreen), key
        assert "1-8 Screens" in text_of(app.screen.query_one(KeyBar))
        assert "1 to approve" in text_of(app.screen.query_one("StatusHeader"))
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpModal)
        assert "Show the actions screen" in text_of(app.screen.query_one("#dialog Static:last-of-type"))
        await pilot.press("escape")
        palette = [c.title for c in app.get_system_commands(app.screen)]
        assert any(t.startswith("Actions (8)") for t in palette)


async def test_screen_8_lists_agents_and_the_drain_after_the_kill_switch(console_gov, make_console):
    """Issue 14 pt 1: the operator sees the agents (live, lapsed, last beat, in flight) and, after the kill
    switch, whether automation has stopped: grants in flight and agents not yet told."""
    gov = console_gov
    gov.grant_role(OPERATOR, "bot-operator", "agent")
    gov.agents.beat("bot-operator", "rollback-bot", ttl=60, bound_agent="rollback-bot")
    gov.agents.beat("bot-operator", "pool-tuner", ttl=10, bound_agent="pool-tuner")
    gov.clock.advance(timedelta(seconds=30))  # pool-tuner's lease lapses; rollback-bot's holds
    gov.agents.flush()
    gov.overrides.engage(OPERATOR, "INC-9 stop everything")
    app = make_console(gov)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_actions(pilot)
        agents = screen.query_one("#aq-agents", Table)
        assert agents.display and agents.row_count == 2
        title = text_of(screen.query_one("#aq-agents-title"))
        assert "Agents: 2 (1 live, 1 lapsed)" in title
        assert "kill switch engaged, draining" in title and "1 agent(s) not yet told (rollback-bot)" in title
        agents.focus()
        await settle(pilot)
        detail = text_of(screen.query_one("#action-detail"))
        assert "agent " in detail and ("LEASE LIVE" in detail or "LEASE LAPSED" in detail)
        gov.agents.beat("bot-operator", "rollback-bot", ttl=60, bound_agent="rollback-bot")  # told: stopped
        gov.agents.flush()
        screen.reload()
        await settle(pilot)
        assert "automation STOPPED" in text_of(screen.query_one("#aq-agents-title"))


def test_the_header_shows_a_degraded_mode_and_half_open_types():
    from datetime import UTC, datetime

    from screens.data import LiveData
    from screens.header import header_lines
    status = {"currentPhase": "L4", "killSwitch": {"engaged": False, "by": None}, "unresolvedEvents": 0,
              "mode": "read_only", "halfOpen": {"restart_service": 2}, "pendingRequests": 0}
    live = LiveData(status=status, at=datetime(2026, 12, 2, tzinfo=UTC))
    top, _bottom = header_lines(live, operator="alice", screen="1", demo=False, scheduler="")
    assert "MODE READ-ONLY" in top.plain and "HALF-OPEN restart_service (2 left)" in top.plain
    normal = dict(status, mode="normal", halfOpen={})
    top, _ = header_lines(LiveData(status=normal, at=live.at), operator="alice", screen="1", demo=False,
                          scheduler="")
    assert "MODE" not in top.plain and "HALF-OPEN" not in top.plain


async def test_screen_8_shows_an_agent_s_reliability_plot_with_counts(console_gov, make_console):
    """Issue 14 pt 5: the console's reliability plot for the selected agent, from real grants and their
    outcomes: stated against observed in the agent's bin, with its outcome count."""
    from storage import state_repo
    from tests.integration.test_governed_actions import outcome
    gov = console_gov
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["rotate_logs"])
    gov.grant_role(OPERATOR, "bot-operator", "agent")
    gov.agents.beat("bot-operator", "log-bot", ttl=600, bound_agent="log-bot")
    for status in ["succeeded"] * 6 + ["failed", "rolled_back"]:
        d = gov.gate.decide("rotate_logs", confidence=0.92, agent="log-bot")
        assert d.decision == "allow", d.reason
        outcome(gov, d.extra["grantId"], status, type="rotate_logs")
        gov.clock.advance(timedelta(seconds=10))
    gov.agents.flush()
    app = make_console(gov)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_actions(pilot)
        agents = screen.query_one("#aq-agents", Table)
        agents.focus()
        await until(pilot, lambda: "0.9–1.0" in text_of(screen.query_one("#action-detail")),
                    what="the reliability plot")
        detail = text_of(screen.query_one("#action-detail"))
        assert "agent log-bot" in detail and "Calibration (stated vs observed, 8 outcomes" in detail
        lines = detail.splitlines()
        row = next(i for i, line in enumerate(lines) if line.startswith("0.9–1.0"))
        assert lines[row].rstrip().endswith("0.92")  # stated
        assert " 0.75" in lines[row + 1] and "8  too few: stated used" in lines[row + 1]  # observed, count


async def test_the_drain_on_screen_8_counts_down_to_zero_grants_in_flight(console_gov, make_console):
    """Issue 14 "Tests": kill switch drain — the grant in flight finishes, the agent acknowledges at its
    beat, and the console shows zero in flight and automation STOPPED."""
    from storage import state_repo
    from tests.integration.test_governed_actions import outcome
    gov = console_gov
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["rotate_logs"])
    gov.grant_role(OPERATOR, "bot-operator", "agent")
    gov.agents.beat("bot-operator", "log-bot", ttl=600, bound_agent="log-bot")
    d = gov.gate.decide("rotate_logs", confidence=0.95, agent="log-bot")
    assert d.decision == "allow", d.reason
    gov.clock.advance(timedelta(seconds=5))
    gov.overrides.engage(OPERATOR, "INC-10 stop everything")
    app = make_console(gov)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_actions(pilot)
        title = text_of(screen.query_one("#aq-agents-title"))
        assert "draining: 1 grant(s) in flight, 1 agent(s) not yet told (log-bot)" in title
        gov.clock.advance(timedelta(seconds=5))
        outcome(gov, d.extra["grantId"], "succeeded", type="rotate_logs")  # the grant finishes
        screen.reload()
        await until(pilot, lambda: "draining: 0 grant(s) in flight" in text_of(screen.query_one("#aq-agents-title")),
                    what="the finished grant")
        assert "STOPPED" not in text_of(screen.query_one("#aq-agents-title"))  # log-bot has not heard yet
        reply = gov.agents.beat("bot-operator", "log-bot", ttl=600, bound_agent="log-bot")  # it acknowledges
        assert reply["autonomy"] == "suspended"
        gov.agents.flush()
        screen.reload()
        await until(pilot, lambda: "automation STOPPED (no grant in flight; 1 agent(s) told" in
                    text_of(screen.query_one("#aq-agents-title")), what="the drain's end")
