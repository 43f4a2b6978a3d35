"""The safety and growth commands through the real CLI: gate exit codes, kill switch, revert, events,
rules (validation before storing, backtest), cycle and proposals — and the kill switch working while
a scheduled job is stuck."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from console.identity import current_operator
from engine.clock import isoformat
from storage import state_repo
from tests.conftest import OPERATOR


@pytest.fixture
def operator_roles(gov, me):
    """The OS user running the tests holds the operational roles (alice, the admin, grants them)."""
    for role in ("on-call", "incident-commander", "ops-lead", "tech-lead"):
        gov.grant_role(OPERATOR, me, role)
    return me


def test_gate_exit_codes_follow_the_contract(gov, cli):
    r = cli("gate", "restart_service", "--json")
    assert r.code == 3 and r.json()["decision"] == "needs_approval" and r.json()["phase"] == "L3"
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])
    r = cli("gate", "restart_service", "--json")
    doc = r.json()
    assert r.code == 0 and {k: doc[k] for k in ("decision", "reason", "commandType", "phase")} == {
        "decision": "allow", "reason": "restart_service is whitelisted at L3+", "commandType": "restart_service",
        "phase": "L3+"}
    assert doc["grantId"].startswith("gr-") and doc["agent"] == current_operator()  # the OS user asks
    gov.grant_role(OPERATOR, OPERATOR, "on-call")
    gov.overrides.engage_kill_switch(OPERATOR, "INC-7")
    r = cli("gate", "restart_service")
    assert r.code == 4 and r.out.startswith("deny: kill switch engaged by alice: INC-7")


def test_gate_fails_closed_on_an_unreachable_store(tmp_path, clock):
    import io

    from console.cli import main
    out, err = io.StringIO(), io.StringIO()
    url = "postgresql+psycopg://nobody:nothing@127.0.0.1:1/none"
    code = main(["--database-url", url, "gate", "restart_service", "--json"], clock=clock, out=out, err=err)
    assert code == 4
    doc = json.loads(out.getvalue())
    assert doc["decision"] == "deny" and "failing closed" in doc["reason"]


def test_kill_switch_engage_release_and_drill(gov, cli, operator_roles):
    r = cli("kill-switch", "engage", "--reason", "INC-9 runaway restarts")
    assert r.code == 0 and "ENGAGED" in r.out
    status = cli("status", "--json").json()
    assert status["killSwitch"]["engaged"] and status["killSwitch"]["by"] == operator_roles
    assert cli("kill-switch", "engage", "--reason", "again").out.startswith("the kill switch is engaged already")
    assert cli("kill-switch", "release").code == 2  # a reason is required
    assert cli("kill-switch", "release", "--reason", "fixed").code == 0
    r = cli("kill-switch", "drill", "--json")
    assert r.code == 0 and r.json()["message"].startswith("drill passed")
    assert not cli("status", "--json").json()["killSwitch"]["engaged"]


def test_role_refusal_names_the_role(gov, cli, me):
    r = cli("kill-switch", "engage", "--reason", "x")
    assert r.code == 5 and "on-call" in r.err and me in r.err


def test_revert_events_and_rules(gov, cli, clock, operator_roles, tmp_path):
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["a", "b"])
    r = cli("revert", "--reason", "stakeholder request", "--json")
    assert r.code == 0 and r.json()["changed"]
    assert cli("status", "--json").json()["currentPhase"] == "L3"

    now = clock.now()
    lines = [json.dumps({"kind": "command", "id": f"f{i}", "type": "restart_service", "status": "failed",
                         "autonomous": True, "at": isoformat(now)}) for i in range(3)]
    path = tmp_path / "burst.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert cli("ingest", str(path)).code == 0
    events = cli("events", "list", "--unresolved", "--json").json()
    assert [e["ruleName"] for e in events] == ["Repeated Command Failures"]
    assert cli("status", "--json").json()["pausedCommandTypes"] == ["restart_service"]
    r = cli("events", "resolve", events[0]["id"], "--note", "flaky probe", "--false-positive", "--json")
    assert r.code == 0 and r.json()["falsePositive"] is True
    assert cli("status", "--json").json()["pausedCommandTypes"] == []
    rules = {r["name"]: r for r in cli("rules", "list", "--json").json()}
    assert rules["Repeated Command Failures"]["statistics"]["falsePositiveRate"] == 1.0

    bad = cli("rules", "add", "Too Many", "--condition", "errorRat > 0.1", "--window", "5m",
              "--action", "alert_only", "--severity", "low")
    assert bad.code == 2 and "column 0" in bad.err and "did you mean errorRate" in bad.err
    assert len(cli("rules", "list", "--json").json()) == 4  # nothing stored
    assert cli("rules", "set", "High Error Rate", "--window=-5m").code == 2
    r = cli("rules", "set", "High Error Rate", "--condition", "errorRate > 0.08", "--window", "10m", "--json")
    assert r.code == 0 and r.json()["window"] == "10m"
    tried = cli("rules", "add", "Slow Failures", "--condition", "commandType.failures >= 2", "--window", "15m",
                "--action", "pause_command_type", "--severity", "medium", "--shadow", "--json")
    assert tried.code == 0 and tried.json()["shadow"] is True
    assert "Slow Failures" in cli("rules", "list").out.split("SHADOW: records only")[0].splitlines()[-1]
    assert cli("rules", "set", "Slow Failures", "--enforce", "--json").json()["shadow"] is False
    r = cli("rules", "backtest", "--condition", "commandType.failures >= 3", "--window", "5m", "--days", "1",
            "--json")
    assert r.code == 0 and r.json()["trips"] >= 1
    assert cli("rules", "show", "High Eror Rate").err.count("did you mean 'High Error Rate'") == 1


def test_cycle_and_proposals_through_the_cli(gov, cli, clock, me):
    from tests.integration.test_governance_cycle import make_ready
    make_ready(gov, clock)
    assert cli("cycle").code == 5  # no role yet: refused, naming the roles
    gov.grant_role(OPERATOR, me, "on-call")
    r = cli("cycle", "--json")
    assert r.code == 0
    report = r.json()
    assert set(report) >= {"id", "metrics", "readiness", "recommendation", "circuitBreakerEvents", "proposal"}
    pid = report["proposal"]["proposalId"]
    assert report["proposal"]["triggeredBy"] == me
    listed = cli("proposals", "list", "--json").json()
    assert [p["proposalId"] for p in listed] == [pid] and listed[0]["status"] == "pending"
    gov.grant_role(OPERATOR, me, "tech-lead")
    r = cli("proposals", "approve", pid, "--role", "tech-lead")
    assert r.code == 5 and "triggered this proposal" in r.err  # four eyes
    gov.proposals.reject("bob", pid, "try again")
    pid2 = gov.cycle.run(OPERATOR)["proposal"]["proposalId"]
    r = cli("proposals", "approve", pid2, "--role", "tech-lead", "--json")
    assert r.code == 0 and r.json()["status"] == "approved"
    assert cli("status", "--json").json()["currentPhase"] == "L3+"
    assert "approved" in cli("proposals", "show", pid2).out
    assert "# Governance report" in cli("cycle").out


def test_kill_switch_works_while_a_scheduled_job_is_stuck(gov, clock, store_url, operator_roles):
    """A job stuck mid-run (here: hung inside a read transaction) never blocks the kill switch."""
    from engine.jobs import GovconScheduler
    sched = GovconScheduler(gov, "stuck-leader")
    assert sched.renew_lease()
    release, inside = threading.Event(), threading.Event()

    def stuck_job():
        with gov.store.read() as conn:
            state_repo.get_state(conn)
            inside.set()
            release.wait(30)
    worker = threading.Thread(target=sched._guard("breaker-tick", stuck_job), daemon=True)
    worker.start()
    assert inside.wait(30), "the job never entered its read transaction"
    env = {**os.environ, "GOVCON_DATABASE_URL": store_url}
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "console", "kill-switch", "engage", "--reason", "runaway"],
                          env=env, capture_output=True, text=True, timeout=60)
    took = time.time() - started
    release.set()
    worker.join()
    assert done.returncode == 0, done.stderr
    assert took < 10
    assert gov.status(with_readiness=False)["killSwitch"]["engaged"]


def test_a_mistyped_store_path_is_refused_not_created(tmp_path, clock):
    import io

    from console.cli import main
    missing = tmp_path / "typo" / "governance.db"
    for argv in (["status"], ["events", "list"], ["readiness", "--json"]):
        out, err = io.StringIO(), io.StringIO()
        assert main(["--database-url", str(missing), *argv], clock=clock, out=out, err=err) == 1
        assert "there is no store at" in err.getvalue()
    assert not missing.parent.exists()
    out, err = io.StringIO(), io.StringIO()
    assert main(["--database-url", str(missing), "db", "init"], clock=clock, out=out, err=err) == 0
    assert missing.exists()


def test_drill_reason_is_recorded(gov, cli, operator_roles):
    assert cli("kill-switch", "drill", "--reason", "quarterly drill Q4").code == 0
    entry = gov.audit_entries(limit=1)[0]
    assert entry["action"] == "kill_switch.drill" and "quarterly drill Q4" in entry["reason"]
