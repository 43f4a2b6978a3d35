"""The HTTP API in-process (console.api.create_app over the real stores, through Starlette's TestClient):
every contract endpoint, auth refusals, validation errors, size limits, group-committed ingest,
coalesced breaker evaluation, the gate's budget and fail-closed answer, /metrics and the OpenAPI
document. tests/integration/test_api_e2e.py runs the real `govcon serve` with curl."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from console.api import create_app
from engine.clock import isoformat
from engine.governance import Governance
from engine.policies import Policy
from engine.tokens import TokenBook
from storage import state_repo, tables
from storage.store import Store
from tests.conftest import OPERATOR
from tests.integration.test_governance_cycle import make_ready

CONTRACT = {
    ("GET", "/health"), ("GET", "/api/governance/state"), ("POST", "/api/governance/run-cycle"),
    ("GET", "/api/governance/reports/latest"), ("GET", "/api/governance/proposals"),
    ("POST", "/api/governance/proposals/{proposal_id}/approve"),
    ("POST", "/api/governance/proposals/{proposal_id}/reject"), ("GET", "/api/readiness/score"),
    ("GET", "/api/readiness/current"), ("GET", "/api/metrics/latest"), ("GET", "/api/circuit-breaker/rules"),
    ("GET", "/api/circuit-breaker/rules/enabled"), ("PATCH", "/api/circuit-breaker/rules/{name}"),
    ("GET", "/api/circuit-breaker/events"), ("GET", "/api/circuit-breaker/events/unresolved"),
    ("POST", "/api/circuit-breaker/events/{event_id}/resolve"), ("POST", "/api/events"), ("POST", "/api/gate"),
    ("POST", "/api/governance/revert"), ("POST", "/api/kill-switch"), ("GET", "/metrics"),
}
STATUS_KEYS = {"currentPhase", "phaseStartDate", "commandWhitelist", "pausedCommandTypes", "killSwitch",
               "breakerMode", "unresolvedEvents", "readinessScore"}


class Api:
    """A TestClient on the app, plus tokens for operators of the gov fixture's store."""

    def __init__(self, client: TestClient, gov: Governance, tokens: TokenBook) -> None:
        self.client, self.gov, self.tokens = client, gov, tokens

    def auth(self, operator: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.tokens.create(OPERATOR, operator).secret}

    def __getattr__(self, name):  # get, post, patch … straight to the client
        return getattr(self.client, name)


def make_api(gov, **options):
    tokens = TokenBook(gov.store, gov.clock, cache_seconds=0)
    options.setdefault("require_auth_for_reads", False)
    app = create_app(gov, tokens=tokens, metrics_cache_seconds=0, evaluate_interval=0.005, **options)
    return Api(TestClient(app), gov, tokens)


@pytest.fixture
def api(gov):
    api = make_api(gov)
    with api.client:
        yield api


def cmd(i: int, status: str, at, *, ctype: str = "restart_service", prefix: str = "c") -> dict:
    return {"kind": "command", "id": f"{prefix}{i}", "type": ctype, "status": status, "autonomous": True,
            "at": isoformat(at)}


def stored_commands(store) -> set[tuple[str, str]]:
    t = tables.command_events
    with store.read() as conn:
        return set(conn.execute(sa.select(t.c.command_id, t.c.status)).all())


def wait_for(predicate, timeout: float = 30.0):  # the deadline bounds a failure only
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


# --- reads ------------------------------------------------------------------------------------


def test_health_names_the_service_its_store_and_leader(api):
    doc = api.get("/health").json()
    assert doc["status"] == "healthy" and doc["service"] == "governance"
    assert doc["store"] == {"backend": api.gov.store.dialect, "reachable": True, "writable": True}
    assert doc["phase"] == "L3" and doc["killSwitchEngaged"] is False and doc["version"]


def test_health_is_503_on_a_store_without_governance_state(store):
    with make_api(Governance(store)).client as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy" and "govcon db init" in response.json()["detail"]


def test_state_is_the_status_document(api):
    doc = api.get("/api/governance/state").json()
    assert STATUS_KEYS <= set(doc)
    assert doc["currentPhase"] == "L3" and doc["commandWhitelist"] == [] and doc["unresolvedEvents"] == 0
    assert doc == api.gov.status()


