"""A client of a service that is stopped or hung (issue 14 "degradation"; the kill switch "works even when…").

A stopped `govcon serve` (SIGSTOP: what a deadlock, a swap storm or a debugger looks like from outside) still
accepts connections: the kernel queues them. Before the client's deadline (console/client.py
``SERVICE_TIMEOUT_ENV``) an agent's `govcon gate` and an incident commander's `govcon kill-switch engage`
waited forever on such a service. Now, against a real service stopped with SIGSTOP:

- `govcon gate` answers deny (exit 4) within the deadline, on the lean path and through the full CLI, over the
  socket and over HTTP; any other command fails with a message naming the deadline (exit 1);
- `govcon kill-switch engage` engages by the service's marker file when the client's config names it
  (``kill_switch_marker``), and fails plainly, creating nothing, when it does not;
- once the service runs again, its gate denies by that marker, `status` shows the switch engaged, and a
  release through the service clears it;
- a connection whose call ran out is closed, not reused: a late answer is never read as the next call's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.client import connect
from engine.gate import ALLOW, DENY
from storage import state_repo
from storage.store import Store
from tests.serve_process import ROOT, ServeProcess

FULL_CLI = "import sys; from console.cli import main; sys.exit(main())"
DEADLINE_S = 1.0
#: a command's own start-up on a loaded 2-core machine, on top of the deadline (the old code never returned)
SLACK_S = 15.0


@pytest.fixture
def service(tmp_path):
    db = tmp_path / "governance.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVCON_")}
    env.update(GOVCON_DATABASE_URL=str(db), GOVCON_CONFIG=str(tmp_path / "absent.toml"), TZ="UTC", LC_ALL="C.UTF-8")
    subprocess.run([sys.executable, "-m", "console", "db", "init"], cwd=ROOT, env=env, check=True, capture_output=True)
    store = Store(str(db))
    with store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])
    store.dispose()
    sock = tmp_path / "govcon.sock"
    serve = ServeProcess(str(db), tmp_path, extra_args=("--socket", str(sock))).wait_ready()
    client = {k: v for k, v in env.items() if not k.startswith("GOVCON_")}
    client.update(GOVCON_SERVER=f"unix://{sock}", GOVCON_CONFIG=str(tmp_path / "absent.toml"),
                  GOVCON_DATABASE_URL=str(tmp_path / "no-such-dir" / "never.db"),
                  GOVCON_SERVICE_TIMEOUT=str(DEADLINE_S))
    marker = Path(f"{db}.kill-switch")  # where the service looks (engine/kill_marker.py, beside a SQLite store)
    try:
        yield serve, client, marker
    finally:
        if serve.proc.poll() is None:
            os.kill(serve.proc.pid, signal.SIGCONT)
        assert serve.stop() == 0


def stop(pid: int) -> None:
    """SIGSTOP, then wait until every thread of the process is stopped (the signal is asynchronous: a thread
    already running could still answer one more call)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = [Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0]
                  for t in os.listdir(f"/proc/{pid}/task")]
        if all(state in "tT" for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop: {states}")


def run(args: list[str], env: dict[str, str], *, full: bool = False) -> tuple[subprocess.CompletedProcess, float]:
    command = [sys.executable, "-c", FULL_CLI, *args] if full else [sys.executable, "-m", "console", *args]
    started = time.monotonic()
    res = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return res, time.monotonic() - started


def test_a_stopped_service_gets_denials_and_errors_within_the_deadline_and_the_kill_switch_still_engages(service):
    serve, client, marker = service
    res, _ = run(["gate", "restart_service"], client)
    assert res.returncode == 0, res.stdout + res.stderr  # the running service allows
    token, _ = run(["tokens", "create", "root"], client)
    assert token.returncode == 0, token.stderr
    over_http = {**client, "GOVCON_SERVER": serve.base, "GOVCON_TOKEN": token.stdout.strip()}

    stop(serve.proc.pid)
    for env, full in ((client, False), (client, True), (over_http, True)):
        res, took = run(["gate", "restart_service"], env, full=full)
        assert res.returncode == 4, res.stdout + res.stderr
        assert res.stdout.startswith("deny: ") and f"did not answer within {DEADLINE_S:g} s" in res.stdout
        assert took < DEADLINE_S + SLACK_S
    res, took = run(["status"], client)
    assert res.returncode == 1 and f"did not answer within {DEADLINE_S:g} s" in res.stderr and took < DEADLINE_S + SLACK_S

    res, _ = run(["kill-switch", "engage", "--reason", "service hung, INC-77"], client)
    assert res.returncode == 1 and "the kill switch is NOT engaged" in res.stderr and "kill_switch_marker" in res.stderr
    assert not marker.exists()  # no marker the service does not read, and none here: nothing was configured
    with_marker = {**client, "GOVCON_KILL_SWITCH_MARKER": str(marker)}
    res, took = run(["kill-switch", "engage", "--reason", "service hung, INC-77"], with_marker)
    assert res.returncode == 0, res.stderr
    assert f"engaged by marker file {marker} only" in res.stdout and took < DEADLINE_S + SLACK_S
    assert json.loads(marker.read_text())["reason"] == "service hung, INC-77"
    res, _ = run(["kill-switch", "engage", "--reason", "again"], with_marker)
    assert res.returncode == 0 and "engaged already by marker file" in res.stdout

    os.kill(serve.proc.pid, signal.SIGCONT)
    res, _ = run(["gate", "restart_service"], client)
    assert res.returncode == 4 and "kill switch engaged by root (marker file" in res.stdout, res.stdout
    res, _ = run(["status", "--json"], client)
    state = json.loads(res.stdout)["killSwitch"]
    assert state["engaged"] and state["marker"]["path"] == str(marker)
    assert run(["roles", "grant", "root", "ops-lead"], client)[0].returncode == 0  # root is admin only
    res, _ = run(["kill-switch", "release", "--reason", "service back"], client)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    res, _ = run(["gate", "restart_service"], client)
    assert res.returncode == 0, res.stdout


def test_a_client_never_guesses_a_marker_from_its_own_store_url(service, tmp_path):
    """With the client's deadline longer than the embedded engage's wait for a store (5 s), the engage took the
    embedded path's fallback after 5 s and made a marker beside the client's own GOVCON_DATABASE_URL, which
    no gate reads, and said ENGAGED."""
    serve, client, marker = service
    own = tmp_path / "client-side.db"
    env = {**client, "GOVCON_SERVICE_TIMEOUT": "7", "GOVCON_DATABASE_URL": str(own)}
    stop(serve.proc.pid)
    res, took = run(["kill-switch", "engage", "--reason", "INC-78"], env)
    assert res.returncode == 1 and "the kill switch is NOT engaged" in res.stderr, res.stdout + res.stderr
    assert "did not answer within 7 s" in res.stderr and took < 7 + SLACK_S
    assert not Path(f"{own}.kill-switch").exists() and not marker.exists()


def test_a_call_that_ran_out_closes_its_connection_and_the_next_call_gets_its_own_answer(service, monkeypatch):
    serve, client, _ = service
    monkeypatch.setenv("GOVCON_TOKEN", "")
    gov, operator = connect(client["GOVCON_SERVER"])
    try:
        gov.timeout = DEADLINE_S
        assert gov.gate.decide("restart_service").decision == ALLOW
        stop(serve.proc.pid)
        try:
            started = time.monotonic()
            late = gov.gate.decide("restart_service")
            assert late.decision == DENY and "did not answer within" in late.reason
            assert time.monotonic() - started < DEADLINE_S + 5
        finally:
            os.kill(serve.proc.pid, signal.SIGCONT)
        status = gov.status()  # on the pooled connection the late gate answer would be read here
        assert isinstance(status, dict) and "killSwitch" in status, status
        again = gov.gate.decide("restart_service")
        assert again.decision == ALLOW and again.grant_id and again.grant_id != late.grant_id
    finally:
        gov.close()
    assert operator


def test_a_call_after_the_service_restarted_opens_a_fresh_connection(service, tmp_path):
    """Every pooled connection died with the service (a restart; or closed as idle, console/rpc_server.py):
    the retry took the next pooled one, dead too, and the call failed ('dropped the call'). The retry now
    opens a new connection."""
    serve, client, _ = service
    gov, _operator = connect(client["GOVCON_SERVER"])
    try:
        transport = gov.transport
        transport._idle.extend(transport._connect() for _ in range(3))  # a console's pool after a busy moment
        assert serve.stop() == 0
        sock = client["GOVCON_SERVER"].removeprefix("unix://")
        (tmp_path / "again").mkdir()
        restarted = ServeProcess(str(tmp_path / "governance.db"), tmp_path / "again",
                                 extra_args=("--socket", sock))
        try:
            restarted.wait_ready()
            assert isinstance(gov.status(), dict)
        finally:
            assert restarted.stop() == 0
    finally:
        gov.close()
