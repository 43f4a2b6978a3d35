"""`govcon …` on both stores, in-process through console.cli.main (and once as a real subprocess):
the contract's commands, JSON shapes, exit statuses and error messages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.errors import AlreadyInitialised
from storage import breaker_repo, tables
from tests.conftest import OPERATOR
from tests.integration.conftest import jsonl

STATUS_KEYS = {"currentPhase", "phaseStartDate", "commandWhitelist", "pausedCommandTypes", "killSwitch",
               "breakerMode", "unresolvedEvents", "readinessScore"}
BAD_STATUS = ('{"kind": "command", "id": "c-bad", "type": "restart_service", "status": "exploded", '
              '"at": "2026-11-20T10:00:00Z"}')


@pytest.fixture
def operator_role(gov, me):
    """Give the OS user running the tests a role in the gov fixture's store."""
    def grant(role: str = "ops-lead") -> None:
        gov.grant_role(OPERATOR, me, role)
    return grant


@pytest.fixture
def events_file(tmp_path, ev) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl([*ev.lifecycle("c1", ["proposed", "approved", "succeeded"]), BAD_STATUS,
                           ev.command("c2", "failed"), ev.incident("i1", "critical", "c2")]))
    return path


def stored_commands(store) -> set[tuple[str, str]]:
    t = tables.command_events
    with store.read() as conn:
        return set(conn.execute(sa.select(t.c.command_id, t.c.status)).all())


# --- db init ----------------------------------------------------------------------------------


def test_db_init_creates_the_store_with_its_creator_as_admin(cli, store_url, me, clock):
    result = cli("db", "init", "--phase-started", "2026-03-01")
    assert result.code == 0, result.err
    assert f"{me} is its first admin" in result.out
    status = cli("status", "--json").json()
    assert status["currentPhase"] == "L3"
    assert status["phaseStartDate"] == "2026-03-01T00:00:00Z"
    assert cli("roles", "list", "--json").json() == [
        {"operator": me, "role": "admin", "grantedBy": me, "grantedAt": "2026-11-20T12:00:00Z"}]
    from storage.store import Store
    store = Store(store_url)
    try:
        with store.read() as conn:
            rules = breaker_repo.list_rules(conn)
    finally:
        store.dispose()
    assert [(r.name, r.enabled, r.condition, r.window, r.action, r.alert_severity, r.min_samples)
            for r in rules] == [
        ("High Error Rate", True, "errorRate > 0.05", "5m", "revert_to_l3", "critical", 10),
        ("Repeated Command Failures", True, "commandType.failures >= 3", "5m", "pause_command_type", "high", 10),
        ("Critical Incident Detected", True, 'incident.severity === "critical"', "1m", "revert_to_l3",
         "critical", 10),
        ("High Rollback Rate", True, "rollbackRate > 0.1", "15m", "alert_only", "medium", 10)]
    audit = cli("audit", "list", "--json").json()
    assert [(e["action"], e["actor"]) for e in audit] == [("store.init", me)]


def test_db_init_without_a_date_starts_l3_now(cli):
    assert cli("db", "init").code == 0
    assert cli("status", "--json").json()["phaseStartDate"] == "2026-11-20T12:00:00Z"


def test_db_init_is_refused_on_a_store_with_state(gov, cli, store):
    def snapshot():
        with store.read() as conn:
            return (conn.execute(sa.select(tables.governance_state)).all(),
                    conn.execute(sa.select(tables.audit_log)).all())
    before = snapshot()
    result = cli("db", "init", "--phase-started", "2026-01-01")
    assert result.code != 0
    assert "already has governance state" in result.err and "db migrate" in result.err
    assert snapshot() == before
    assert cli("status", "--json").json()["phaseStartDate"] == "2026-05-04T12:00:00Z"


def test_init_store_twice_raises_already_initialised(gov):
    with pytest.raises(AlreadyInitialised, match="already has governance state"):
        gov.init_store("mallory")
    assert gov.roles_of("mallory") == set()
    assert len(gov.audit_entries()) == 1


def test_db_init_refuses_a_phase_start_in_the_future(cli):
    result = cli("db", "init", "--phase-started", "2027-01-01")
    assert result.code == 2 and "in the future" in result.err
    assert "db init" in cli("status").err


def test_db_init_refuses_a_malformed_date(cli, capsys):
    with pytest.raises(SystemExit) as info:
        cli("db", "init", "--phase-started", "last spring")
    assert info.value.code == 2
    assert "'last spring' is not a date" in capsys.readouterr().err


