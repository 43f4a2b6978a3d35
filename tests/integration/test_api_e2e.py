"""`govcon serve` as a real process on 127.0.0.1, on both stores: the runbook's curl commands as
written (seed 001; only the port differs, and changing calls carry -H "Authorization: Bearer …"),
the tokens CLI, SIGTERM during load losing nothing acknowledged, log rotation on SIGUSR1, reads
behind tokens off loopback, and a store without state refused at start."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from engine.clock import ManualClock, isoformat
from engine.governance import Governance
from engine.tokens import TokenBook
from storage import state_repo, tables
from storage.store import Store
from tests.integration.test_governance_cycle import make_ready
from tests.serve_process import ROOT, ServeProcess, command_event, dumps, load

pytestmark = [
    pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")),
                       reason="needs curl and jq (apt-get install -y curl jq)"),
    pytest.mark.xdist_group("port-4007"),  # the runbook's commands name the port: one server at a time
]
ADMIN = "alice"


class Runbook:
    """Runs a runbook snippet with bash in ``cwd``; localhost:4007 becomes the test server's port."""

    def __init__(self, server: ServeProcess, cwd: Path) -> None:
        self.server, self.cwd = server, cwd

    def __call__(self, snippet: str, *, token: str | None = None, **env: str) -> str:
        script = snippet.replace("localhost:4007", f"localhost:{self.server.port}")
        if token:  # the one change the task allows: changing calls carry the bearer token
            script = script.replace("curl -X", 'curl -H "Authorization: Bearer $TOKEN" -X')
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.cwd, capture_output=True,
                              text=True, timeout=60, env=dict(os.environ, TOKEN=token or "", **env))
        assert done.returncode == 0, f"{script}\nexit {done.returncode}: {done.stderr}"
        return done.stdout


@pytest.fixture
def ready_store(store_url):
    """A store ready for L3 -> L3+ as of the real now (the server runs on the system clock); tokens
    for alice (admin), bob (tech-lead), carol (ops-lead) and dave (on-call)."""
    store = Store(store_url)
    clock = ManualClock(datetime.now(UTC))
    gov = Governance(store, clock)
    gov.init_store(ADMIN, phase_started=clock.now() - timedelta(days=200))
    make_ready(gov, clock)
    with store.write() as conn:  # no lease held by a test process: the server's scheduler takes it
        state_repo.release_lease(conn, name="scheduler", holder="test-leader")
    book = TokenBook(store, clock)
    tokens = {who: book.create(ADMIN, who).secret for who in (ADMIN, "bob", "carol", "dave")}
    yield store_url, store, tokens
    store.dispose()


@pytest.fixture
def server(ready_store, tmp_path):
    url, _store, _tokens = ready_store
    workdir = tmp_path / "services" / "governance"
    workdir.mkdir(parents=True)
    proc = ServeProcess(url, workdir).wait_ready()
    yield proc
    proc.stop()