def test_readiness_score_and_report(api):
    score = api.get("/api/readiness/score").json()
    report = api.get("/api/readiness/current").json()
    assert score["score"] == report["overall"]["score"]
    assert set(score["categories"]) == {"technical", "process", "organizational"}
    assert report["overall"]["blockers"] == score["blockers"] and score["blockers"]
    assert {i["name"] for i in report["technical"]["items"]} >= {"Kill switch tested"}


def test_metrics_latest_takes_a_period(api, ev):
    api.gov.ingestor.ingest_objects(ev.lifecycle("c1", ["proposed", "approved", "succeeded"]))
    week = api.get("/api/metrics/latest").json()
    assert week["commands"]["succeeded"] == 1 and week["rates"]["successRate"] == 1.0
    assert api.get("/api/metrics/latest", params={"since": "30m"}).json()["commands"]["total"] == 0
    bad = api.get("/api/metrics/latest", params={"since": "5x"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("since:")


def test_rules_lists_and_enabled_only(api):
    rules = api.get("/api/circuit-breaker/rules").json()
    assert [r["name"] for r in rules] == ["High Error Rate", "Repeated Command Failures",
                                          "Critical Incident Detected", "High Rollback Rate"]
    assert {"name", "enabled", "condition", "window", "action", "alertSeverity", "minSamples"} <= set(rules[0])
    assert api.get("/api/circuit-breaker/rules/High%20Error%20Rate").json()["condition"] == "errorRate > 0.05"
    missing = api.get("/api/circuit-breaker/rules/High%20Eror%20Rate")
    assert missing.status_code == 404 and "did you mean 'High Error Rate'" in missing.json()["detail"]


def test_reports_latest_is_404_before_the_first_cycle(api):
    response = api.get("/api/governance/reports/latest")
    assert response.status_code == 404 and "run-cycle" in response.json()["detail"]


def test_reads_need_a_token_when_not_on_loopback(gov):
    api = make_api(gov, require_auth_for_reads=True)
    with api.client:
        refused = api.get("/api/governance/state")
        assert refused.status_code == 401 and "reads need a token" in refused.json()["detail"]
        assert api.get("/metrics").status_code == 401
        assert api.post("/api/gate", json={"commandType": "x"}).status_code == 401
        assert api.get("/api/governance/state", headers=api.auth("carol")).status_code == 200
        assert api.get("/health").status_code == 200  # probes carry no token


# --- auth on changes ----------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/governance/run-cycle", None),
    ("POST", "/api/kill-switch", {"action": "engage", "reason": "x"}),
    ("POST", "/api/governance/revert", {"reason": "x"}),
    ("PATCH", "/api/circuit-breaker/rules/High%20Error%20Rate", {"enabled": False}),
    ("POST", "/api/circuit-breaker/events/cbe-1/resolve", None),
    ("POST", "/api/governance/proposals/p-1/approve", {"approvedBy": "tech-lead"}),
    ("POST", "/api/events", {"kind": "safety", "type": "emergency_abort", "at": "2026-11-20T10:00:00Z"}),
])
def test_every_change_needs_a_valid_token(api, method, path, body):
    response = api.request(method, path, json=body)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["detail"]
    bad = api.request(method, path, json=body, headers={"Authorization": "Bearer gvc_not-a-token"})
    assert bad.status_code == 401 and "unknown or revoked" in bad.json()["detail"]
    assert [e["action"] for e in api.gov.audit_entries()] == ["store.init"]  # nothing changed


def test_a_revoked_token_stops_working(api):
    headers = api.auth("alice")
    token_id = api.tokens.list()[-1]["id"]
    assert api.post("/api/governance/run-cycle", headers=headers).status_code == 200
    api.tokens.revoke(OPERATOR, token_id)
    assert api.post("/api/governance/run-cycle", headers=headers).status_code == 401


