"""The console in client mode (issue 13 pt 1): the real app over a RemoteGovernance talking to a real
`govcon serve --socket` on a copy of the seeded store. The console never opens the store; the service
reads and acts as the OS user the socket names (this test's user). What matters: keys act, refusals are
named, live updates arrive within about a second.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from console.client import RemoteGovernance
from console.identity import current_operator
from engine.governance import Governance
from screens.modals import ConfirmModal
from storage.store import Store
from tests.pilot.conftest import notifications, settle, until
from tests.pilot.seed import OPEN_EVENT, OPERATOR
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.anyio
ME = current_operator()


def live_bound() -> float:
    """A change shows at the next refresh (every 1 s) plus one read: 1.5 s on a quiet machine, scaled by how
    oversubscribed the cores are (CI machines run other sessions' tests beside these)."""
    return 1.5 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


@pytest.fixture
def served(seeded_template, tmp_path):
    """(the remote facade, an embedded facade on the same file for the test's own checks, the service)."""
    db = tmp_path / "governance.db"
    shutil.copyfile(seeded_template, db)
    side = Governance(Store(str(db)))
    side.grant_role(OPERATOR, ME, "tech-lead")  # reads, but neither the kill switch nor resolving
    sock = tmp_path / "govcon.sock"
    serve = ServeProcess(f"sqlite:///{db}", tmp_path, extra_args=("--socket", str(sock))).wait_ready()
    remote = RemoteGovernance(f"unix://{sock}")
    yield remote, side, serve
    remote.close()
    serve.stop()
    side.close()


def engaged_by(gov) -> str | None:
    ks = gov.status(with_readiness=False)["killSwitch"]
    return ks["by"] if ks["engaged"] else None


async def test_keys_act_through_the_service_and_refusals_name_the_role(served, make_console):
    remote, side, _ = served
    app = make_console(remote, operator=ME)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.live is not None and app.live.ok, what="the first read through the socket")
        assert app.sub_title.endswith(remote.url) and "governance.db" not in app.sub_title
        assert app.live.roles == frozenset({"tech-lead"})
        assert app.refresh_seconds == 1.0  # the live reads' cadence: a change elsewhere shows within a second

        await pilot.press("!")
        await settle(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: any("needs one of the roles on-call" in m for _, m, _ in notifications(app)),
                    what="the refusal")
        message = next(m for _, m, _ in notifications(app) if "needs one of the roles on-call" in m)
        assert f"{ME} holds tech-lead" in message
        assert engaged_by(side) is None

        side.grant_role(OPERATOR, ME, "on-call")  # granted elsewhere: the console learns it from the service
        granted = time.monotonic()
        await until(pilot, lambda: "on-call" in app.live.roles, timeout=10, what="the new role")
        seen = time.monotonic() - granted
        assert seen <= live_bound(), f"the console showed a role granted elsewhere after {seen:.2f} s"

        await pilot.press("!")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("enter")
        await until(pilot, lambda: engaged_by(side) == ME, what="the kill switch engaged by the key")
        await until(pilot, lambda: app.live.status["killSwitch"]["engaged"], timeout=10, what="the header")


async def test_resolve_key_and_a_change_made_elsewhere_show_within_a_second(served, make_console):
    remote, side, _ = served
    side.grant_role(OPERATOR, ME, "on-call")
    app = make_console(remote, operator=ME)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.live is not None and app.live.ok, what="the first read through the socket")
        await pilot.press("2")  # breaker events
        await until(pilot, lambda: any(e["id"] == OPEN_EVENT for e in app.live.unresolved), what="the open event")
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press(*"handled over the socket", "enter")
        await until(pilot, lambda: not any(e["id"] == OPEN_EVENT for e in side.breaker_events(unresolved_only=True)),
                    what="the event resolved by the key")
        event = next(e for e in side.breaker_events() if e["id"] == OPEN_EVENT)
        assert (event["resolvedBy"], event["note"]) == (ME, "handled over the socket")

        side.overrides.kill_switch("engage", OPERATOR, "engaged from another host")
        changed = time.monotonic()
        await until(pilot, lambda: app.live.status["killSwitch"]["engaged"], timeout=10, what="the kill switch")
        seen = time.monotonic() - changed
        assert seen <= live_bound(), f"the console showed a change made elsewhere after {seen:.2f} s"
        assert app.live.status["killSwitch"]["by"] == OPERATOR