def test_the_runbooks_curl_commands_against_a_real_server(ready_store, server, tmp_path):
    url, store, tokens = ready_store
    sh = Runbook(server, tmp_path)

    # Daily operations: morning checks
    health = json.loads(sh("curl http://localhost:4007/health"))
    assert health["status"] == "healthy" and health["service"] == "governance"
    assert sh("curl http://localhost:4007/api/circuit-breaker/events/unresolved") == "[]"
    assert json.loads(sh("curl http://localhost:4007/api/readiness/score | jq"))["score"] >= 0.95

    # Weekly: the governance cycle, its report, pending proposals
    sh("curl -X POST http://localhost:4007/api/governance/run-cycle | jq > report.json", token=tokens[ADMIN])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["recommendation"] == "expand_scope" and report["proposal"]
    assert json.loads(sh("curl http://localhost:4007/api/governance/reports/latest | jq"))["id"] == report["id"]
    assert len(json.loads(sh("curl http://localhost:4007/api/governance/proposals | jq"))) == 1

    # Phase transitions: approve the proposal as tech-lead, verify the phase
    proposal = json.loads(sh("curl http://localhost:4007/api/governance/proposals | jq '.[0]'"))
    assert proposal["status"] == "pending" and proposal["expansion"]["targetPhase"] == "L3+"
    approved = json.loads(sh('''
   PROPOSAL_ID="$RUNBOOK_PROPOSAL"
   APPROVER="tech-lead"  # or ops-lead, product-lead, exec-sponsor

   curl -X POST "http://localhost:4007/api/governance/proposals/$PROPOSAL_ID/approve" \\
     -H "Content-Type: application/json" \\
     -d "{\\"approvedBy\\": \\"$APPROVER\\"}"
''', token=tokens["bob"], RUNBOOK_PROPOSAL=proposal["proposalId"]))
    assert approved["status"] == "approved" and approved["approvals"][0]["approver"] == "bob"
    assert sh("curl http://localhost:4007/api/governance/state | jq '.currentPhase'").strip() == '"L3+"'

    # an agent reports failures (POST /api/events); the breaker reverts to L3 within moments
    now = datetime.now(UTC) - timedelta(seconds=5)
    failures = [command_event(f"fail-{i}", "failed" if i < 3 else "succeeded", at=isoformat(now))
                for i in range(20)]
    ingested = httpx.post(server.base + "/api/events", content=dumps(failures),
                          headers={"Authorization": f"Bearer {tokens['dave']}"}).json()
    assert ingested["accepted"] == 20
    deadline = time.monotonic() + 30
    while json.loads(sh("curl http://localhost:4007/api/circuit-breaker/events/unresolved | jq 'length'")) == 0:
        assert time.monotonic() < deadline, "the breaker did not trip"
        time.sleep(0.05)

    # Incident response: assess, verify the reversion, resolve
    unresolved = json.loads(sh("curl http://localhost:4007/api/circuit-breaker/events/unresolved | jq"))
    event = next(e for e in unresolved if e["ruleName"] == "High Error Rate")
    assert event["severity"] == "critical" and event["action"] == "revert_to_l3"
    assert sh("curl http://localhost:4007/api/governance/state | jq '.currentPhase'").strip() == '"L3"'
    assert sh("curl http://localhost:4007/api/governance/state | jq '.commandWhitelist'").strip() == "[]"
    assert {e["ruleName"] for e in unresolved} == {"High Error Rate", "Repeated Command Failures"}
    for each in unresolved:  # critical (revert_to_l3) and high (pause_command_type): resolve both
        resolved = json.loads(sh('''
   EVENT_ID="$RUNBOOK_EVENT"
   curl -X POST "http://localhost:4007/api/circuit-breaker/events/$EVENT_ID/resolve" \
     -H "Content-Type: application/json" -d '{"note": "INC-4711: bad deploy rolled back"}'
''', token=tokens["dave"], RUNBOOK_EVENT=each["id"]))
        assert resolved["resolved"] and resolved["resolvedBy"] == "dave" and resolved["note"].startswith("INC-4711")
    assert sh("curl http://localhost:4007/api/governance/state | jq '.pausedCommandTypes'").strip() == "[]"

    # Circuit breaker management: review, update, disable, verify
    assert len(json.loads(sh("curl http://localhost:4007/api/circuit-breaker/rules | jq"))) == 4
    updated = json.loads(sh('''
   RULE_NAME="High%20Error%20Rate"

   curl -X PATCH "http://localhost:4007/api/circuit-breaker/rules/$RULE_NAME" \\
     -H "Content-Type: application/json" \\
     -d '{
       "condition": "errorRate > 0.08",
       "window": "10m",
       "alertSeverity": "high"
     }'
''', token=tokens["carol"]))
    assert (updated["condition"], updated["window"], updated["alertSeverity"]) == ("errorRate > 0.08", "10m", "high")
    disabled = json.loads(sh('''
RULE_NAME="High%20Rollback%20Rate"

curl -X PATCH "http://localhost:4007/api/circuit-breaker/rules/$RULE_NAME" \\
  -H "Content-Type: application/json" \\
  -d '{"enabled": false}'
''', token=tokens["carol"]))
    assert disabled["enabled"] is False
    enabled = json.loads(sh("curl http://localhost:4007/api/circuit-breaker/rules/enabled | jq"))
    assert "High Rollback Rate" not in [r["name"] for r in enabled] and len(enabled) == 3

    # Troubleshooting
    assert "simcorp_governance_phase" in sh("curl http://localhost:4007/metrics | grep simcorp_governance")
    if shutil.which("promtool"):  # with trips, rules and events recorded: still valid exposition
        sh("curl -s http://localhost:4007/metrics | promtool check metrics")
    assert "overall" in json.loads(sh("curl http://localhost:4007/api/readiness/current | jq"))
    blockers = sh("curl http://localhost:4007/api/readiness/current | jq '.overall.blockers'")
    assert isinstance(json.loads(blockers), list)
    assert json.loads(sh("curl http://localhost:4007/api/metrics/latest | jq"))["commands"]["failed"] == 3
    history = json.loads(sh("curl http://localhost:4007/api/circuit-breaker/events | jq"))
    assert event["id"] in [e["id"] for e in history]
    rule = json.loads(sh('''RULE_NAME="High Error Rate"
curl "http://localhost:4007/api/circuit-breaker/rules" | jq ".[] | select(.name==\\"$RULE_NAME\\")"
'''))
    assert rule["statistics"]["trips"] == 1

    # Appendix: quick reference
    assert sh("curl http://localhost:4007/api/governance/state | jq '.currentPhase'").strip() == '"L3"'
    assert 0 <= json.loads(sh("curl http://localhost:4007/api/readiness/score | jq '.score'")) <= 1
    assert sh("curl http://localhost:4007/api/circuit-breaker/events/unresolved | jq 'length'").strip() == "0"
    assert json.loads(sh("curl -X POST http://localhost:4007/api/governance/run-cycle", token=tokens["bob"]))["id"]
    assert json.loads(sh("curl http://localhost:4007/api/governance/proposals"))[0]["status"] == "approved"
    pid = proposal["proposalId"]
    again = json.loads(sh(f'''curl -X POST http://localhost:4007/api/governance/proposals/{pid}/approve \\
  -H "Content-Type: application/json" \\
  -d '{{"approvedBy": "tech-lead"}}' ''', token=tokens["bob"]))
    assert again["error"] == "conflict" and "not pending" in again["detail"]

    # the audit log names the tokens' operators
    gov = Governance(store)
    actors = {(e["action"], e["actor"]) for e in gov.audit_entries(limit=50)}
    assert {("proposal.approve", "bob"), ("breaker.resolve", "dave"), ("rule.set", "carol"),
            ("cycle.run", ADMIN)} <= actors