def test_the_tokens_operator_is_the_actor_and_needs_the_role(api):
    api.gov.grant_role(OPERATOR, "dave", "on-call")
    refused = api.post("/api/kill-switch", json={"action": "engage", "reason": "drill"}, headers=api.auth("carol"))
    assert refused.status_code == 403
    assert "one of the roles on-call, incident-commander, ops-lead" in refused.json()["detail"]
    assert refused.json()["error"] == "forbidden"
    engaged = api.post("/api/kill-switch", json={"action": "engage", "reason": "agent loops"},
                       headers=api.auth("dave"))
    assert engaged.status_code == 200 and engaged.json()["killSwitch"]["by"] == "dave"
    # on a loaded machine the store may miss the safety deadline: the engage then holds by the marker file
    # and the scheduler's job records it (this same entry) once the store is back — done here by hand
    deadline = time.monotonic() + 30
    while (entry := api.gov.audit_entries(limit=1)[0])["action"] != "kill_switch.engage" \
            and time.monotonic() < deadline:
        api.gov.overrides.record_marker()
        time.sleep(0.05)
    assert (entry["actor"], entry["action"], entry["reason"]) == ("dave", "kill_switch.engage", "agent loops")
    assert api.post("/api/gate", json={"commandType": "restart_service"}).json()["decision"] == "deny"
    # dave (on-call) may engage but not release
    release = api.post("/api/kill-switch", json={"action": "release", "reason": "fixed"}, headers=api.auth("dave"))
    assert release.status_code == 403 and "incident-commander" in release.json()["detail"]


def test_revert_needs_a_reason_and_records_the_actor(api):
    with api.gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    api.gov.grant_role(OPERATOR, "dave", "on-call")
    headers = api.auth("dave")
    missing = api.post("/api/governance/revert", json={}, headers=headers)
    assert missing.status_code == 422 and "body.reason" in missing.json()["detail"]
    done = api.post("/api/governance/revert", json={"reason": "incident INC-7"}, headers=headers)
    assert done.status_code == 200 and done.json()["changed"] is True
    assert api.get("/api/governance/state").json()["currentPhase"] == "L3"
    assert api.gov.audit_entries(limit=1)[0]["actor"] == "dave"


# --- rules --------------------------------------------------------------------------------------


def test_patch_rule_as_the_runbook_does(api):
    headers = {**api.auth("alice"), "Content-Type": "application/json"}
    body = '{\n  "condition": "errorRate > 0.08",\n  "window": "10m",\n  "alertSeverity": "high"\n}'
    response = api.patch("/api/circuit-breaker/rules/High%20Error%20Rate", content=body, headers=headers)
    assert response.status_code == 200, response.text
    rule = response.json()
    assert (rule["condition"], rule["window"], rule["alertSeverity"]) == ("errorRate > 0.08", "10m", "high")
    entry = api.gov.audit_entries(limit=1)[0]
    assert entry["action"] == "rule.set" and entry["actor"] == OPERATOR
    assert entry["details"]["before"]["condition"] == "errorRate > 0.05"
    disabled = api.patch("/api/circuit-breaker/rules/High%20Rollback%20Rate", json={"enabled": False}, headers=headers)
    assert disabled.json()["enabled"] is False
    assert "High Rollback Rate" not in [r["name"] for r in api.get("/api/circuit-breaker/rules/enabled").json()]
    shadow = api.patch("/api/circuit-breaker/rules/High%20Error%20Rate", json={"shadow": True}, headers=headers)
    assert shadow.status_code == 200 and shadow.json()["shadow"] is True
    assert api.patch("/api/circuit-breaker/rules/High%20Error%20Rate", json={"shadow": "on"},
                     headers=headers).status_code == 422


@pytest.mark.parametrize("body,needle", [
    ({"condition": "errorRate >"}, "condition:"),
    ({"window": "0m"}, "window:"),
    ({"enabled": "false"}, "body.enabled"),
    ({"alertSeverity": "urgent"}, "body.alertSeverity"),
    ({"minSamples": 0}, "body.minSamples"),
    ({"name": "renamed"}, "body.name"),
    ({}, "nothing to change"),
])
def test_patch_rule_refuses_bad_fields_by_name(api, body, needle):
    response = api.patch("/api/circuit-breaker/rules/High%20Error%20Rate", json=body, headers=api.auth("alice"))
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]
    assert api.gov.rules.show("High Error Rate")["condition"] == "errorRate > 0.05"


# --- ingest -------------------------------------------------------------------------------------


