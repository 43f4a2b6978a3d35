"""`govcon run` never acts on an expired grant (DESIGN.md "Governed actions": budgets count a grant in flight
until its ``expiresAt``): every step under the grant is cut short to be over before the grant expires, no
step starts once too little of it is left, and the rollback alone may still run to undo a change.

Real SQLite stores (and PostgreSQL where configured), real subprocesses. Time: the tests' ManualClock,
moved from the runner's progress lines (the runner reads the store's clock at every checkpoint); the
max_concurrent test uses the real clock, as agents racing for a budget do.
"""

from __future__ import annotations

import shlex
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine import runner as r
from engine.actions import RELEASED
from engine.clock import ManualClock
from engine.governance import Governance
from engine.policies import load_policies
from engine.runner import GovernancePort, Runner, RunPlan
from storage import state_repo
from tests.conftest import OPERATOR
from tests.integration.test_runner import marks  # noqa: F401 (the fixture)

AGENT = "rollback-bot"
TTL = 3  # seconds: the policy's grant_ttl
GRACE = 0.5  # the runner's kill grace in these tests
CAP = TTL - r.GRANT_MARGIN - GRACE  # what a step under a fresh grant may run at most
POLICIES = {"service_restart": {"command_types": ["restart_service"], "grant_ttl": f"{TTL}s", "max_concurrent": 1}}


def _gov(store, clock, *operators: str) -> Governance:
    g = Governance(store, clock, policies=load_policies(POLICIES))
    now = (clock.now() if clock is not None else datetime.now(UTC))
    g.init_store(OPERATOR, phase_started=now - timedelta(days=200), policies=load_policies(POLICIES))
    with g.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    for who in (AGENT, "agent-a", "agent-b", "agent-c", *operators):
        g.grant_role(OPERATOR, who, "on-call")
    return g


@pytest.fixture
def tgov(store, clock, me):
    """The store at L4 with a 3 s grant_ttl and max_concurrent 1, on the tests' ManualClock."""
    g = _gov(store, clock, me)
    yield g
    g.close()


def plan(marks, **kw) -> RunPlan:
    fields = {"command_type": "restart_service", "command": marks.cmd("command"), "service": "api",
              "agent": AGENT, "confidence": 0.95, "wait": 0, "timeout": 10}
    return RunPlan(**{**fields, **kw})


def run(gov, p: RunPlan, *, on_progress=None):
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if on_progress is not None:
            on_progress(line)
    result = Runner(GovernancePort(gov, AGENT), progress=progress, kill_grace=GRACE).run(p)
    result.progress = lines
    return result


def advance_after(clock: ManualClock, prefix: str, seconds: float):
    """A progress hook: once the step whose line starts with ``prefix`` is over, the clock moves on."""
    def hook(line: str) -> None:
        if line.startswith(prefix):
            clock.advance(seconds)
    return hook


def grant(gov, grant_id: str) -> dict:
    return gov.actions.show(grant_id)["grant"]


def outcome_events(gov, grant_id: str) -> list[str]:
    import sqlalchemy as sa

    from storage.tables import command_events as CMD
    with gov.store.read() as conn:
        return [row.status for row in conn.execute(sa.select(CMD.c.status).where(CMD.c.command_id == grant_id))]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state  # a PID 1 that does not reap orphans leaves zombies: a zombie is dead


# --- a step cut short at the grant's expiry ---------------------------------------------------------


