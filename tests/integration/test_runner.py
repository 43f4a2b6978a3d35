"""`govcon run`, the governed runner: real subprocesses on both stores, real HTTP sinks, the real CLI.

Every step that must not run is given a command that would leave a marker file, so "nothing ran" is
proved by the marker's absence, not assumed.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import runner as r
from engine.actions import RELEASED
from engine.alerts import load_sinks
from engine.governance import Governance
from engine.policies import load_policies
from engine.runner import GovernancePort, Runner, RunPlan
from storage import state_repo
from tests.conftest import OPERATOR
from tests.integration.test_alerts import SinkServer

REPO = Path(__file__).resolve().parents[2]
AGENT = "rollback-bot"
APPROVER = "olivia"
POLICIES = {
    "service_restart": {"command_types": ["restart_service"]},
    "deploys": {"command_types": ["code_deployment"], "rollback_mandatory": True},
}


def prepare(gov: Governance, *operators: str) -> Governance:
    """Phase L4 with the types whitelisted; the runners may report outcomes; an approver who is not them."""
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service", "code_deployment"])
    for who in (AGENT, *operators):
        gov.grant_role(OPERATOR, who, "on-call")
    gov.grant_role(OPERATOR, APPROVER, "ops-lead")
    return gov


@pytest.fixture
def rgov(store, clock, me):
    """The store at L4; the agent and the CLI's operator (the OS user) may report outcomes."""
    g = Governance(store, clock, policies=load_policies(POLICIES))
    g.init_store(OPERATOR, phase_started=clock.now(), policies=load_policies(POLICIES))  # the CLI reads the store's
    prepare(g, me)
    yield g
    g.close()


@pytest.fixture
def marks(tmp_path):
    """``marks.cmd("name")`` is argv that creates marker ``name``; ``marks.made()`` the ones that exist."""
    class Marks:
        dir = tmp_path / "marks"

        def cmd(self, name: str, exit_code: int = 0) -> tuple[str, ...]:
            return ("sh", "-c", f"touch {shlex.quote(str(self.dir / name))}; exit {exit_code}")

        def path(self, name: str) -> str:
            return shlex.quote(str(self.dir / name))

        def made(self) -> set[str]:
            return {p.name for p in self.dir.iterdir()}
    Marks.dir.mkdir()
    return Marks()


def run(gov, plan: RunPlan, *, actor: str = AGENT, **kw):
    lines: list[str] = []
    result = Runner(GovernancePort(gov, actor), progress=lines.append, kill_grace=0.5, **kw).run(plan)
    result.progress = lines
    return result


def plan(marks, **kw) -> RunPlan:
    fields = {"command_type": "restart_service", "command": marks.cmd("command"), "service": "api",
              "agent": AGENT, "confidence": 0.95, "wait": 0, "timeout": 20}
    return RunPlan(**{**fields, **kw})


def grant(gov, grant_id: str) -> dict:
    return gov.actions.show(grant_id)["grant"]


def outcome_events(gov, grant_id: str) -> list[str]:
    import sqlalchemy as sa

    from storage.tables import command_events as CMD
    with gov.store.read() as conn:
        return [row.status for row in conn.execute(sa.select(CMD.c.status).where(CMD.c.command_id == grant_id))]


def step_names(result) -> list[str]:
    return [s["name"] for s in result.report["steps"]]


# --- the order of the steps and what each failure leaves undone ------------------------------------


