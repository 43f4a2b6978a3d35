"""Gate policies, alert sinks and routing live in the store (issue 13 pt 2), on both stores.

Every process on a store answers the same gate decision whatever its config file says; every alert enters
the outbox routed by the store's sinks (a kill switch engaged from a shell without sinks reaches a real HTTP
sink on 127.0.0.1, delivered by a scheduler whose own config has none); edits are audited with before and
after, secrets are never printed back, and `audit verify` names an edit made behind govcon's back. The CLI
runs through its real entry point (`python -m console`) where a process boundary is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from console.config import build_governance, load_config
from engine import audit_verify
from engine.alerts import KILL_SWITCH_DEDUP_KEY
from engine.errors import InvalidInput, NotFound, PermissionDenied
from storage import outbox_repo, state_repo, tables
from tests.conftest import OPERATOR
from tests.integration.test_alerts import servers  # noqa: F401  (a fixture: real HTTP sinks on 127.0.0.1)

SECRET_PATH = "/services/T0SECRETPATH/B0SECRETPATH/xoxSECRETTOKEN"
PD_KEY = "fedcba9876543210fedcba9876543210"


def whitelisted(gov, *types: str) -> None:
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=list(types))


def govcon(*argv: str, store_url: str, config: Path, stdin: str | None = None, timeout: float = 60):
    env = {**os.environ, "GOVCON_DATABASE_URL": store_url, "GOVCON_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "console", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout, input=stdin)


def audit_problems(store) -> list[str]:
    """What `audit verify` finds about policies and sinks (the tests' whitelist setup edits the state
    directly, which it names too)."""
    return [p for p in audit_verify.verify(store, key=None).problems if p.startswith(("policies:", "alert sinks:"))]


# --- editing: roles, audit, bad input ----------------------------------------------------------------


def test_policy_edits_are_audited_with_before_and_after_and_refused_without_the_role(gov, me):
    book = gov.policy_book
    with pytest.raises(PermissionDenied, match="needs one of the roles admin, ops-lead; .* holds no role"):
        book.set(me, "restarts", {"command_types": ["restart_service"], "max_per_day": 2})
    created = book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "max_per_day": 2})
    assert created["created"] and created["policy"]["maxPerDay"] == 2
    changed = book.set(OPERATOR, "restarts", {"max_per_day": 3, "min_interval": "5m"}, reason="more room")
    assert changed["changed"] and changed["policy"]["commandTypes"] == ["restart_service"]
    assert book.set(OPERATOR, "restarts", {"max_per_day": 3})["changed"] is False  # nothing to audit
    cleared = book.set(OPERATOR, "restarts", {"min_interval": None})
    assert cleared["policy"]["minInterval"] is None
    entries = [e for e in gov.audit_entries() if e["action"].startswith("policy.")]
    assert [(e["action"], e["details"]["before"], e["details"]["after"]) for e in reversed(entries)] == [
        ("policy.set", None, {"command_types": ["restart_service"], "max_per_day": 2}),
        ("policy.set", {"command_types": ["restart_service"], "max_per_day": 2},
         {"command_types": ["restart_service"], "max_per_day": 3, "min_interval": "5m"}),
        ("policy.set", {"command_types": ["restart_service"], "max_per_day": 3, "min_interval": "5m"},
         {"command_types": ["restart_service"], "max_per_day": 3}),
    ]
    assert entries[1]["reason"] == "more room"
    assert [p["name"] for p in book.list()] == ["restarts"]
    assert book.delete(OPERATOR, "restarts")["before"] == {"command_types": ["restart_service"], "max_per_day": 3}
    with pytest.raises(NotFound, match="no policy 'restarts'"):
        book.show("restarts")
    assert gov.audit_entries(limit=1)[0]["action"] == "policy.delete"
    assert audit_problems(gov.store) == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"max_per_day": 2}, "command_types is required for a new policy"),
    ({"command_types": ["x"], "max_per_day": -1}, r"\[policies.p\].max_per_day: must be a whole number >= 0"),
    ({"command_types": ["x"], "confidence_threshold": 1.5}, "confidence_threshold: must be a number from 0 to 1"),
    ({"command_types": ["x"], "maintenance_window": "2-5"}, "maintenance_window: '2-5' is not HH:MM-HH:MM"),
    ({"command_types": ["x"], "notification_level": "page"}, "notification_level: 'page' is not one of"),
    ({"command_types": ["x"], "grant_ttl": "0m"}, "grant_ttl"),
    ({"command_types": ["x"], "bogus": 1}, r"unknown keys bogus"),
])
def test_bad_policy_input_names_the_field_and_writes_nothing(gov, changes, message):
    seq = gov.audit_entries(limit=1)[0]["seq"]
    with pytest.raises(InvalidInput, match=message):
        gov.policy_book.set(OPERATOR, "p", changes)
    assert gov.policy_book.list() == [] and gov.audit_entries(limit=1)[0]["seq"] == seq


def test_bad_sink_input_names_the_field_and_keeps_the_old_sink(gov, servers):  # noqa: F811
    url = servers().url
    book = gov.sink_book
    book.set(OPERATOR, "hook", {"type": "webhook", "url": url})
    seq = gov.audit_entries(limit=1)[0]["seq"]
    for changes, message in (({"severities": ["loud"]}, "severities has 'loud'"),
                             ({"timeout": 0}, "timeout must be a number of seconds above 0"),
                             ({"url": "ftp://x"}, "url must be an http:// or https:// URL"),
                             ({"routing_key": "k"}, "routing_key is only for pagerduty sinks"),
                             ({"type": "pagerduty", "url": url}, "routing_key is required for a pagerduty sink")):
        with pytest.raises(InvalidInput, match=message):
            book.set(OPERATOR, "hook", changes)
    with pytest.raises(InvalidInput, match="kind is required"):
        book.set(OPERATOR, "new", {"url": url})
    assert [(s["name"], s["kind"], s["severities"]) for s in book.list()] == [
        ("hook", "webhook", ["critical", "high", "medium", "low"])]
    assert gov.audit_entries(limit=1)[0]["seq"] == seq


def test_a_reports_only_smtp_sink_is_stored_valid_and_a_sink_delivery_would_skip_is_refused(gov):
    """An smtp sink with no severities (its default: the weekly report only) reads back valid from the
    store; and what the store's reader would refuse at delivery is refused at save, not stored."""
    book = gov.sink_book
    saved = book.set(OPERATOR, "mail", {"type": "smtp", "url": "smtp://127.0.0.1:2525", "from": "govcon@example.com",
                                        "to": ["ops@example.com"]})
    assert "invalid" not in saved["sink"] and saved["sink"]["severities"] == [] and saved["sink"]["reports"]
    assert [s.name for s in gov.notifier.sinks] == ["mail"]  # delivery reads it back, not skipped
    seq = gov.audit_entries(limit=1)[0]["seq"]
    with pytest.raises(InvalidInput, match="severities must be a non-empty list"):
        book.set(OPERATOR, "mail", {"severities": []})
    assert gov.audit_entries(limit=1)[0]["seq"] == seq and book.show("mail")["severities"] == []