def test_ingest_one_object_an_array_and_json_lines(api, ev):
    headers = api.auth("alice")
    one = api.post("/api/events", json=ev.command("c1", "proposed"), headers=headers)
    assert one.status_code == 200 and one.json() == {"accepted": 1, "duplicate": 0, "rejected": 0, "conflict": 0,
                                                     "errors": []}
    many = api.post("/api/events", json=[ev.command("c1", "proposed"), ev.command("c1", "approved")],
                    headers=headers)
    assert many.json() == {"accepted": 1, "duplicate": 1, "rejected": 0, "conflict": 0, "errors": []}
    lines = "\n".join(json.dumps(e) for e in [ev.command("c1", "succeeded"), ev.incident("i1", "low"), {}]) + "\n"
    jl = api.post("/api/events", content=lines, headers={**headers, "Content-Type": "application/x-ndjson"})
    assert jl.status_code == 422
    assert jl.json()["accepted"] == 2 and jl.json()["errors"] == [{"line": 3, "field": "kind", "message": "is missing"}]
    sniffed = api.post("/api/events", content=lines.replace('"i1"', '"i2"'), headers=headers)  # no JSON Lines type
    assert sniffed.json()["accepted"] == 1 and sniffed.json()["duplicate"] == 1
    assert stored_commands(api.gov.store) == {("c1", "proposed"), ("c1", "approved"), ("c1", "succeeded")}


def test_ingest_names_the_bad_item_and_field_and_stores_nothing_of_it(api, ev):
    bad = ev.command("c2", "exploded")
    response = api.post("/api/events", json=[ev.command("c1", "failed"), bad, ev.command("c3", "succeeded")],
                        headers=api.auth("alice"))
    assert response.status_code == 422
    doc = response.json()
    assert (doc["accepted"], doc["rejected"]) == (2, 1)
    assert doc["errors"][0]["line"] == 2 and doc["errors"][0]["field"] == "status"
    assert "item 2, field status" in doc["detail"] and "exploded" in doc["detail"]
    assert stored_commands(api.gov.store) == {("c1", "failed"), ("c3", "succeeded")}


@pytest.mark.parametrize("content,needle", [
    (b"", "empty body"), (b"   \n", "empty body"), (b"{not json", "not valid JSON"),
    (b"42", "JSON int"), (b'"event"', "JSON str"), (b"\xff\xfe{", "not valid JSON"),
])
def test_ingest_refuses_a_body_that_is_not_events(api, content, needle):
    response = api.post("/api/events", content=content, headers=api.auth("alice"))
    assert response.status_code == 400 and needle in response.json()["detail"]


def test_ingest_needs_an_operator_with_a_role(api, ev):
    refused = api.post("/api/events", json=ev.command("c1", "failed"), headers=api.auth("mallory"))
    assert refused.status_code == 403 and "ingesting events needs a role" in refused.json()["detail"]
    assert stored_commands(api.gov.store) == set()


def test_concurrent_single_event_requests_are_each_answered_for_themselves(api, ev):
    """Group commit: requests that share a transaction still get their own counts."""
    from concurrent.futures import ThreadPoolExecutor
    headers = api.auth("alice")

    def send(i: int):
        return api.post("/api/events", json=ev.command(f"k{i % 20}", "proposed"), headers=headers).json()
    with ThreadPoolExecutor(8) as pool:
        docs = list(pool.map(send, range(60)))
    assert sum(d["accepted"] for d in docs) == 20 and sum(d["duplicate"] for d in docs) == 40
    assert all(d["accepted"] + d["duplicate"] == 1 for d in docs)
    assert len(stored_commands(api.gov.store)) == 20


def test_a_request_larger_than_a_batch_is_stored_alone_in_batches(api, ev):
    api.gov.ingestor.batch_size = 5  # 12 events: more than a batch, so the Ingestor stores them batch by batch
    lines = ["{oops", ""] + [json.dumps(ev.command(f"b{i}", "proposed")) for i in range(11)]
    lines.insert(6, json.dumps(ev.command("b-bad", "nope")))
    response = api.post("/api/events", content="\n".join(lines) + "\n",
                        headers={**api.auth("alice"), "Content-Type": "application/x-ndjson"})
    doc = response.json()
    assert response.status_code == 422 and (doc["accepted"], doc["rejected"]) == (11, 2)
    assert [(e["line"], e["field"]) for e in doc["errors"]] == [(1, None), (7, "status")]
    assert "line 1: not valid JSON" in doc["detail"]
    assert len(stored_commands(api.gov.store)) == 11