def test_success_runs_every_step_in_order_and_reports_succeeded(rgov, marks):
    p = plan(marks, checks=(marks.cmd("check1"), marks.cmd("check2")), backup=marks.cmd("backup"),
             verify=("sh", "-c", "echo verified; test -e " + shlex.quote(str(marks.dir / "command"))),
             verify_checks=3, verify_interval=0.05, rollback=marks.cmd("rollback"))
    result = run(rgov, p)
    assert result.exit_code == r.EXIT_SUCCEEDED, result.message
    assert marks.made() == {"check1", "check2", "backup", "command"}  # no rollback
    assert step_names(result) == ["check", "check", "backup", "command", "verify", "verify", "verify"]
    assert [s["exitCode"] for s in result.report["steps"]] == [0] * 7
    g = grant(rgov, result.grant_id)
    assert g["status"] == "succeeded" and g["agent"] == AGENT and g["service"] == "api"
    assert outcome_events(rgov, result.grant_id) == ["succeeded"]
    stored = g["report"]
    assert stored["outcome"] == "succeeded" and stored["exitCode"] == 0 and stored["grantId"] == result.grant_id
    assert stored["steps"][-1]["outputTail"] == "verified\n" and stored["steps"][-1]["n"] == 3
    assert all(isinstance(s["durationMs"], int) for s in stored["steps"])


def test_a_failed_check_runs_nothing_and_releases_the_grant(rgov, marks):
    p = plan(marks, checks=(marks.cmd("check1"), marks.cmd("check2", exit_code=7), marks.cmd("check3")),
             backup=marks.cmd("backup"), verify=marks.cmd("verify"), rollback=marks.cmd("rollback"))
    result = run(rgov, p)
    assert result.exit_code == r.EXIT_CHECK_FAILED == 10
    assert marks.made() == {"check1", "check2"}
    assert step_names(result) == ["check", "check"] and result.report["steps"][1]["exitCode"] == 7
    g = grant(rgov, result.grant_id)
    assert g["status"] == RELEASED and g["report"]["outcome"] == "not_run"
    assert outcome_events(rgov, result.grant_id) == []  # a safety net that worked is no failed command
    assert rgov.status(with_readiness=False)["grantsInFlight"] == 0


def test_a_failed_backup_means_the_command_never_runs(rgov, marks):
    p = plan(marks, checks=(marks.cmd("check"),), backup=marks.cmd("backup", exit_code=1),
             verify=marks.cmd("verify"), rollback=marks.cmd("rollback"))
    result = run(rgov, p)
    assert result.exit_code == r.EXIT_BACKUP_FAILED == 11
    assert marks.made() == {"check", "backup"}
    assert grant(rgov, result.grant_id)["status"] == RELEASED


def test_a_failed_command_is_rolled_back_and_reported_rolled_back(rgov, marks):
    p = plan(marks, command=marks.cmd("command", exit_code=3), verify=marks.cmd("verify"),
             rollback=marks.cmd("rollback"))
    result = run(rgov, p)
    assert result.exit_code == r.EXIT_COMMAND_ROLLED_BACK == 12
    assert marks.made() == {"command", "rollback"}  # no verify of a failed command
    assert step_names(result) == ["command", "rollback"]
    assert grant(rgov, result.grant_id)["status"] == "rolled_back"
    assert outcome_events(rgov, result.grant_id) == ["rolled_back"]


def test_a_failed_command_without_rollback_is_reported_failed(rgov, marks):
    result = run(rgov, plan(marks, command=("false",)))
    assert result.exit_code == r.EXIT_COMMAND_FAILED == 17
    assert grant(rgov, result.grant_id)["status"] == "failed"


def test_verify_must_pass_n_times_in_a_row_else_rollback(rgov, marks, tmp_path):
    counter = tmp_path / "verifies"
    verify = ("sh", "-c", f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; '
                          f'echo "verify $n"; [ $n -lt 2 ]')
    result = run(rgov, plan(marks, verify=verify, verify_checks=3, verify_interval=0.05,
                            rollback=marks.cmd("rollback")))
    assert result.exit_code == r.EXIT_VERIFY_ROLLED_BACK == 13
    assert counter.read_text().strip() == "2"  # the third verify never ran
    assert step_names(result) == ["command", "verify", "verify", "rollback"]
    assert [s["exitCode"] for s in result.report["steps"]] == [0, 0, 1, 0]
    assert marks.made() == {"command", "rollback"}
    assert grant(rgov, result.grant_id)["status"] == "rolled_back"