# --- every process answers the same ------------------------------------------------------------------


def test_two_facades_with_different_config_files_give_the_same_decision(gov, tmp_path, clock):
    whitelisted(gov, "restart_service")
    gov.policy_book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "confidence_threshold": 0.9})
    lax, none = tmp_path / "lax.toml", tmp_path / "none.toml"
    lax.write_text('[policies.restarts]\ncommand_types = ["restart_service"]\nconfidence_threshold = 0.1\n')
    none.write_text("[policies]\n")
    a = build_governance(gov.store, load_config(lax), clock)
    b = build_governance(gov.store, load_config(none), clock)
    answers = [g.gate.decide("restart_service", confidence=0.5, take_grant=False) for g in (a, b, gov)]
    assert {(d.decision, d.reason) for d in answers} == {
        ("needs_approval", "policy restarts: confidence 50% below threshold 90%")}
    # an edit through one facade reaches the others' cached policies at their next decision
    a.policy_book.set(OPERATOR, "restarts", {"confidence_threshold": 0.4})
    answers = [g.gate.decide("restart_service", confidence=0.5, take_grant=False) for g in (a, b, gov)]
    assert {d.decision for d in answers} == {"allow"}
    b.policy_book.set(OPERATOR, "restarts", {"requires_approval": True})
    assert {g.gate.decide("restart_service", confidence=0.5).decision for g in (a, b, gov)} == {"needs_approval"}