def test_a_command_that_outlives_its_grant_is_killed_before_the_grant_expires_and_rolled_back(tgov, marks):
    pidfile = marks.dir / "pid"
    command = ("sh", "-c", f"sleep 30 & echo $! > {shlex.quote(str(pidfile))}; wait; "
                           f"touch {marks.path('finished')}")
    started = time.monotonic()
    result = run(tgov, plan(marks, command=command, timeout=8, verify=marks.cmd("verify"),
                            rollback=marks.cmd("rollback")))
    elapsed = time.monotonic() - started
    assert result.exit_code == r.EXIT_GRANT_EXPIRED == 19, result.message
    assert result.result == "grant_expired"
    assert elapsed < CAP + GRACE + 4, elapsed  # cut at the grant (1.5 s), not at --timeout (8 s)
    assert marks.made() == {"pid", "rollback"}  # never finished, never verified; the rollback undid it
    assert not _alive(int(pidfile.read_text())), "the command's process group outlived the grant"
    command_step = result.report["steps"][0]
    assert command_step["name"] == "command" and command_step["timedOut"] is True
    assert command_step["grantExpired"] is True and command_step["grantCapMs"] == round(CAP * 1000)
    assert [s["name"] for s in result.report["steps"]] == ["command", "rollback"]
    assert "the grant's time ran out during the command" in result.message and "rolled back" in result.message
    g = grant(tgov, result.grant_id)
    assert g["status"] == "rolled_back" and outcome_events(tgov, result.grant_id) == ["rolled_back"]
    stored = g["report"]
    assert stored["grantExpired"] is True and stored["grantExpiresAt"] == g["expiresAt"]
    assert stored["result"] == "grant_expired" and "grant's time ran out" in stored["stoppedBy"]
    assert any("cut short" in line for line in result.progress)  # said up front: --timeout 8s is longer


def test_a_check_still_running_when_the_grant_runs_out_is_killed_and_nothing_else_runs(tgov, marks):
    hang = ("sh", "-c", f"touch {marks.path('check')}; sleep 20")
    result = run(tgov, plan(marks, checks=(hang,), timeout=8, backup=marks.cmd("backup"),
                            rollback=marks.cmd("rollback")))
    assert result.exit_code == r.EXIT_GRANT_EXPIRED, result.message
    assert marks.made() == {"check"}  # no backup, no command, no rollback
    assert "during check 1/1" in result.message and "nothing ran" in result.message
    assert grant(tgov, result.grant_id)["status"] == RELEASED
    assert outcome_events(tgov, result.grant_id) == []


# --- a step not started once the grant has (nearly) run out ----------------------------------------


@pytest.mark.parametrize("later, says", [(TTL + 1, "it expired at"), (TTL - 1.2, "too little to start")])
def test_a_grant_run_out_before_the_command_means_the_command_never_starts_and_the_grant_is_released(
        tgov, clock, marks, later, says):
    result = run(tgov, plan(marks, checks=(marks.cmd("check"),), backup=marks.cmd("backup"),
                            rollback=marks.cmd("rollback")),
                 on_progress=advance_after(clock, "check 1/1:", later))
    assert result.exit_code == r.EXIT_GRANT_EXPIRED == 19, result.message
    assert result.result == "grant_expired"
    assert marks.made() == {"check"}  # neither the backup nor the command (nor a rollback of nothing)
    assert "the grant's time ran out before backup" in result.message and says in result.message
    assert "nothing ran" in result.message
    g = grant(tgov, result.grant_id)
    assert g["status"] == RELEASED and outcome_events(tgov, result.grant_id) == []
    assert g["report"]["outcome"] == "not_run" and g["report"]["grantExpired"] is True


def test_a_grant_expired_before_the_verify_rolls_back_even_though_the_grant_has_expired(tgov, clock, marks):
    """The command ran; its verification cannot finish under the grant: as a verify that hung. The rollback
    still runs past the grant's expiry (it undoes; it is not the budgeted action)."""
    result = run(tgov, plan(marks, verify=marks.cmd("verify"), verify_checks=2, verify_interval=0.05,
                            rollback=marks.cmd("rollback")),
                 on_progress=advance_after(clock, "command:", TTL + 5))
    assert result.exit_code == r.EXIT_GRANT_EXPIRED, result.message
    assert marks.made() == {"command", "rollback"}  # no verify
    assert "the grant's time ran out before verify 1/2" in result.message and "rolled back" in result.message
    g = grant(tgov, result.grant_id)
    assert g["status"] == "rolled_back" and outcome_events(tgov, result.grant_id) == ["rolled_back"]