def test_breakers_judge_events_ingested_over_http(api, clock):
    """Coalesced evaluation: the evaluator thread trips the rule shortly after the ingest is answered."""
    with api.gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=["restart_service"])
    at = clock.now() - timedelta(seconds=20)
    response = api.post("/api/events", json=[cmd(i, "failed" if i < 3 else "succeeded", at) for i in range(20)],
                        headers=api.auth("alice"))
    assert response.json()["accepted"] == 20
    tripped = wait_for(lambda: [e for e in api.get("/api/circuit-breaker/events/unresolved").json()
                                if e["ruleName"] == "High Error Rate"])
    assert tripped[0]["severity"] == "critical" and tripped[0]["action"] == "revert_to_l3"
    state = api.get("/api/governance/state").json()
    assert state["currentPhase"] == "L3" and state["commandWhitelist"] == []


def test_resolve_needs_a_note_and_the_role(api, clock):
    api.gov.ingestor.ingest_objects([cmd(i, "failed", clock.now() - timedelta(seconds=10), ctype="scale_pool")
                                     for i in range(10)])
    api.gov.breakers.evaluate()
    event = api.get("/api/circuit-breaker/events/unresolved").json()[0]
    path = f"/api/circuit-breaker/events/{event['id']}/resolve"
    note = {"note": "scale_pool quota raised"}
    assert api.post(path, json=note, headers=api.auth("carol")).status_code == 403
    api.gov.grant_role(OPERATOR, "dave", "on-call")
    headers = api.auth("dave")
    for body in (None, {}, {"note": None}, {"note": "  "}, {"falsePositive": True}):
        refused = api.post(path, headers=headers) if body is None else api.post(path, json=body, headers=headers)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"] == "invalid_input" and "note required" in refused.json()["detail"], body
    assert api.get("/api/circuit-breaker/events/unresolved").json()[0]["id"] == event["id"]  # still open
    resolved = api.post(path, json=note, headers=headers)
    assert resolved.status_code == 200, resolved.text
    doc = resolved.json()
    assert doc["resolved"] and doc["resolvedBy"] == "dave" and doc["note"] == "scale_pool quota raised"
    again = api.post(path, json={"note": "twice", "falsePositive": True}, headers=headers)
    assert again.status_code == 409 and "resolved already by dave" in again.json()["detail"]
    assert api.post("/api/circuit-breaker/events/cbe-nope/resolve", json=note, headers=headers).status_code == 404


# --- size limits ----------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_refused_with_413(gov, ev):
    api = make_api(gov, max_body_bytes=2_000, max_json_body_bytes=500)
    with api.client:
        headers = api.auth("alice")
        big = [ev.command(f"c{i}", "proposed") for i in range(40)]
        declared = api.post("/api/events", json=big, headers=headers)
        assert declared.status_code == 413
        assert declared.json()["error"] == "content_too_large" and "2,000 bytes" in declared.json()["detail"]

        def chunks():  # no Content-Length: counted as it streams
            for i in range(40):
                yield (json.dumps(ev.command(f"s{i}", "proposed")) + "\n").encode()
        streamed = api.post("/api/events", content=chunks(), headers=headers)
        assert streamed.status_code == 413 and "2,000 bytes" in streamed.json()["detail"]
        patch = api.patch("/api/circuit-breaker/rules/High%20Error%20Rate",
                          json={"condition": "errorRate > 0.05 " + "or errorRate > 1 " * 40}, headers=headers)
        assert patch.status_code == 413
        assert stored_commands(gov.store) == set()
        assert api.post("/api/events", json=big[:5], headers=headers).status_code == 200


# --- proposals --------------------------------------------------------------------------------------