def test_two_processes_with_different_config_files_answer_the_same(gov, store_url, tmp_path):
    whitelisted(gov, "restart_service")
    gov.policy_book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "requires_approval": True})
    lax, bare = tmp_path / "lax.toml", tmp_path / "bare.toml"
    lax.write_text('[policies.restarts]\ncommand_types = ["restart_service"]\n')  # no limits at all
    bare.write_text("")  # no [policies]: seed 002's defaults, none of which covers restart_service
    answers = []
    for config in (lax, bare):
        run = govcon("gate", "restart_service", "--confidence", "0.99", "--json", store_url=store_url, config=config)
        assert run.returncode == 3, run.stderr  # needs_approval
        answers.append(json.loads(run.stdout))
    assert {(d["decision"], d["reason"]) for d in answers} == {
        ("needs_approval", "policy restarts: requires human approval for every action")}


def test_kill_switch_from_a_shell_without_sinks_reaches_the_stores_sink(gov, store_url, me, tmp_path,
                                                                         servers):  # noqa: F811
    server = servers()
    gov.sink_book.set(OPERATOR, "hook", {"type": "webhook", "url": server.url + SECRET_PATH})
    gov.grant_role(OPERATOR, me, "incident-commander")
    bare = tmp_path / "bare.toml"
    bare.write_text("")  # this shell's config knows no sink
    run = govcon("kill-switch", "engage", "--reason", "drill from a bare shell", store_url=store_url, config=bare)
    assert run.returncode == 0, run.stderr
    with gov.store.read() as conn:
        rows = outbox_repo.list_rows(conn, status="pending")
    assert [(r.sink, r.severity, r.dedup_key) for r in rows] == [("hook", "critical", KILL_SWITCH_DEDUP_KEY)]
    # a scheduler started by someone whose config has no sinks delivers it with the store's
    scheduler = subprocess.Popen([sys.executable, "-m", "console", "scheduler", "--run-for", "60"],
                                 env={**os.environ, "GOVCON_DATABASE_URL": store_url, "GOVCON_CONFIG": str(bare)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not server.delivered() and time.monotonic() < deadline and scheduler.poll() is None:
            server.arrived.wait(0.2)
    finally:
        scheduler.terminate()
        _out, err = scheduler.communicate(timeout=30)
    assert server.delivered_keys()[KILL_SWITCH_DEDUP_KEY] == 1, err
    with gov.store.read() as conn:
        assert outbox_repo.count(conn, status="dead") == 0
    assert "SECRET" not in err


def test_a_store_sink_routes_alerts_raised_by_a_facade_built_from_a_config_without_sinks(gov, tmp_path, clock,
                                                                                          servers):  # noqa: F811
    server = servers()
    gov.sink_book.set(OPERATOR, "pager", {"type": "webhook", "url": server.url, "severities": ["high"]})
    bare = tmp_path / "bare.toml"
    bare.write_text("")
    other = build_governance(gov.store, load_config(bare), clock)
    other.grant_role(OPERATOR, OPERATOR, "ops-lead")
    whitelisted(gov, "restart_service")
    other.overrides.revert(OPERATOR, "manual reversion")
    with gov.store.read() as conn:
        assert [r.sink for r in outbox_repo.list_rows(conn, status="pending")] == ["pager"]
    assert other.notifier.deliver_due().sent == 1 and len(server.delivered()) == 1
    gov.sink_book.delete(OPERATOR, "pager")  # deleted: the next alert is logged only
    whitelisted(gov, "restart_service")
    other.overrides.revert(OPERATOR, "again")
    with gov.store.read() as conn:
        assert outbox_repo.count(conn, status="pending") == 0


# --- secrets are never printed back ------------------------------------------------------------------


def test_secrets_are_never_printed_back_by_the_cli_the_api_or_the_audit(gov, store_url, me, tmp_path,
                                                                       servers):  # noqa: F811
    from tests.integration.test_api import make_api
    server = servers()
    gov.grant_role(OPERATOR, me, "ops-lead")
    bare = tmp_path / "bare.toml"
    bare.write_text("")
    made = govcon("alerts", "sinks", "set", "chat", "--kind", "slack", "--url", "-", "--severities", "critical",
                  store_url=store_url, config=bare, stdin=server.url + SECRET_PATH + "\n")
    assert made.returncode == 0, made.stderr
    assert "created alert sink chat" in made.stdout
    made = govcon("alerts", "sinks", "set", "pd", "--kind", "pagerduty", "--url",
                  "https://events.pagerduty.com/v2/enqueue", "--routing-key", "-", "--json",
                  store_url=store_url, config=bare, stdin=PD_KEY + "\n")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["sink"]["routingKey"] == "(set, masked)"
    outputs = [made.stdout]
    for argv in (("alerts", "sinks", "list"), ("alerts", "sinks", "list", "--json"), ("alerts", "sinks", "show", "chat"),
                 ("alerts", "sinks", "show", "pd", "--json"), ("audit", "list"), ("audit", "list", "--json")):
        run = govcon(*argv, store_url=store_url, config=bare)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout + run.stderr)
    listed = json.loads(outputs[2])
    assert {s["name"]: s["url"] for s in listed} == {"chat": f"http://127.0.0.1:{server.httpd.server_address[1]}/…",
                                                     "pd": "https://events.pagerduty.com/…"}
    api = make_api(gov)
    outputs += [api.get("/api/alerts/sinks").text, api.get("/api/alerts/sinks/pd").text,
                api.put("/api/alerts/sinks/chat", json={"severities": ["critical", "high"]},
                        headers=api.auth(me)).text]
    for text in outputs:
        assert "SECRET" not in text and PD_KEY not in text
    # the secret is kept across an edit that does not name it, and used for delivery
    gov.grant_role(OPERATOR, OPERATOR, "ops-lead")
    whitelisted(gov, "restart_service")
    gov.overrides.revert(OPERATOR, "route check")  # a high alert: chat takes it (critical, high after the PUT)
    with gov.store.read() as conn:
        pending = outbox_repo.list_rows(conn, status="pending")
    assert {r.sink for r in pending} >= {"chat"}
    for r in pending:
        assert "SECRET" not in json.dumps(r.payload) and PD_KEY not in json.dumps(r.payload)
    gov.notifier.deliver_due()
    assert len(server.delivered()) == 1


# --- audit verify names what was edited behind govcon's back -----------------------------------------


def test_audit_verify_names_unaudited_edits_of_policies_and_sinks(gov, servers):  # noqa: F811
    url = servers().url
    gov.policy_book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "max_per_day": 2})
    gov.sink_book.set(OPERATOR, "hook", {"type": "webhook", "url": url})
    gov.sink_book.set(OPERATOR, "chat", {"type": "slack", "url": url})
    assert audit_problems(gov.store) == []
    P, S = tables.gate_policies, tables.alert_sinks
    now = gov.clock.now()
    with gov.store.write() as conn:
        conn.execute(sa.update(P).where(P.c.name == "restarts")
                     .values(spec={"command_types": ["restart_service"], "max_per_day": 200}))
        conn.execute(sa.insert(P).values(name="sneaky", spec={"command_types": ["deploy"]}, created_at=now,
                                         created_by="mallory", updated_at=now, updated_by="mallory"))
        conn.execute(sa.update(S).where(S.c.name == "hook").values(secret={"url": "https://evil.example/collect"}))
        conn.execute(sa.delete(S).where(S.c.name == "chat"))
    problems = audit_problems(gov.store)
    assert any("policy 'restarts' has max_per_day = 200" in p and "changed without an audit entry" in p
               for p in problems), problems
    assert any("policy 'sneaky' is in the store, but no audit entry sets it" in p for p in problems)
    assert any("sink 'hook' has its URL or routing key (the secret's fingerprint differs)" in p for p in problems)
    assert any("set sink 'chat', but the store has no such sink: deleted without an audit entry" in p
               for p in problems)
    assert not any("collect" in p for p in problems)  # masked: the host shows, never the path