# --- status -----------------------------------------------------------------------------------


def test_status_json_has_the_contract_keys(gov, cli):
    doc = cli("status", "--json").json()
    assert STATUS_KEYS <= set(doc)
    assert set(doc["killSwitch"]) == {"engaged", "by", "at", "reason", "marker"}
    assert {k: v for k, v in doc["killSwitch"].items() if k != "marker"} == \
        {"engaged": False, "by": None, "at": None, "reason": None}
    assert doc["killSwitch"]["marker"] is None  # no marker file: engaged only by the store
    assert (doc["mode"], doc["grantsInFlight"], doc["pendingRequests"], doc["halfOpen"]) == ("normal", 0, 0, {})
    assert (doc["currentPhase"], doc["commandWhitelist"], doc["pausedCommandTypes"]) == ("L3", [], [])
    assert (doc["breakerMode"], doc["unresolvedEvents"]) == ("enforce", 0)
    assert doc["readinessScore"] == round(gov.readiness.assess().score, 4)
    assert doc["phaseStartDate"] == "2026-05-04T12:00:00Z"


def test_status_for_people(gov, cli):
    result = cli("status")
    assert result.code == 0
    assert "L3 since 2026-05-04T12:00:00Z" in result.out and "released" in result.out


def test_status_of_an_uninitialised_store_says_to_run_db_init(cli):
    result = cli("status", "--json")
    assert result.code == 1 and result.out == ""
    assert "govcon db init" in result.err


# --- ingest -----------------------------------------------------------------------------------


def test_ingest_reports_counts_and_bad_lines_and_exits_non_zero(gov, cli, operator_role, events_file):
    operator_role("on-call")
    result = cli("ingest", str(events_file))
    assert result.code == 1
    assert "accepted 5, duplicate 0, rejected 1" in result.out
    assert "rejected line 4, field status: unknown status 'exploded'" in result.err
    assert stored_commands(gov.store) == {("c1", "proposed"), ("c1", "approved"), ("c1", "succeeded"),
                                          ("c2", "failed")}


def test_reingest_from_the_cli_stores_nothing_new(gov, cli, operator_role, tmp_path, ev):
    operator_role("on-call")
    path = tmp_path / "good.jsonl"
    path.write_text(jsonl(ev.lifecycle("c1", ["proposed", "approved", "succeeded"])))
    assert cli("ingest", str(path)).code == 0
    again = cli("ingest", "--json", str(path))
    assert again.code == 0
    assert again.json() == {"accepted": 0, "duplicate": 3, "rejected": 0, "conflict": 0, "errors": []}


def test_ingest_json_lists_the_errors(gov, cli, operator_role, events_file):
    operator_role()
    result = cli("ingest", "--json", str(events_file))
    assert result.code == 1
    doc = result.json()
    assert (doc["accepted"], doc["duplicate"], doc["rejected"]) == (5, 0, 1)
    assert doc["errors"] == [{"line": 4, "field": "status", "message": doc["errors"][0]["message"]}]
    assert "exploded" in doc["errors"][0]["message"]


def test_ingest_from_stdin(gov, cli, operator_role, ev, monkeypatch):
    operator_role()
    data = jsonl([ev.command("c1", "succeeded"), "not json at all"]).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    result = cli("ingest", "-")
    assert result.code == 1
    assert "rejected line 2: not valid JSON" in result.err
    assert stored_commands(gov.store) == {("c1", "succeeded")}


def test_ingest_needs_a_role(gov, cli, me, events_file):
    result = cli("ingest", str(events_file))
    assert result.code == 5
    assert "ingesting events needs a role (any of" in result.err and f"{me} holds no role" in result.err
    assert stored_commands(gov.store) == set()


def test_ingest_of_a_missing_file(gov, cli, operator_role, tmp_path):
    operator_role()
    result = cli("ingest", str(tmp_path / "nope.jsonl"))
    assert result.code == 2 and "no such file" in result.err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_large_file_on_a_terminal_shows_progress(gov, operator_role, store_url, clock, monkeypatch, tmp_path, ev):
    from console import cli as cli_module

    operator_role()
    monkeypatch.setenv("GOVCON_DATABASE_URL", store_url)
    monkeypatch.setattr(cli_module, "PROGRESS_MIN_BYTES", 1000)
    path = tmp_path / "big.jsonl"
    path.write_text(jsonl([ev.command(f"c{i}", "succeeded") for i in range(50)]))
    out, err = _Terminal(), io.StringIO()
    assert cli_module.main(["ingest", str(path)], clock=clock, out=out, err=err) == 0
    assert "100%" in err.getvalue() and "accepted 50" in out.getvalue()
    out, err = io.StringIO(), io.StringIO()  # not a terminal: no progress bar
    cli_module.main(["ingest", str(path)], clock=clock, out=out, err=err)
    assert "%" not in err.getvalue()