def test_cycle_proposal_and_approval_as_a_role(gov, clock):
    make_ready(gov, clock)  # bob tech-lead, carol ops-lead, dave on-call
    api = make_api(gov)
    with api.client:
        report = api.post("/api/governance/run-cycle", headers=api.auth("alice")).json()
        assert report["recommendation"] == "expand_scope" and report["proposal"]
        assert api.get("/api/governance/reports/latest").json()["id"] == report["id"]
        proposal = api.get("/api/governance/proposals").json()[0]
        pid = proposal["proposalId"]
        assert proposal["status"] == "pending" and proposal["requiredApprovals"] == ["tech-lead"]
        assert api.get("/api/governance/proposals", params={"status": "approved"}).json() == []
        extend = f"/api/governance/proposals/{pid}/extend"
        assert api.post(extend, json={"days": 21, "reason": "x"}, headers=api.auth("dave")).status_code == 403
        assert api.post(extend, json={"days": 0, "reason": "x"}, headers=api.auth("bob")).status_code == 422
        assert api.post(extend, json={"days": "21", "reason": "x"}, headers=api.auth("bob")).status_code == 422
        longer = api.post(extend, json={"days": 21, "reason": "holiday freeze"}, headers=api.auth("bob"))
        assert longer.status_code == 200 and longer.json()["expansion"]["validationPeriod"] == 21
        path = f"/api/governance/proposals/{pid}/approve"
        not_held = api.post(path, json={"approvedBy": "tech-lead"}, headers=api.auth("carol"))
        assert not_held.status_code == 403 and "needs the role tech-lead" in not_held.json()["detail"]
        unknown = api.post(path, json={"approvedBy": "boss"}, headers=api.auth("bob"))
        assert unknown.status_code == 422 and "unknown role 'boss'" in unknown.json()["detail"]
        approved = api.post(path, json={"approvedBy": "tech-lead"}, headers=api.auth("bob"))
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        assert approved.json()["approvals"][0]["approver"] == "bob"
        assert api.get("/api/governance/state").json()["currentPhase"] == "L3+"
        assert api.post(path, json={"approvedBy": "tech-lead"}, headers=api.auth("bob")).status_code == 409
        assert api.post("/api/governance/proposals/nope/reject", json={"reason": "x"},
                        headers=api.auth("bob")).status_code == 404


# --- the gate ------------------------------------------------------------------------------------


def test_gate_answers_with_reason_and_remaining_budget(store, clock, ev):
    gov = Governance(store, clock, policies=[Policy("service_restart", ("restart_service",), max_per_day=2)])
    gov.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    api = make_api(gov)
    with api.client:
        at_l3 = api.post("/api/gate", json={"commandType": "restart_service"}).json()
        assert at_l3["decision"] == "needs_approval" and "L3" in at_l3["reason"] and at_l3["budget"] is None
        with gov.store.write() as conn:
            state_repo.update_state(conn, current_phase="L3+", command_whitelist=["restart_service"])
        allowed = api.post("/api/gate", json={"commandType": "restart_service", "confidence": 0.97,
                                              "actionClass": "service_restart"}).json()
        assert allowed["decision"] == "allow" and allowed["phase"] == "L3+"
        assert allowed["budget"] == {"day": {"used": 0, "limit": 2, "remaining": 2}}
        assert allowed["grantId"].startswith("gr-")  # the allow took one of the two
        gov.ingestor.ingest_objects([ev.command("a1", "succeeded")])  # a run reported without asking: the other
        spent = api.post("/api/gate", json={"commandType": "restart_service"}).json()
        assert spent["decision"] == "needs_approval" and "daily limit reached (2/2)" in spent["reason"]
        assert spent["budget"]["day"]["remaining"] == 0
        assert api.post("/api/gate", json={"commandType": "x", "confidence": 1.5}).status_code == 422
        assert api.post("/api/gate", json={}).status_code == 422
        text = api.get("/metrics").text
        assert 'simcorp_governance_gate_decisions_total{decision="allow"} 1.0' in text
        assert 'simcorp_governance_gate_decisions_total{decision="needs_approval"} 2.0' in text


def test_store_unreachable_gate_denies_and_reads_are_503(tmp_path):
    unreachable = Store(str(tmp_path), apply_migrations=False)  # a directory is no SQLite file
    api = make_api(Governance(unreachable))
    with api.client:
        gate = api.post("/api/gate", json={"commandType": "restart_service"})
        assert gate.status_code == 200
        assert gate.json()["decision"] == "deny" and "failing closed" in gate.json()["reason"]
        state = api.get("/api/governance/state")
        assert state.status_code == 503 and state.json()["error"] == "store_unavailable"
        health = api.get("/health")
        assert health.status_code == 503 and health.json()["store"]["reachable"] is False
        ingest = api.post("/api/events", json={}, headers={"Authorization": "Bearer gvc_x"})
        assert ingest.status_code == 503 and "cannot read the store" in ingest.json()["detail"]
        assert "simcorp_governance_store_up 0.0" in api.get("/metrics").text
    unreachable.dispose()


# --- metrics and the OpenAPI document ----------------------------------------------------------------


