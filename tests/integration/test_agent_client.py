"""The agent client (console/agent_client.py) against a real `govcon serve` on 127.0.0.1, both stores."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from console.agent_client import (
    ActionDenied,
    ActionRejected,
    ApprovalNeeded,
    GovconClient,
    GovconClientError,
    OutcomeNotReported,
    ServerError,
)
from engine.clock import ManualClock
from engine.governance import Governance
from engine.tokens import TokenBook
from storage import state_repo
from storage.store import Store
from tests.serve_process import ROOT, ServeProcess

ADMIN, AGENT, APPROVER = "alice", "rollback-bot", "olivia"
CONFIG = """
[policies.service_restart]
command_types = ["restart_service"]
"""


@pytest.fixture
def served(store_url, tmp_path):
    """A store at L4 (restart_service whitelisted) served by a real `govcon serve`; tokens for the agent
    (on-call: it may report) and an approver (ops-lead)."""
    store = Store(store_url)
    clock = ManualClock(datetime.now(UTC))  # the server runs on the system clock
    gov = Governance(store, clock)
    gov.init_store(ADMIN, phase_started=clock.now() - timedelta(days=200))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    gov.grant_role(ADMIN, AGENT, "on-call")
    gov.grant_role(ADMIN, APPROVER, "ops-lead")
    book = TokenBook(store, clock)
    tokens = {who: book.create(ADMIN, who).secret for who in (AGENT, APPROVER)}
    workdir = tmp_path / "serve"
    workdir.mkdir()
    server = ServeProcess(store_url, workdir, config=CONFIG).wait_ready()
    try:
        yield server, gov, tokens
    finally:
        server.stop()
        gov.close()


@pytest.fixture
def client(served):
    server, _gov, tokens = served
    with GovconClient(server.base, token=tokens[AGENT], agent=AGENT) as c:
        yield c


def grant(served, grant_id: str) -> dict:
    server, _gov, tokens = served
    return httpx.get(f"{server.base}/api/actions/{grant_id}", timeout=5).json()["grant"]


def set_phase(gov, phase: str, whitelist: list[str]) -> None:
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase=phase, command_whitelist=whitelist)


def test_allowed_action_reports_succeeded_against_its_grant(served, client):
    ran = []
    with client.action("restart_service", service="api", confidence=0.93) as act:
        assert act.grant_id and act.grant_id.startswith("gr-")
        ran.append(act.grant_id)
    assert act.outcome == "succeeded"
    g = grant(served, ran[0])
    assert g["status"] == "succeeded" and g["agent"] == AGENT and g["service"] == "api" and g["confidence"] == 0.93


def test_an_exception_reports_failed_and_is_re_raised(served, client):
    with pytest.raises(RuntimeError, match="restart timed out"):
        with client.action("restart_service", service="api") as act:
            raise RuntimeError("restart timed out")
    assert act.outcome == "failed" and grant(served, act.grant_id)["status"] == "failed"


def test_rolled_back_is_reported_as_rolled_back(served, client):
    with client.action("restart_service") as act:
        act.rolled_back()
    assert grant(served, act.grant_id)["status"] == "rolled_back"


def test_a_second_contradicting_outcome_is_refused(served, client):
    with client.action("restart_service") as act:
        pass
    with pytest.raises(OutcomeNotReported, match="the first outcome stands"):
        client.report(act.grant_id, "restart_service", "failed")
    assert grant(served, act.grant_id)["status"] == "succeeded"


def test_deny_raises_and_the_block_never_runs(served, client):
    _server, gov, _tokens = served
    gov.overrides.engage_kill_switch(APPROVER, "INC-7")
    ran = []
    with pytest.raises(ActionDenied, match="kill switch") as refused:
        with client.action("restart_service"):
            ran.append(True)
    assert ran == [] and refused.value.decision["decision"] == "deny"


def test_needs_approval_waits_for_a_human_and_then_acts(served, client):
    server, gov, tokens = served
    set_phase(gov, "L3", [])

    def approve() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pending = httpx.get(f"{server.base}/api/actions", params={"status": "pending"}, timeout=5).json()
            if pending["requests"]:
                rid = pending["requests"][0]["requestId"]
                answer = httpx.post(f"{server.base}/api/actions/{rid}/approve", json={"note": "checked the graphs"},
                                    headers={"Authorization": f"Bearer {tokens[APPROVER]}"}, timeout=5)
                assert answer.status_code == 200, answer.text
                return
            time.sleep(0.1)

    approver = threading.Thread(target=approve, daemon=True)
    approver.start()
    with client.action("restart_service", service="api", wait=20) as act:
        assert act.request["status"] == "approved" and act.request["decidedBy"] == APPROVER
    approver.join(5)
    g = grant(served, act.grant_id)
    assert g["approvedBy"] == APPROVER and g["status"] == "succeeded"


def test_a_rejected_request_raises_with_the_reason(served, client):
    server, gov, tokens = served
    set_phase(gov, "L3", [])

    def reject() -> None:
        for _ in range(150):
            pending = httpx.get(f"{server.base}/api/actions", params={"status": "pending"}, timeout=5).json()
            if pending["requests"]:
                httpx.post(f"{server.base}/api/actions/{pending['requests'][0]['requestId']}/reject",
                           json={"reason": "not during the launch"},
                           headers={"Authorization": f"Bearer {tokens[APPROVER]}"}, timeout=5)
                return
            time.sleep(0.1)

    threading.Thread(target=reject, daemon=True).start()
    with pytest.raises(ActionRejected, match="not during the launch") as refused:
        with client.action("restart_service", wait=20):
            pytest.fail("a rejected action ran")
    assert refused.value.request["decidedBy"] == APPROVER


def test_undecided_and_wait_zero_raise_approval_needed(served, client):
    server, gov, _tokens = served
    set_phase(gov, "L3", [])
    started = time.monotonic()
    with pytest.raises(ApprovalNeeded, match="still undecided"):
        with client.action("restart_service", wait=0.5):
            pytest.fail("ran without approval")
    assert time.monotonic() - started < 10
    with pytest.raises(ApprovalNeeded, match="no request queued"):
        with client.action("restart_service", wait=0):
            pytest.fail("ran without approval")
    pending = httpx.get(f"{server.base}/api/actions", params={"status": "pending"}, timeout=5).json()["requests"]
    assert len(pending) == 1  # only the first queued one


def test_without_a_token_nothing_is_asked(served, monkeypatch):
    server, gov, _tokens = served
    monkeypatch.delenv("GOVCON_TOKEN", raising=False)
    with GovconClient(server.base, agent=AGENT) as bare:
        with pytest.raises(GovconClientError, match="GOVCON_TOKEN"):
            with bare.action("restart_service"):
                pytest.fail("ran without a token")
    assert httpx.get(f"{server.base}/api/actions", timeout=5).json()["grants"] == []


def test_the_token_comes_from_the_environment_and_never_shows_in_repr(served, monkeypatch):
    server, _gov, tokens = served
    monkeypatch.setenv("GOVCON_TOKEN", tokens[AGENT])
    with GovconClient(server.base, agent=AGENT) as env_client:
        assert tokens[AGENT] not in repr(env_client)
        with env_client.action("restart_service") as act:
            pass
    assert act.outcome == "succeeded"


def test_kill_switch_between_steps_stops_the_block_and_reports_failed(served, client):
    _server, gov, _tokens = served
    with pytest.raises(ActionDenied, match="INC-9"):
        with client.action("restart_service") as act:
            act.check_kill_switch()  # not engaged: carries on
            gov.overrides.engage_kill_switch(APPROVER, "INC-9")  # in another process's store: the server's
            deadline = time.monotonic() + 15  # state document is fresh to within a second (a loaded machine: more)
            while time.monotonic() < deadline:
                act.check_kill_switch()
                time.sleep(0.1)
            pytest.fail("went on past the kill switch")
    assert grant(served, act.grant_id)["status"] == "failed"


def test_kill_switch_engaged_through_the_api_is_seen_at_once(served, client):
    server, _gov, tokens = served
    with client.action("restart_service") as act:
        engaged = httpx.post(f"{server.base}/api/kill-switch", json={"action": "engage", "reason": "INC-11"},
                             headers={"Authorization": f"Bearer {tokens[APPROVER]}"}, timeout=5)
        assert engaged.status_code == 200, engaged.text
        with pytest.raises(ActionDenied, match="INC-11"):  # a change through the server clears its read cache
            act.check_kill_switch()
        act.rolled_back()
    assert grant(served, act.grant_id)["status"] == "rolled_back"


def test_heartbeat_renews_the_lease_and_carries_the_stop(served, client):
    _server, gov, _tokens = served
    gov.grant_role(ADMIN, AGENT, "agent")  # heartbeats need the agent role
    beat = client.heartbeat(ttl=30)
    assert (beat["agent"], beat["autonomy"], beat["mode"], beat["registered"]) == (AGENT, "granted", "normal", True)
    assert beat["killSwitch"]["engaged"] is False and beat["leaseExpiresAt"] > beat["beatAt"]
    gov.overrides.engage_kill_switch(APPROVER, "INC-12")
    beat = client.heartbeat()
    assert beat["autonomy"] == "suspended" and "INC-12" in beat["reason"] and beat["killSwitch"]["engaged"]
    with pytest.raises(ServerError) as refused:  # the token is the agent's: it cannot beat for another
        client.heartbeat("other-bot")
    assert refused.value.status == 403


def test_an_action_with_heartbeat_beats_in_the_background_and_learns_of_a_stop(served, client):
    server, gov, tokens = served
    gov.grant_role(ADMIN, AGENT, "agent")
    with pytest.raises(ActionDenied, match="INC-13"):
        with client.action("restart_service", heartbeat=0.2) as act:
            assert act.last_beat["autonomy"] == "granted"  # beaten before asking
            first = act.last_beat["beats"]
            gov.overrides.engage_kill_switch(APPROVER, "INC-13")
            # engaged by another process (this one, straight into the store): a reply may be answered from
            # a state up to STATE_SECONDS old (engine/agents.py), so the stop arrives within a beat or a few
            deadline = time.monotonic() + 30  # bounds a failure only: a loaded machine beats later
            while ((act.last_beat["beats"] == first or act.last_beat["autonomy"] != "suspended")
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            assert act.last_beat["autonomy"] == "suspended"
            act.check_kill_switch()
    assert grant(served, act.grant_id)["status"] == "failed"
    shown = httpx.get(f"{server.base}/api/agents/{AGENT}", timeout=5).json()
    assert shown["beats"] >= 2 and shown["live"]


def test_an_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with GovconClient(f"http://127.0.0.1:{port}", token="gvc_x", timeout=2) as c:
        with pytest.raises(ServerError, match=f"cannot reach govcon at http://127.0.0.1:{port}"):
            with c.action("restart_service"):
                pytest.fail("ran without a server")


@pytest.mark.parametrize("restart_fixes_it", [True, False])
def test_the_documented_example_agent_against_a_real_server(served, tmp_path, restart_fixes_it):
    server, _gov, tokens = served
    up, rolled = tmp_path / "service-up", tmp_path / "rolled-back"
    env = dict(os.environ, PYTHONPATH=str(ROOT), GOVCON_URL=server.base, GOVCON_TOKEN=tokens[AGENT], SERVICE="api",
               HEALTH_CMD=f"test -e {up}", RESTART_CMD=f"touch {up}" if restart_fixes_it else "true",
               ROLLBACK_CMD=f"touch {rolled}", VERIFY_INTERVAL="0.1", APPROVAL_WAIT="5")
    done = subprocess.run([sys.executable, str(ROOT / "docs/examples/restart_agent.py")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == (0 if restart_fixes_it else 12), done.stderr
    assert rolled.exists() is not restart_fixes_it
    grants = httpx.get(f"{server.base}/api/actions", timeout=5).json()["grants"]
    assert [(g["agent"], g["service"], g["status"]) for g in grants] == [
        ("restart-bot", "api", "succeeded" if restart_fixes_it else "rolled_back")]
    # healthy now: a second run does nothing and asks for nothing
    if restart_fixes_it:
        again = subprocess.run([sys.executable, str(ROOT / "docs/examples/restart_agent.py")], env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "nothing to do" in again.stderr
        assert len(httpx.get(f"{server.base}/api/actions", timeout=5).json()["grants"]) == 1