# --- seeding, importing, and the config file that no longer decides ----------------------------------


def test_db_init_seeds_policies_and_sinks_from_the_config_file_once(store_url, tmp_path, servers):  # noqa: F811
    url = servers().url
    config = tmp_path / "config.toml"
    config.write_text(f'[policies.restarts]\ncommand_types = ["restart_service"]\nmax_per_day = 4\n\n'
                      f'[[alerts.sinks]]\nname = "hook"\ntype = "webhook"\nurl = "{url}{SECRET_PATH}"\n')
    init = govcon("db", "init", store_url=store_url, config=config)
    assert init.returncode == 0, init.stderr
    assert "policies: 1 from the config file" in init.stdout and "alert sinks: 1" in init.stdout
    listed = json.loads(govcon("policies", "list", "--json", store_url=store_url, config=config).stdout)
    assert [(p["name"], p["maxPerDay"]) for p in listed] == [("restarts", 4)]
    sinks = json.loads(govcon("alerts", "sinks", "list", "--json", store_url=store_url, config=config).stdout)
    assert [s["name"] for s in sinks] == ["hook"]
    verify = govcon("audit", "verify", store_url=store_url, config=config)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the file changes later: it no longer decides, and every start says so, naming the file
    config.write_text('[policies.restarts]\ncommand_types = ["restart_service"]\nmax_per_day = 40\n')
    status = govcon("policies", "list", "--json", store_url=store_url, config=config)
    assert [p["maxPerDay"] for p in json.loads(status.stdout)] == [4]
    assert f"{config}: [policies] differs from the store's policies (not the same: restarts)" in status.stderr
    assert "[alerts] sinks" not in status.stderr  # the file has no sinks section: nothing to compare