def test_a_hanging_verify_is_bounded_by_its_interval_and_counts_as_failed(rgov, marks):
    started = time.monotonic()
    result = run(rgov, plan(marks, verify=("sleep", "30"), verify_interval=0.5))
    assert time.monotonic() - started < 10
    assert result.exit_code == r.EXIT_VERIFY_FAILED == 18
    verify = result.report["steps"][-1]
    assert verify["name"] == "verify" and verify["timedOut"] is True and verify["durationMs"] < 5000
    assert grant(rgov, result.grant_id)["status"] == "failed"


def test_a_command_past_its_timeout_is_killed_with_its_process_group(rgov, marks, tmp_path):
    pidfile = tmp_path / "child.pid"
    command = ("sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait")
    started = time.monotonic()
    result = run(rgov, plan(marks, command=command, timeout=0.5, rollback=marks.cmd("rollback")))
    assert time.monotonic() - started < 10
    assert result.exit_code == r.EXIT_TIMEOUT == 15
    assert result.report["steps"][0]["timedOut"] is True
    assert marks.made() == {"rollback"}
    assert grant(rgov, result.grant_id)["status"] == "rolled_back"
    assert not _alive(int(pidfile.read_text())), "the command's background child outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state  # this machine's PID 1 does not reap orphans: a zombie is dead


# --- a failed rollback escalates to a person ------------------------------------------------------------


def test_a_failed_rollback_escalates_with_a_critical_alert_at_a_real_sink(store, clock, marks):
    sink = SinkServer()
    try:
        gov = Governance(store, clock, policies=load_policies(POLICIES), sinks=load_sinks(
            {"sinks": [{"name": "oncall-hook", "type": "webhook", "url": sink.url, "timeout": 2.0}]}))
        gov.init_store(OPERATOR, phase_started=clock.now())
        prepare(gov)
        result = run(gov, plan(marks, command=marks.cmd("command", exit_code=1),
                               rollback=("sh", "-c", "echo 'rollback: disk full' >&2; exit 9")))
        assert result.exit_code == r.EXIT_ROLLBACK_FAILED == 14
        assert result.report["escalated"] is True
        assert grant(gov, result.grant_id)["status"] == "failed"
        assert sink.arrived.wait(5), "the escalation never reached the sink"
        [body] = sink.delivered()
        assert body["severity"] == "critical" and body["kind"] == "trigger"
        assert "ROLLBACK FAILED" in body["title"] and result.grant_id in body["title"] and AGENT in body["title"]
        assert "exit 9" in body["body"] and "rollback: disk full" in body["body"]
        assert body["dedup_key"] == f"govcon-rollback-failed-{result.grant_id}"
        audit = [e for e in gov.audit_entries(limit=20) if e["action"] == "action.escalate"]
        assert [e["target"] for e in audit] == [result.grant_id]
        gov.close()
    finally:
        sink.stop()


# --- the kill switch and the store, between steps ---------------------------------------------------


def _engage_from_another_process(store_url: str, reason: str) -> tuple[str, ...]:
    code = ("from engine.governance import Governance; from storage.store import Store; "
            f"g = Governance(Store({store_url!r})); g.overrides.engage_kill_switch({APPROVER!r}, {reason!r}); "
            "g.close()")
    return (sys.executable, "-c", code)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def test_the_kill_switch_engaged_during_the_command_stops_the_run_before_its_next_step(rgov, marks, store_url,
                                                                                       in_repo):
    result = run(rgov, plan(marks, command=_engage_from_another_process(store_url, "incident 42"),
                            verify=marks.cmd("verify"), rollback=marks.cmd("rollback")))
    assert result.exit_code == r.EXIT_KILL_SWITCH == 16
    assert marks.made() == set()  # neither the verify nor the rollback ran
    assert step_names(result) == ["command"]
    assert "incident 42" in result.report["stoppedBy"]
    g = grant(rgov, result.grant_id)
    assert g["report"]["outcome"] == "unknown"  # ran, never verified: left to the grant's expiry, alerted
    assert g["status"] == "granted" and outcome_events(rgov, result.grant_id) == []