def test_ingest_as_a_real_subprocess(gov, store_url, operator_role, events_file, tmp_path):
    """`python -m console ingest FILE` as its own process: exit status, stdout and stderr."""
    operator_role()
    env = {**os.environ, "GOVCON_DATABASE_URL": store_url}
    run = subprocess.run([sys.executable, "-m", "console", "ingest", str(events_file)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 1, run.stderr
    assert run.stdout == "accepted 5, duplicate 0, rejected 1\n"
    assert run.stderr.startswith("rejected line 4, field status: unknown status 'exploded'")
    assert len(stored_commands(gov.store)) == 4


# --- metrics, readiness, attest --------------------------------------------------------------


def test_metrics_json_with_null_rates(gov, cli):
    result = cli("metrics", "--json")
    assert result.code == 0
    doc = result.json()
    assert set(doc) >= {"period", "commands", "rates", "incidents", "safety"}
    assert doc["rates"] == {"successRate": None, "approvalRate": None, "rollbackRate": None, "errorRate": None}
    assert '"successRate": null' in result.out
    assert doc["period"] == {"start": "2026-11-13T12:00:00Z", "end": "2026-11-20T12:00:00Z"}


def test_metrics_since(gov, cli, ingest, ev, clock):
    ingest([ev.command("c1", "succeeded"), ev.command("c2", "failed", at=clock.now() - timedelta(days=2))])
    assert cli("metrics", "--json", "--since", "1d").json()["commands"]["total"] == 1
    week = cli("metrics", "--json").json()
    assert (week["commands"]["total"], week["rates"]["successRate"]) == (2, 0.5)
    text = cli("metrics", "--since", "7d").out
    assert "successRate 50.00%" in text and "approvalRate unknown" in text


def test_metrics_refuses_a_bad_since(gov, cli, capsys):
    with pytest.raises(SystemExit) as info:
        cli("metrics", "--since", "0s")
    assert info.value.code == 2 and "positive" in capsys.readouterr().err


def test_readiness_json_shape(gov, cli):
    doc = cli("readiness", "--json").json()
    assert set(doc["overall"]) >= {"score", "ready", "blockers"}
    for category, n in (("technical", 10), ("process", 8), ("organizational", 6)):
        assert set(doc[category]) >= {"score", "items"}
        assert len(doc[category]["items"]) == n
        for it in doc[category]["items"]:
            assert set(it) >= {"name", "weight", "required", "status", "details"}
    assert isinstance(doc["recommendations"], list) and doc["recommendations"]
    assert {"type", "priority", "rationale", "actions"} <= set(doc["recommendations"][0])
    assert isinstance(doc["nextActions"], list)
    assert doc["overall"]["ready"] is False and "Kill switch tested" in doc["overall"]["blockers"]
    text = cli("readiness").out
    assert "not ready" in text and "[FAIL] *Kill switch tested (2)" in text


def test_attest_from_the_cli_needs_the_role(gov, cli, me, operator_role):
    refused = cli("attest", "chaos-engineering-tests-passing", "--pass", "--evidence", "game day 7")
    assert refused.code == 5 and "admin, tech-lead, ops-lead" in refused.err and me in refused.err
    operator_role("tech-lead")
    ok = cli("attest", "chaos-engineering-tests-passing", "--pass", "--evidence", "game day 7",
             "--valid-for", "30d", "--json")
    assert ok.code == 0
    assert ok.json() == {"item": "Chaos engineering tests passing", "slug": "chaos-engineering-tests-passing",
                         "passed": True, "operator": me, "evidence": "game day 7",
                         "at": "2026-11-20T12:00:00Z", "expiresAt": "2026-12-20T12:00:00Z"}
    failed = cli("attest", "Rollback procedures tested", "--fail", "--evidence", "rollback drill failed")
    assert failed.code == 0 and "as failing" in failed.out
    unknown = cli("attest", "vibes", "--pass", "--evidence", "x")
    assert unknown.code == 1 and "no checklist item 'vibes'" in unknown.err


# --- audit, roles -----------------------------------------------------------------------------


def test_audit_verify_exits_non_zero_on_tampering(gov, cli, store, operator_role):
    operator_role("tech-lead")
    for i in range(3):
        gov.attest(OPERATOR, "audit-trail-comprehensive", passed=True, evidence=f"check {i}")
    intact = cli("audit", "verify")
    assert intact.code == 0 and "intact: 5 entries verified" in intact.out
    with store.write() as conn:
        conn.execute(sa.text("UPDATE audit_log SET reason = 'x' WHERE seq = 2"))
    tampered = cli("audit", "verify")
    assert tampered.code != 0
    assert "audit entry 2: edited" in tampered.err
    doc = cli("audit", "verify", "--json")
    assert doc.code != 0
    assert doc.json()["ok"] is False and doc.json()["checked"] == 1
    assert doc.json()["problem"]["seq"] == 2 and "audit entry 2: edited" in doc.json()["problem"]["message"]


def test_audit_verify_names_a_deleted_entry(gov, cli, store, operator_role):
    operator_role("tech-lead")
    operator_role("on-call")
    with store.write() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 2"))
    result = cli("audit", "verify")
    assert result.code != 0 and "audit entry 2: removed" in result.err


def test_audit_list(gov, cli, operator_role, me):
    operator_role("tech-lead")
    text = cli("audit", "list").out
    assert "store.init" in text and "role.grant" in text and me in text
    assert [e["seq"] for e in cli("audit", "list", "--json", "--limit", "1").json()] == [2]
    assert [e["action"] for e in cli("audit", "list", "--json", "--search", "grant").json()] == ["role.grant"]


def test_roles_from_the_cli(gov, cli, operator_role, me):
    refused = cli("roles", "grant", "bob", "on-call")
    assert refused.code == 5 and "needs the role admin" in refused.err
    operator_role("admin")
    assert cli("roles", "grant", "bob", "on-call").out.strip() == "granted on-call to bob"
    assert cli("roles", "grant", "bob", "on-call").out.strip() == "bob already holds on-call"
    assert {(g["operator"], g["role"]) for g in cli("roles", "list", "--json").json()} == {
        (OPERATOR, "admin"), (me, "admin"), ("bob", "on-call")}
    assert cli("roles", "revoke", "bob", "on-call", "--json").json() == {"changed": True, "user": "bob",
                                                                        "role": "on-call"}
    bad = cli("roles", "grant", "bob", "overlord")
    assert bad.code == 2 and "unknown role 'overlord'" in bad.err
    assert cli("roles", "revoke", OPERATOR, "admin").code == 0
    last = cli("roles", "revoke", me, "admin")
    assert last.code != 0 and "last admin" in last.err


# --- db backup, prune, migrate ----------------------------------------------------------------


def test_db_backup(gov, cli, store, tmp_path):
    target = tmp_path / "backup.db"
    result = cli("db", "backup", str(target))
    if store.dialect == "postgresql":
        assert result.code != 0 and result.out == ""
        assert "pg_dump" in result.err and "pg_restore" in result.err
        assert not target.exists()
        return
    assert result.code == 0 and "bytes" in result.out
    assert target.exists()
    again = cli("db", "backup", str(target))
    assert again.code != 0 and "exists already" in again.err


def test_db_prune(gov, cli, operator_role, ingest, ev, clock):
    ingest([ev.command("old", "succeeded", at=clock.now() - timedelta(days=120)), ev.command("new", "failed")])
    refused = cli("db", "prune")
    assert refused.code == 5
    operator_role("ops-lead")
    doc = cli("db", "prune", "--older-than", "90d", "--json").json()
    assert doc["removed"]["command_events"] == 1 and sum(doc["removed"].values()) == 1
    assert stored_commands(gov.store) == {("new", "failed")}
    text = cli("db", "prune", "--older-than", "90d").out
    assert "removed 0 rows older than 90 days" in text and "kept:" in text


def test_db_migrate_is_idempotent(gov, cli):
    from storage.migrate import head_revision

    first, second = cli("db", "migrate"), cli("db", "migrate")
    assert first.code == second.code == 0
    assert first.out == second.out == f"schema at revision {head_revision()}\n"
    assert cli("status", "--json").code == 0


def test_the_store_url_comes_from_the_config_file(gov, store_url, clock, monkeypatch, tmp_path):
    from console.cli import main

    config = Path(os.environ["GOVCON_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"database_url = {json.dumps(store_url)}\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["status", "--json"], clock=clock, out=out, err=err) == 0, err.getvalue()
    assert json.loads(out.getvalue())["phaseStartDate"] == "2026-05-04T12:00:00Z"