def test_without_a_rollback_a_verify_that_cannot_finish_under_the_grant_is_reported_failed(tgov, clock, marks):
    result = run(tgov, plan(marks, verify=marks.cmd("verify"), verify_interval=0.05),
                 on_progress=advance_after(clock, "command:", TTL))
    assert result.exit_code == r.EXIT_GRANT_EXPIRED, result.message
    assert marks.made() == {"command"}
    assert "no --rollback given" in result.message
    assert grant(tgov, result.grant_id)["status"] == "failed"


def test_a_run_well_inside_its_grant_is_not_affected(tgov, marks):
    result = run(tgov, plan(marks, verify=marks.cmd("verify"), verify_checks=2, verify_interval=0.05))
    assert result.exit_code == r.EXIT_SUCCEEDED, result.message
    assert marks.made() == {"command", "verify"}
    assert all("grantExpired" not in s for s in result.report["steps"])
    assert result.report["grantExpired"] is False


# --- the budget: max_concurrent 1 holds while the first agent's command is in flight ---------------


def test_max_concurrent_holds_a_second_agent_never_acts_while_the_first_still_runs(store, marks):
    """The reviewer's repro, scaled down, on the real clock: A's command would run 30 s under a 3 s grant.
    B is refused while A's grant is in flight; once it has expired, C is allowed -- and by then A's command
    has been killed (before the grant expired), so A and C never run at once."""
    gov = _gov(store, None)
    a: threading.Thread | None = None
    try:
        pidfile = marks.dir / "a.pid"
        a_command = ("sh", "-c", f"sleep 30 & echo $! > {shlex.quote(str(pidfile))}; wait; "
                                 f"touch {marks.path('a-finished')}")
        a_result: dict = {}

        def agent_a() -> None:
            res = Runner(GovernancePort(gov, "agent-a"), kill_grace=GRACE).run(
                plan(marks, agent="agent-a", command=a_command, timeout=8))
            a_result["result"], a_result["ended"] = res, datetime.now(UTC)
        a = threading.Thread(target=agent_a, daemon=True)
        a.start()
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        a_pid = int(pidfile.read_text())
        in_flight = gov.actions.list(in_flight=True)["grants"]
        assert [g["agent"] for g in in_flight] == ["agent-a"]
        expires = datetime.fromisoformat(in_flight[0]["expiresAt"])

        b = Runner(GovernancePort(gov, "agent-b"), kill_grace=GRACE).run(plan(marks, agent="agent-b", command=marks.cmd("b")))
        assert b.exit_code in (r.EXIT_DENIED, r.EXIT_NEEDS_APPROVAL), b.message  # max_concurrent 1

        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)  # A's grant has lapsed
        assert not a.is_alive(), "agent A's run is still going after its grant expired"
        assert not _alive(a_pid), "agent A's command is still running after its grant expired"
        assert a_result["ended"] < expires
        assert a_result["result"].exit_code == r.EXIT_GRANT_EXPIRED and "a-finished" not in marks.made()

        c = Runner(GovernancePort(gov, "agent-c"), kill_grace=GRACE).run(plan(marks, agent="agent-c", command=marks.cmd("c")))
        assert c.exit_code == r.EXIT_SUCCEEDED, c.message
        assert marks.made() >= {"c"} and "b" not in marks.made()
    finally:
        if a is not None:
            a.join(15)
        gov.close()


# --- the CLI ------------------------------------------------------------------------------------------


def test_cli_says_the_grants_time_ran_out_and_exits_19(tgov, cli, marks):
    """The CLI's own kill grace (2 s) and margin (1 s) leave nothing of a 3 s grant: the command never starts."""
    res = cli("run", "restart_service", "--agent", AGENT, "--wait", "0", "--", *marks.cmd("command"))
    assert res.code == r.EXIT_GRANT_EXPIRED, res.out + res.err
    assert res.out.startswith("grant_expired: the grant's time ran out before command")
    assert "nothing ran" in res.out and "outcome not_run" in res.out
    assert marks.made() == set()
    assert grant(tgov, res.out.split("grant ", 2)[-1].split(":")[0])["status"] == RELEASED