def test_the_kill_switch_engaged_by_a_check_means_the_command_never_runs(rgov, marks, store_url, in_repo):
    result = run(rgov, plan(marks, checks=(_engage_from_another_process(store_url, "stop all"), marks.cmd("check2")),
                            rollback=marks.cmd("rollback")))
    assert result.exit_code == r.EXIT_KILL_SWITCH
    assert marks.made() == set()
    assert grant(rgov, result.grant_id)["status"] == RELEASED


def test_the_kill_switch_before_the_rollback_leaves_it_undone_and_reports_failed(rgov, marks, store_url, in_repo):
    failing = ("sh", "-c", shlex.join(_engage_from_another_process(store_url, "hands off")) + "; exit 1")
    result = run(rgov, plan(marks, command=failing, rollback=marks.cmd("rollback")))
    assert result.exit_code == r.EXIT_KILL_SWITCH
    assert marks.made() == set()
    assert grant(rgov, result.grant_id)["status"] == "failed"


def test_the_kill_switch_marker_file_created_mid_run_stops_it_too(rgov, marks, store_url):
    marker = getattr(rgov, "kill_marker", None)
    if marker is None:
        pytest.skip("this build has no kill-switch marker file")
    if str(marker.path).startswith("/run/"):
        pytest.skip("this host's marker lives in the service's runtime directory, which other tests share")
    path = shlex.quote(str(marker.path))
    create = ("sh", "-c", f"mkdir -p $(dirname {path}) && touch {path}")
    result = run(rgov, plan(marks, command=create, verify=marks.cmd("verify")))
    assert result.exit_code == r.EXIT_KILL_SWITCH
    assert "marker file" in result.report["stoppedBy"] and marks.made() == set()


def test_an_engaged_kill_switch_denies_before_anything_runs(rgov, marks):
    rgov.overrides.engage_kill_switch(APPROVER, "maintenance")
    result = run(rgov, plan(marks))
    assert result.exit_code == r.EXIT_DENIED and "kill switch" in result.message
    assert marks.made() == set() and result.grant_id is None


def _break_the_store(store_url: str) -> tuple[str, ...]:
    """A command that makes the store unreadable under the runner: garbage over the SQLite file, or the
    PostgreSQL schema dropped."""
    if "://" not in store_url:
        code = ("import os\n"
                f"for p in ({store_url!r}, {store_url + '-wal'!r}, {store_url + '-shm'!r}):\n"
                "    if os.path.exists(p):\n"
                "        with open(p, 'r+b') as f: f.write(b'not a database any more ' * 400)\n")
    else:
        schema = store_url.rsplit("search_path%3D", 1)[1]
        base = store_url.split("?", 1)[0].replace("postgresql+psycopg://", "postgresql://")
        code = ("import psycopg\n"
                f"with psycopg.connect({base!r}, autocommit=True) as c:\n"
                f"    c.execute('DROP SCHEMA \"{schema}\" CASCADE')\n"
                f"    c.execute('CREATE SCHEMA \"{schema}\"')\n")
    return (sys.executable, "-c", code)


def test_a_store_that_disappears_mid_run_stops_it_and_the_report_is_kept_locally(rgov, marks, store_url):
    result = run(rgov, plan(marks, command=_break_the_store(store_url), verify=marks.cmd("verify"),
                            rollback=marks.cmd("rollback")))
    assert result.exit_code == r.EXIT_STORE == 1
    assert marks.made() == set()  # failing closed: no verify, no rollback without the kill switch's word
    assert result.report["steps"][0]["name"] == "command" and result.report["steps"][0]["exitCode"] == 0
    assert "cannot be read" in result.message and "expires by itself" in result.message
    assert any(u.startswith("action report") for u in result.unreported)