def test_prometheus_metrics_cover_the_issue_list(api, ev, clock):
    headers = api.auth("alice")
    api.post("/api/events", json=[ev.command("c1", "proposed"), ev.command("c1", "bad")], headers=headers)
    api.post("/api/gate", json={"commandType": "restart_service"})
    text = api.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    p = "simcorp_governance_"
    for name in ("phase", "kill_switch_engaged", "unresolved_breaker_events", "breaker_trips", "readiness_score",
                 "command_rate", "commands", "gate_decisions", "ingest_events", "ingest_requests",
                 "ingest_request_duration_seconds", "gate_request_duration_seconds", "store_up"):
        assert p + name in families, name
    phase = {s.labels["phase"]: s.value for s in families[p + "phase"].samples}
    assert phase == {"L3": 1, "L3+": 0, "L4": 0, "L4+": 0, "L5": 0}
    events = {s.labels["result"]: s.value for s in families[p + "ingest_events"].samples if s.name.endswith("_total")}
    assert events == {"accepted": 1, "duplicate": 0, "rejected": 1}
    assert {s.labels["category"] for s in families[p + "readiness_score"].samples} == {
        "overall", "technical", "process", "organizational"}
    assert {s.labels["severity"] for s in families[p + "unresolved_breaker_events"].samples} == {
        "critical", "high", "medium", "low"}
    assert {s.labels["rule"] for s in families[p + "breaker_trips"].samples} >= {"High Error Rate"}
    assert {s.labels["status"]: s.value for s in families[p + "alert_outbox"].samples} == {
        "pending": 0, "sent": 0, "dead": 0, "dismissed": 0}
    assert {s.labels["rule"]: s.value for s in families[p + "breaker_rule_shadow"].samples}["High Error Rate"] == 0


