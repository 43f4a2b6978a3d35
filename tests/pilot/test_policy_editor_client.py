"""The policy editor in client mode (issue 13 pts 1-2): the console over a RemoteGovernance talking to a real
`govcon serve --socket`, never opening the store. The role check before the dialog, the save and the gate's
answer all go through the service's whitelist (console/rpc_server.py ROUTES: `require`, `policy_book.*`,
`gate.decide`) as the OS user the socket names."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from textual.widgets import Static

from console.client import RemoteGovernance
from console.identity import current_operator
from engine.governance import Governance
from screens.policy_editor import PolicyEditModal
from storage import state_repo
from storage.store import Store
from tests.pilot.conftest import notifications, settle, text_of, until
from tests.pilot.seed import OPERATOR, T0
from tests.pilot.test_policy_editor import policies_view, type_into
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.anyio
ME = current_operator()


@pytest.fixture
def served(seeded_template, tmp_path):
    db = tmp_path / "governance.db"
    shutil.copyfile(seeded_template, db)
    side = Governance(Store(str(db)))
    side.grant_role(OPERATOR, ME, "tech-lead")
    with side.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["purge_cdn"],
                                validation_until=T0 + timedelta(days=9))
    sock = tmp_path / "govcon.sock"
    serve = ServeProcess(f"sqlite:///{db}", tmp_path, extra_args=("--socket", str(sock))).wait_ready()
    remote = RemoteGovernance(f"unix://{sock}")
    yield remote, side
    remote.close()
    serve.stop()
    side.close()


async def test_a_policy_edited_through_the_socket_is_the_one_the_service_gate_decides_by(served, make_console):
    remote, side = served
    assert remote.gate.decide("purge_cdn", confidence=0.9).decision == "allow"
    app = make_console(remote, operator=ME)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.live is not None and app.live.ok, what="the first read through the socket")
        screen = await policies_view(pilot, app)
        await pilot.press("n")  # tech-lead only: the service refuses, naming the roles, and no dialog opens
        await until(pilot, lambda: any("needs one of the roles admin, ops-lead" in m for _, m, _ in notifications(app)),
                    what="the refusal")
        assert f"{ME} holds tech-lead" in notifications(app)[-1][1]
        assert app.screen is screen

        side.grant_role(OPERATOR, ME, "ops-lead")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PolicyEditModal), what="the editor")
        editor = app.screen
        await type_into(pilot, editor, "#pol-name", "cdn")
        await type_into(pilot, editor, "#pol-command-types", "purge_cdn")
        await type_into(pilot, editor, "#pol-confidence-threshold", "0.95")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen, what="the editor to close on save")
        await until(pilot, lambda: screen.query_one("#policies").row_count == 1, what="the policy listed")
        assert "conf≥95%" in text_of(screen.query_one("#policy-detail", Static))

        # the service's gate (and any process on the store) decides by it; the change is the caller's, audited
        decision = remote.gate.decide("purge_cdn", confidence=0.9)
        assert decision.decision == "needs_approval" and "confidence" in decision.reason
        assert side.gate.decide("purge_cdn", confidence=0.9).decision == "needs_approval"
        entry = next(e for e in side.audit_entries(limit=20) if e["action"] == "policy.set")
        assert (entry["actor"], entry["target"], entry["details"]["before"]) == (ME, "cdn", None)

        await pilot.press("d")
        await settle(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: side.policy_book.list() == [], what="the delete through the socket")
        assert remote.gate.decide("purge_cdn", confidence=0.9).decision == "allow"


async def test_a_sink_added_through_the_socket_is_stored_and_never_shown_back(served, make_console):
    from screens.sinks import SinkEditModal, SinksModal
    remote, side = served
    side.grant_role(OPERATOR, ME, "ops-lead")
    secret = "/services/T9/B9/cl13ntS3cr3t"
    app = make_console(remote, operator=ME)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.live is not None and app.live.ok, what="the first read through the socket")
        await policies_view(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SinksModal), what="the sinks list")
        sinks = app.screen
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, SinkEditModal), what="the sink editor")
        editor = app.screen
        await type_into(pilot, editor, "#sink-name", "chat")
        await type_into(pilot, editor, "#sink-url", "https://chat.example.com" + secret)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is sinks, what="the editor to close on save")
        await until(pilot, lambda: sinks.query_one("#sinks").row_count == 1, what="the sink listed")
        shown = app.export_screenshot()
        assert "https://chat.example.com/…" in shown and secret not in shown
    stored = side.sink_book.show("chat")
    assert stored["url"] == "https://chat.example.com/…" and stored["updatedBy"] == ME
    entry = next(e for e in side.audit_entries(limit=20) if e["action"] == "sink.set")
    assert entry["actor"] == ME and secret not in str(entry)