def test_a_store_gone_mid_run_through_the_cli_prints_the_report_and_exits_non_zero(rgov, marks, store_url, cli):
    res = cli("run", "restart_service", "--agent", AGENT, "--wait", "0", "--verify", shlex.join(marks.cmd("verify")),
              "--", *_break_the_store(store_url))
    assert res.code == 1, res.err
    assert "the action report, as the store could not keep it" in res.err
    assert '"name": "command"' in res.err
    assert marks.made() == set()


# --- approval -------------------------------------------------------------------------------------


def _approve_when_pending(gov, *, reject: bool = False) -> threading.Thread:
    def approve() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = gov.actions.list(pending=True)["requests"]
            if pending:
                rid = pending[0]["requestId"]
                if reject:
                    gov.actions.reject(APPROVER, rid, "not during the launch")
                else:
                    gov.actions.approve(APPROVER, rid, "go ahead")
                return
            time.sleep(0.05)
    t = threading.Thread(target=approve, daemon=True)
    t.start()
    return t


def test_needs_approval_queues_a_request_waits_and_runs_once_approved(rgov, marks):
    with rgov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3", command_whitelist=[])
    approver = _approve_when_pending(rgov)
    result = run(rgov, plan(marks, wait=10))
    approver.join(5)
    assert result.exit_code == r.EXIT_SUCCEEDED, result.message
    assert marks.made() == {"command"}
    g = grant(rgov, result.grant_id)
    assert g["approvedBy"] == APPROVER and g["status"] == "succeeded" and g["requestId"] == result.request_id


def test_a_rejected_request_runs_nothing(rgov, marks):
    with rgov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3", command_whitelist=[])
    _approve_when_pending(rgov, reject=True)
    result = run(rgov, plan(marks, wait=10))
    assert result.exit_code == r.EXIT_DENIED and "not during the launch" in result.message
    assert marks.made() == set() and result.grant_id is None


def test_an_undecided_request_stops_after_wait_and_wait_0_queues_none(rgov, marks):
    with rgov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3", command_whitelist=[])
    result = run(rgov, plan(marks, wait=0.3))
    assert result.exit_code == r.EXIT_NEEDS_APPROVAL and "still undecided" in result.message
    assert len(rgov.actions.list(pending=True)["requests"]) == 1
    result = run(rgov, plan(marks, wait=0))
    assert result.exit_code == r.EXIT_NEEDS_APPROVAL and "no request is queued" in result.message
    assert len(rgov.actions.list(pending=True)["requests"]) == 1
    assert marks.made() == set()


# --- refused before any grant ----------------------------------------------------------------------


def test_dry_run_takes_no_grant_and_lists_the_steps(rgov, marks, cli):
    res = cli("run", "restart_service", "--service", "api", "--dry-run", "--check", "test -d /",
              "--backup", shlex.join(marks.cmd("backup")), "--verify", "true", "--verify-checks", "2",
              "--rollback", shlex.join(marks.cmd("rollback")), "--", *marks.cmd("command"))
    assert res.code == 0, res.err
    assert "would run (no grant taken)" in res.out
    for n, line in enumerate(("check    test -d /", "backup", "command", "verify   true", "verify   true",
                              "rollback"), start=1):
        assert f"{n}. {line}" in res.out
    assert marks.made() == set()
    assert rgov.actions.list()["grants"] == []
    with rgov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3", command_whitelist=[])
    res = cli("run", "restart_service", "--dry-run", "--json", "--", "true")
    assert res.code == 3 and res.json()["decision"]["decision"] == "needs_approval"
    assert rgov.actions.list() == {"requests": [], "grants": []}