def test_db_init_without_policies_in_the_config_seeds_seed_002s_defaults(store_url, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("")
    assert govcon("db", "init", store_url=store_url, config=config).returncode == 0
    listed = json.loads(govcon("policies", "list", "--json", store_url=store_url, config=config).stdout)
    assert [p["name"] for p in listed] == ["code_deployment", "pool_tuning", "service_restart"]


def test_a_store_from_before_keeps_its_config_policies_until_import_config(gov, cli, me, tmp_path, monkeypatch,
                                                                           clock):
    """A store migrated from before revision 0019 has no policies of its own: the config file's still decide
    (nothing is silently dropped), edits are refused until `db import-config`, and after it the store's do."""
    whitelisted(gov, "restart_service")
    gov.grant_role(OPERATOR, me, "ops-lead")
    with gov.store.write() as conn:
        conn.execute(sa.update(tables.governance_state).values(policies_version=0, sinks_version=0))
    config = tmp_path / "config.toml"
    config.write_text('[policies.restarts]\ncommand_types = ["restart_service"]\nrequires_approval = true\n')
    monkeypatch.setenv("GOVCON_CONFIG", str(config))
    legacy = build_governance(gov.store, load_config(config), clock)
    assert legacy.gate.decide("restart_service", take_grant=False).decision == "needs_approval"
    refused = cli("policies", "set", "restarts", "--max-per-day", "3")
    assert refused.code == 2 and "run `govcon db import-config` once" in refused.err
    imported = cli("db", "import-config")
    assert imported.code == 0, imported.err
    assert "policies: created restarts" in imported.out
    [entry] = [e for e in gov.audit_entries() if e["action"] == "policy.set"]
    assert entry["actor"] == me and entry["reason"] == f"imported from the config file {config}"
    config.write_text("")  # the file no longer matters
    after = build_governance(gov.store, load_config(config), clock)
    assert after.gate.decide("restart_service", take_grant=False).decision == "needs_approval"
    assert cli("policies", "set", "restarts", "--no-requires-approval").code == 0
    assert after.gate.decide("restart_service", take_grant=False).decision == "allow"
    assert audit_problems(gov.store) == []


def test_policies_cli_set_show_delete_through_the_entry_point(gov, store_url, me, tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text("")
    refused = govcon("policies", "set", "p", "--command-types", "a", store_url=store_url, config=bare)
    assert refused.returncode == 5 and "admin, ops-lead" in refused.stderr
    gov.grant_role(OPERATOR, me, "ops-lead")
    made = govcon("policies", "set", "p", "--command-types", "a,b", "--max-per-day", "3", "--max-per-week", "9",
                  "--min-interval", "5m", "--max-concurrent", "1", "--confidence", "0.8", "--maintenance-window",
                  "02:00-04:00", "--notification-level", "alert", "--rollback-mandatory", "--calibrated",
                  "--grant-ttl", "10m", "--json", store_url=store_url, config=bare)
    assert made.returncode == 0, made.stderr
    policy = json.loads(made.stdout)["policy"]
    assert (policy["commandTypes"], policy["maxPerDay"], policy["maxPerWeek"], policy["minInterval"],
            policy["maxConcurrent"], policy["confidenceThreshold"], policy["maintenanceWindow"],
            policy["maintenanceWindowRequired"], policy["notificationLevel"], policy["rollbackMandatory"],
            policy["calibrated"], policy["grantTtl"]) == (["a", "b"], 3, 9, "5m", 1, 0.8, "02:00-04:00 UTC", True,
                                                          "alert", True, True, "10m")
    bad = govcon("policies", "set", "p", "--max-per-week", "-2", store_url=store_url, config=bare)
    assert bad.returncode == 2 and "policy 'p': --max-per-week: must be a whole number >= 0" in bad.stderr
    bad = govcon("policies", "set", "p", "--max-per-day", "lots", store_url=store_url, config=bare)
    assert bad.returncode == 2 and "--max-per-day: 'lots' is not a whole number" in bad.stderr
    shown = govcon("policies", "show", "p", store_url=store_url, config=bare)
    assert shown.returncode == 0 and "policy p: 3/day, 9/week" in shown.stdout
    assert json.loads(govcon("policies", "show", "p", "--json", store_url=store_url, config=bare).stdout)[
        "maxPerDay"] == 3  # the bad edits wrote nothing
    gone = govcon("policies", "delete", "p", store_url=store_url, config=bare)
    assert gone.returncode == 0 and "deleted policy p" in gone.stdout
    missing = govcon("policies", "show", "p", store_url=store_url, config=bare)
    assert missing.returncode != 0 and "no policy 'p'" in missing.stderr


def test_policies_and_sinks_over_http(gov, me, servers):  # noqa: F811
    from tests.integration.test_api import make_api
    url = servers().url
    api = make_api(gov)
    gov.grant_role(OPERATOR, "erin", "on-call")
    body = {"commandTypes": ["restart_service"], "maxPerDay": 2, "confidenceThreshold": 0.9}
    assert api.put("/api/policies/restarts", json=body).status_code == 401
    refused = api.put("/api/policies/restarts", json=body, headers=api.auth("erin"))
    assert refused.status_code == 403 and "admin, ops-lead" in refused.json()["detail"]
    made = api.put("/api/policies/restarts", json={**body, "reason": "seed"}, headers=api.auth(OPERATOR))
    assert made.status_code == 200, made.text
    assert made.json()["created"] and made.json()["policy"]["maxPerDay"] == 2
    patched = api.patch("/api/policies/restarts", json={"maxPerDay": None, "minInterval": "10m"},
                        headers=api.auth(OPERATOR))
    assert patched.status_code == 200 and patched.json()["policy"]["maxPerDay"] is None
    assert patched.json()["policy"]["minInterval"] == "10m" and patched.json()["policy"]["confidenceThreshold"] == 0.9
    bad = api.patch("/api/policies/restarts", json={"minInterval": "0s"}, headers=api.auth(OPERATOR))
    assert bad.status_code == 422 and "minInterval" in bad.json()["detail"], bad.text
    bad = api.put("/api/policies/restarts", json={"maxPerDay": "two"}, headers=api.auth(OPERATOR))
    assert bad.status_code == 422 and "maxPerDay" in bad.json()["detail"]
    assert api.get("/api/policies/restarts").json()["minInterval"] == "10m"
    assert [p["name"] for p in api.get("/api/policies").json()] == ["restarts"]
    assert api.delete("/api/policies/restarts", headers=api.auth(OPERATOR)).status_code == 200
    assert api.get("/api/policies/restarts").status_code == 404

    sink = api.put("/api/alerts/sinks/hook", json={"kind": "webhook", "url": url + SECRET_PATH},
                   headers=api.auth(OPERATOR))
    assert sink.status_code == 200, sink.text
    assert "SECRET" not in sink.text and sink.json()["sink"]["url"].endswith("/…")
    bad = api.put("/api/alerts/sinks/hook", json={"timeout": 0}, headers=api.auth(OPERATOR))
    assert bad.status_code == 422 and "timeout" in bad.json()["detail"]
    bad = api.put("/api/alerts/sinks/pd", json={"kind": "pagerduty", "url": url}, headers=api.auth(OPERATOR))
    assert bad.status_code == 422 and "routingKey is required" in bad.json()["detail"]
    assert [s["name"] for s in api.get("/api/alerts/sinks").json()] == ["hook"]
    assert api.delete("/api/alerts/sinks/hook", headers=api.auth(OPERATOR)).status_code == 200
    assert api.get("/api/alerts/sinks").json() == []
    assert audit_problems(gov.store) == []


def test_gate_decision_pays_no_store_read_for_unchanged_policies(gov, monkeypatch):
    """The cache: after the first decision the policies are not read again until policies_version moves."""
    import engine.policies as policies_module
    whitelisted(gov, "restart_service")
    gov.policy_book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "max_per_day": 100})
    loads = []
    real = policies_module.load_stored
    monkeypatch.setattr(policies_module, "load_stored", lambda rows: loads.append(1) or real(rows))
    for _ in range(5):
        assert gov.gate.decide("restart_service", take_grant=False).decision == "allow"
    assert len(loads) == 1
    gov.policy_book.set(OPERATOR, "restarts", {"max_per_day": 0})
    assert gov.gate.decide("restart_service", take_grant=False).decision == "needs_approval"
    assert gov.gate.decide("restart_service", take_grant=False).decision == "needs_approval"
    assert len(loads) == 2


def test_a_policy_edited_into_nonsense_behind_govcons_back_fails_the_gate_closed(gov):
    whitelisted(gov, "restart_service")
    gov.policy_book.set(OPERATOR, "restarts", {"command_types": ["restart_service"], "max_per_day": 5})
    assert gov.gate.decide("restart_service", take_grant=False).decision == "allow"
    P = tables.gate_policies
    with gov.store.write() as conn:
        conn.execute(sa.update(P).values(spec={"command_types": ["restart_service"], "max_per_day": "lots"}))
        conn.execute(sa.update(tables.governance_state).values(
            policies_version=tables.governance_state.c.policies_version + 1))
    decision = gov.gate.decide("restart_service", take_grant=False)
    assert decision.decision == "deny" and "max_per_day: must be a whole number" in decision.reason
    [shown] = gov.policy_book.list()
    assert shown["invalid"].startswith("[policies.restarts].max_per_day")