def test_prometheus_counts_dead_lettered_alerts(api, clock):
    from storage import outbox_repo
    with api.gov.store.write() as conn:
        outbox_repo.insert_many(conn, [{"created_at": clock.now(), "sink": "pager", "severity": "critical",
                                        "kind": "trigger", "dedup_key": f"k-{i}", "payload": {},
                                        "next_attempt_at": clock.now()} for i in range(3)])
        outbox_repo.mark_dead(conn, outbox_repo.list_rows(conn)[0].id, attempts=1, error="HTTP 400")
    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics").text)}
    outbox = {s.labels["status"]: s.value for s in families["simcorp_governance_alert_outbox"].samples}
    assert outbox == {"pending": 2, "sent": 0, "dead": 1, "dismissed": 0}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_metrics_pass_promtool(api, tmp_path):
    text = api.get("/metrics").text
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_openapi_documents_every_contract_endpoint(api):
    doc = api.get("/openapi.json").json()
    served = {(method.upper(), path.replace("{name:path}", "{name}")) for path, ops in doc["paths"].items()
              for method in ops}
    assert CONTRACT <= served, CONTRACT - served
    ingest = doc["paths"]["/api/events"]["post"]
    assert set(ingest["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert ingest["security"] == [{"HTTPBearer": []}]
    approve = doc["paths"]["/api/governance/proposals/{proposal_id}/approve"]["post"]
    assert approve["security"] == [{"HTTPBearer": []}]
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    state = doc["paths"]["/api/governance/state"]["get"]
    assert state["security"] == [{}, {"HTTPBearer": []}]  # a token only off loopback
    assert "ErrorBody" in json.dumps(doc["paths"]["/api/kill-switch"]["post"]["responses"]["403"])


def test_docs_api_md_lists_every_contract_endpoint():
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    for method, path in CONTRACT:
        assert f"{method} {path}" in text or f"`{method} {path}`" in text, (method, path)


# --- schemathesis: generated requests against the OpenAPI document find no 5xx, and every answer is
# the one the document declares (its status, content type and schema), on a store with something behind
# every endpoint (tests/integration/api_seed.py) ---------------------------------------------------------

try:
    import schemathesis
    from hypothesis import HealthCheck, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
except ImportError:  # an optional test dependency (pyproject's test extras)
    schemathesis = None


if schemathesis is not None:
    @pytest.fixture
    def fuzzed_api(sqlite_url, clock):
        from tests.integration.api_seed import populate
        store = Store(sqlite_url)
        gov = Governance(store, clock)
        gov.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
        seeding = make_api(gov)
        with seeding.client:
            populate(seeding)
        yield make_api(gov)  # a fresh app (a lifespan closes its read cache); schemathesis runs its lifespan
        store.dispose()

    @pytest.fixture
    def api_schema(fuzzed_api):
        schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_api.client.app)
        schema.auth_header = fuzzed_api.auth(OPERATOR)
        return schema

    fuzzed = schemathesis.pytest.from_fixture("api_schema")

    @fuzzed.parametrize()
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def test_generated_requests_find_no_server_error(case, api_schema):
        case.call_and_validate(headers=api_schema.auth_header, checks=[
            not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance])


def test_a_tokens_last_use_is_recorded_at_most_once_a_minute(api):
    headers = api.auth("alice")

    def last_used():
        assert api.tokens.drain()
        return api.tokens.list()[-1]["lastUsedAt"]

    def post() -> None:
        assert api.post("/api/governance/run-cycle", headers=headers).status_code == 200

    assert last_used() is None
    audit_before = len(api.gov.audit_entries(limit=10_000))
    post()
    first = api.gov.clock.now()
    assert last_used() == isoformat(first)
    api.gov.clock.advance(timedelta(seconds=30))
    post()
    assert last_used() == isoformat(first)  # within the minute: no write per request
    api.gov.clock.advance(timedelta(seconds=45))
    post()
    assert last_used() == isoformat(api.gov.clock.now())
    entries = api.gov.audit_entries(limit=10_000)  # newest first
    added = entries[:len(entries) - audit_before]
    assert len(added) == 3 and {e["action"] for e in added} == {"cycle.run"}  # the uses: bookkeeping, not audited


def test_a_token_revoked_through_the_service_is_refused_at_once(gov):
    """The service's Auth had a TokenBook of its own, so a revocation through the service (RPC tokens.revoke,
    which empties the facade's book) was not seen for its cache's 5 s (30 s by the heartbeats). It shares the
    facade's book now."""
    token = gov.tokens.create(OPERATOR, OPERATOR)
    headers = {"Authorization": f"Bearer {token.secret}"}
    with TestClient(create_app(gov, require_auth_for_reads=False)) as client:
        assert client.post("/api/governance/run-cycle", headers=headers).status_code == 200  # now cached
        gov.tokens.revoke(OPERATOR, token.id)
        refused = client.post("/api/governance/run-cycle", headers=headers)
        assert refused.status_code == 401 and "unknown or revoked" in refused.text


def test_absurd_input_gets_a_422_or_an_error_frame_never_a_500(api):
    """Found by an adversarial review: a look-back reaching before the year 1 (OverflowError) and a JSON body
    nested deeper than the parser goes (RecursionError) answered 500."""
    r = api.get("/api/gate/decisions", params={"since": "99999999d"})
    assert r.status_code == 422 and "since: 99999999d is more than 36,500 days" in r.text
    deep = ('{"m":' * 50_000 + "1" + "}" * 50_000).encode()
    r = api.post("/api/rpc", content=deep, headers={**api.auth(OPERATOR), "Content-Type": "application/json"})
    assert r.status_code == 200 and b"the body must be one JSON request object" in r.content


def test_checking_a_token_never_waits_for_a_writer(gov, tmp_path):
    """SQLite makes a write wait for the writer holding the lock (up to its busy timeout): recording a
    token's use happens in a background thread, so the request is answered at once."""
    import sqlite3
    if gov.store.dialect != "sqlite":
        pytest.skip("the busy-writer wait is SQLite's")
    tokens = TokenBook(gov.store, gov.clock, cache_seconds=0)
    secret = tokens.create(OPERATOR, "alice").secret
    writer = sqlite3.connect(gov.store.url, timeout=0)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        started = time.monotonic()
        assert tokens.verify(secret) == "alice"
        assert time.monotonic() - started < 1.0
    finally:
        writer.rollback()
        writer.close()
    assert tokens.drain()
    assert tokens.list()[-1]["lastUsedAt"] == isoformat(gov.clock.now())


def test_the_state_read_works_after_the_app_is_started_again(gov):
    """The read cache's thread is stopped at shut-down; a second start (lifespan runs once per start)
    must make a new one, not answer 500 "cannot schedule new futures after shutdown"."""
    api = make_api(gov)
    for _ in range(2):
        with api.client:
            answer = api.get("/api/governance/state")
            assert answer.status_code == 200, answer.text
            assert answer.json()["currentPhase"] == "L3"