@pytest.mark.parametrize("where", ["command", "check", "rollback"])
def test_a_missing_or_not_executable_program_is_refused_before_any_grant(rgov, marks, tmp_path, cli, where):
    script = tmp_path / "deploy.sh"
    script.write_text("#!/bin/sh\ntouch should-not-exist\n")
    script.chmod(0o644)
    args = {"command": ["--", str(script)], "check": ["--check", "no-such-program-xyz --flag", "--", "true"],
            "rollback": ["--rollback", str(tmp_path / "missing.sh"), "--", "true"]}[where]
    res = cli("run", "restart_service", "--wait", "0", *args)
    assert res.code == 2, res.out + res.err
    assert {"command": "is not executable", "check": "not found on PATH",
            "rollback": "no such file"}[where] in res.out
    assert "no grant taken" in res.out
    assert rgov.actions.list()["grants"] == []
    assert rgov.actions.decisions()["decisions"] == []  # the gate was not even asked


def test_rollback_mandatory_by_policy_is_refused_without_rollback(rgov, marks, cli):
    res = cli("run", "code_deployment", "--agent", AGENT, "--", *marks.cmd("command"))
    assert res.code == 2 and "makes a rollback mandatory: give --rollback CMD" in res.out
    assert marks.made() == set() and rgov.actions.list()["grants"] == []
    res = cli("run", "code_deployment", "--agent", AGENT, "--rollback", "true", "--", *marks.cmd("command"))
    assert res.code == 0, res.out + res.err
    assert marks.made() == {"command"}


def test_an_operator_without_a_role_is_refused_before_any_grant(rgov, marks):
    result = run(rgov, plan(marks), actor="nobody-at-all")
    assert result.exit_code == 5 and "nobody-at-all holds no role" in result.message
    assert rgov.actions.list()["grants"] == [] and marks.made() == set()


# --- the CLI end to end: exit codes, the report in `actions show`, redaction ---------------------------


def test_cli_run_reports_and_actions_show_prints_the_redacted_report(rgov, marks, cli):
    res = cli("run", "restart_service", "--service", "api", "--confidence", "0.95", "--json",
              "--verify", "sh -c 'echo healthy'", "--verify-interval", "100ms", "--",
              "sh", "-c", "echo connecting with password=hunter2-secret; echo done")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["result"] == "succeeded" and doc["exitCode"] == 0
    gid = doc["grantId"]
    assert "hunter2-secret" not in res.out and "hunter2-secret" not in res.err
    shown = cli("actions", "show", gid, "--json").json()
    report = shown["grant"]["report"]
    assert report["steps"][0]["outputTail"] == "connecting with password=[REDACTED]\ndone\n"
    assert "hunter2" not in json.dumps(shown)
    text = cli("actions", "show", gid)
    assert text.code == 0 and "action report: succeeded" in text.out and "verify" in text.out
    assert shown["grant"]["status"] == "succeeded"


@pytest.mark.parametrize("argv, code", [
    (["--rollback", "true", "--", "false"], 12),
    (["--verify", "false", "--verify-interval", "1s", "--", "true"], 18),
    (["--rollback", "false", "--", "false"], 14),
    (["--check", "false", "--", "true"], 10),
    (["--backup", "false", "--", "true"], 11),
    (["--timeout", "300ms", "--", "sleep", "10"], 15),
    (["--", "false"], 17),
])
def test_cli_exit_codes_are_distinct(rgov, cli, argv, code):
    res = cli("run", "restart_service", "--wait", "0", *argv)
    assert res.code == code, res.out + res.err


def test_cli_refuses_a_command_not_after_double_dash(cli):
    with pytest.raises(SystemExit) as exc:
        cli("run", "restart_service", "echo", "hi")
    assert exc.value.code == 2


def test_durations_and_commands_are_parsed_with_clear_errors():
    assert r.parse_seconds("500ms") == 0.5 and r.parse_seconds("1.5s") == 1.5 and r.parse_seconds("5m") == 300
    assert r.parse_seconds("2") == 2
    with pytest.raises(r.InvalidInput, match="not a duration"):
        r.parse_seconds("soon")
    with pytest.raises(r.InvalidInput, match="cannot be split"):
        r.split_command("echo 'unterminated", "--check")
    assert r.split_command("sh -c 'a b'", "--check") == ("sh", "-c", "a b")