def test_log_rotation_as_the_runbook_does_it(server, tmp_path):
    sh = Runbook(server, tmp_path)
    sh('''
cd services/governance
mv governance.log governance.log.$(date +%Y%m%d)
gzip governance.log.$(date +%Y%m%d)
touch governance.log
kill -USR1 $(cat governance.pid)  # Reopen log file
''')
    deadline = time.monotonic() + 30
    while "SIGUSR1: log file reopened" not in server.log():
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)
    assert list((tmp_path / "services" / "governance").glob("governance.log.*.gz"))


def test_sigterm_during_load_loses_nothing_acknowledged(ready_store, server):
    url, store, tokens = ready_store
    at = isoformat(datetime.now(UTC) - timedelta(hours=1))

    def body(c: int, n: int):
        key = f"term-{c}-{n}"
        return key, dumps(command_event(key, at=at))

    async def run():
        task = asyncio.create_task(load(server.port, clients=8, seconds=20, make_body=body, token=tokens[ADMIN]))
        await asyncio.sleep(1.0)
        server.proc.send_signal(15)
        return await task

    result = asyncio.run(run())
    assert server.proc.wait(30) == 0, server.log()
    assert result.requests > 100 and set(result.statuses) == {200}, result.statuses
    t = tables.command_events
    with store.read() as conn:
        stored = set(conn.execute(sa.select(t.c.command_id).where(t.c.command_id.like("term-%"))).scalars())
        lease = state_repo.get_lease(conn)
    acknowledged = set(result.acknowledged)
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged events were lost"
    assert len(stored) - len(acknowledged) <= 8  # at most one unanswered request per client in flight
    assert lease is None, "the leader lease was not released"
    assert "leader lease released" in server.log()


def test_tokens_cli_prints_the_token_once_and_revocation_takes_effect(ready_store, server, tmp_path):
    url, store, tokens = ready_store
    env = dict(os.environ, GOVCON_DATABASE_URL=url, GOVCON_CONFIG=str(tmp_path / "absent.toml"))
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    Governance(store).grant_role(ADMIN, me, "admin")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "console", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
    created = cli("tokens", "create", "erin")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n" and secret.startswith("gvc_") and "shown this once" in created.stderr
    as_json = json.loads(cli("tokens", "create", "erin", "--json").stdout)
    assert set(as_json) == {"id", "operator", "token"} and as_json["operator"] == "erin"
    listed = json.loads(cli("tokens", "list", "--json").stdout)
    assert secret not in json.dumps(listed) and {t["operator"] for t in listed} >= {"erin", ADMIN}
    Governance(store).grant_role(ADMIN, "erin", "on-call")
    headers = {"Authorization": f"Bearer {secret}"}
    ok = httpx.post(server.base + "/api/kill-switch", json={"action": "engage", "reason": "test"}, headers=headers)
    assert ok.status_code == 200 and ok.json()["killSwitch"]["by"] == "erin"
    deadline = time.monotonic() + 30  # the server records a use in the background
    while not any(t["lastUsedAt"] for t in json.loads(cli("tokens", "list", "--json").stdout)):
        assert time.monotonic() < deadline, "the token's use was not recorded within 30 s"
        time.sleep(0.2)
    erin_lines = [line for line in cli("tokens", "list").stdout.splitlines() if " erin " in line]
    assert len(erin_lines) == 2 and sum("last used 20" in line for line in erin_lines) == 1, erin_lines
    assert sum(line.endswith("never used") for line in erin_lines) == 1  # the --json one was never sent
    used = next(t for t in json.loads(cli("tokens", "list", "--json").stdout) if t["lastUsedAt"])
    token_id = used["id"]
    assert used["operator"] == "erin" and used["id"] != as_json["id"]
    revoked = cli("tokens", "revoke", token_id, "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["active"] is False
    deadline = time.monotonic() + 10  # the server caches a token's answer for 5 s
    while httpx.get(server.base + "/api/governance/state", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token still works after 10 s"
        time.sleep(0.2)
    assert secret not in server.log() and secret not in server.stderr()


def test_off_loopback_reads_need_a_token(ready_store, tmp_path):
    url, store, tokens = ready_store
    proc = ServeProcess(url, tmp_path, host="0.0.0.0").wait_ready()
    try:
        assert httpx.get(proc.base + "/api/governance/state").status_code == 401
        authorised = httpx.get(proc.base + "/api/governance/state",
                               headers={"Authorization": f"Bearer {tokens['carol']}"})
        assert authorised.status_code == 200 and authorised.json()["currentPhase"] == "L3"
        assert httpx.get(proc.base + "/health").json()["status"] == "healthy"
    finally:
        assert proc.stop() == 0


def test_serve_refuses_a_store_without_governance_state(store_url, tmp_path):
    Store(store_url).dispose()  # migrated, never initialised
    proc = ServeProcess(store_url, tmp_path)
    assert proc.proc.wait(60) == 1
    assert "govcon db init" in proc.stderr()
