"""A store with something behind every endpoint of the HTTP API, made through the API itself: a cycle
with a proposal, a tripped and a resolved breaker event, dead-lettered alerts, gate decisions of every
kind, action requests decided both ways, agents with leases, calibration outcomes, stored policies and
sinks, the kill switch and a drill. tests/integration/test_api_schema.py checks every answer against the
OpenAPI document on it; test_api.py's schemathesis run starts from it."""

from __future__ import annotations

from datetime import timedelta

from engine.clock import isoformat
from storage import outbox_repo, state_repo
from tests.conftest import OPERATOR
from tests.integration.test_governance_cycle import make_ready

WHITELIST = ["restart_service", "rotate_logs", "clear_cache", "deploy"]


def _ok(response, *codes: int):
    assert response.status_code in (codes or (200,)), (response.request.url, response.status_code, response.text)
    return response.json() if response.headers.get("content-type", "").startswith("application/json") else None


def populate(api) -> dict[str, str]:
    """Fill ``api``'s store (an initialised one, OPERATOR admin) and call every route once; returns ids."""
    gov, clock = api.gov, api.gov.clock
    make_ready(gov, clock)
    for who, roles in {"alice": ("ops-lead", "on-call", "incident-commander", "tech-lead", "product-lead",
                                 "exec-sponsor"), "bot": ("agent",), "erin": ("ops-lead",)}.items():
        for role in roles:
            gov.grant_role(OPERATOR, who, role)
    admin, bot, erin, bob = api.auth(OPERATOR), api.auth("bot"), api.auth("erin"), api.auth("bob")
    bound = {"Authorization": "Bearer " + api.tokens.create(OPERATOR, "bot", agent="rollback-bot").secret}
    ids: dict[str, str] = {}

    # reads of a quiet store, then the governance cycle and its proposal
    for path in ("/health", "/api/governance/state", "/api/readiness/score", "/api/readiness/current",
                 "/api/metrics/latest", "/api/circuit-breaker/rules", "/api/circuit-breaker/rules/enabled",
                 "/api/circuit-breaker/rules/High%20Error%20Rate", "/api/mode", "/api/agents", "/api/alerts",
                 "/api/gate/decisions", "/api/actions", "/api/policies", "/api/alerts/sinks",
                 "/api/circuit-breaker/events", "/api/circuit-breaker/events/unresolved",
                 "/api/governance/proposals", "/metrics"):
        _ok(api.get(path))
    _ok(api.get("/api/governance/reports/latest"), 404)
    _ok(api.post("/api/governance/run-cycle", headers=admin))
    _ok(api.get("/api/governance/reports/latest"))
    proposals = _ok(api.get("/api/governance/proposals"))
    if proposals:
        pid = ids["proposal"] = proposals[0]["proposalId"]
        _ok(api.get(f"/api/governance/proposals/{pid}"))
        _ok(api.post(f"/api/governance/proposals/{pid}/extend", json={"days": 30, "reason": "more data"},
                     headers=admin), 200, 409, 422)
        _ok(api.post(f"/api/governance/proposals/{pid}/approve", json={"approvedBy": "tech-lead"}, headers=bob),
            200, 409)
        _ok(api.get(f"/api/governance/proposals/{pid}"))
        _ok(api.get("/api/governance/state"))  # in its validation period
    _ok(api.post("/api/governance/run-cycle", headers=admin))

    # at L4 with a whitelist: stored policies and sinks, then the gate's answers of every kind
    with gov.store.write() as conn:
        state_repo.update_state(conn, current_phase="L4", command_whitelist=WHITELIST)
    _ok(api.put("/api/policies/restarts", json={"commandTypes": ["restart_service"], "maxPerDay": 3,
                                                "minInterval": "1m", "notificationLevel": "alert",
                                                "reason": "seed"}, headers=admin))
    _ok(api.patch("/api/policies/restarts", json={"maxPerWeek": 10, "confidenceThreshold": 0.5}, headers=admin))
    _ok(api.put("/api/policies/deploys", json={"commandTypes": ["deploy"], "requiresApproval": True,
                                               "approverRoles": ["ops-lead"], "grantTtl": "15m"}, headers=admin))
    _ok(api.put("/api/policies/doomed", json={"commandTypes": ["doomed"]}, headers=admin))
    _ok(api.get("/api/policies/restarts"))
    _ok(api.delete("/api/policies/doomed", headers=admin))
    _ok(api.put("/api/alerts/sinks/pager", json={"kind": "pagerduty", "routingKey": "r" * 32, "url": "https://events.pagerduty.com/v2/enqueue",
                                                 "severities": ["critical"]}, headers=admin))
    _ok(api.put("/api/alerts/sinks/hook", json={"kind": "webhook", "url": "https://hooks.example.com/x/y",
                                                "timeout": 3}, headers=admin))
    _ok(api.put("/api/alerts/sinks/mail", json={"kind": "smtp", "url": "smtp://mail.example.com:25",
                                                "from": "govcon@example.com", "to": ["ops@example.com"], "severities": ["critical"],
                                                "reports": True}, headers=admin))
    _ok(api.put("/api/alerts/sinks/doomed", json={"kind": "slack", "url": "https://hooks.slack.com/x"},
                headers=admin))
    _ok(api.get("/api/alerts/sinks/pager"))
    _ok(api.delete("/api/alerts/sinks/doomed", headers=admin))

    _ok(api.post("/api/agents/rollback-bot/heartbeat", json={"ttl": 600}, headers=bound))
    _ok(api.post("/api/agents/bot/heartbeat", headers=bot))
    _ok(api.post("/api/gate", json={"commandType": "restart_service", "confidence": 0.9, "service": "api",
                                    "agent": "rollback-bot"}))
    allow = _ok(api.post("/api/gate", json={"commandType": "restart_service", "confidence": 0.95,
                                            "agent": "rollback-bot"}, headers=bound))
    _ok(api.post("/api/gate", json={"commandType": "restart_service", "confidence": 0.2, "agent": "rollback-bot"}))
    _ok(api.post("/api/gate", json={"commandType": "not_listed", "agent": "rollback-bot"}))
    _ok(api.post("/api/gate", json={"commandType": "rotate_logs", "agent": "ghost"}))
    _ok(api.post("/api/gate", json={"commandType": "rotate_logs", "agent": "rollback-bot", "actionClass": "read"}))
    queued = [_ok(api.post("/api/gate", json={"commandType": "deploy", "agent": "rollback-bot", "request": True,
                                              "confidence": 0.7}, headers=bound)) for _ in range(2)]
    if allow.get("grantId"):
        ids["grant"] = allow["grantId"]
        _ok(api.post("/api/events", json={"kind": "command", "id": allow["grantId"], "type": "restart_service",
                                          "status": "succeeded", "autonomous": True,
                                          "at": isoformat(clock.now())}, headers=bot))
        _ok(api.get(f"/api/actions/{allow['grantId']}"))
    requests = [q["requestId"] for q in queued if q.get("requestId")]
    if requests:
        ids["request"] = requests[0]
        _ok(api.get(f"/api/actions/{requests[0]}"))
        _ok(api.post(f"/api/actions/{requests[0]}/approve", json={"note": "checked"}, headers=erin))
        _ok(api.get(f"/api/actions/{requests[0]}"))
        _ok(api.post(f"/api/actions/{requests[1]}/reject", json={"reason": "not now"}, headers=erin))
    _ok(api.get("/api/actions", params={"status": "in_flight"}))
    _ok(api.get("/api/actions", params={"status": "pending"}))
    _ok(api.get("/api/gate/decisions", params={"since": "7d"}))
    _ok(api.get("/api/agents"))
    _ok(api.get("/api/agents/rollback-bot"))
    _ok(api.get("/api/agents/rollback-bot/calibration"))
    _ok(api.get("/api/agents/rollback-bot/calibration", params={"byType": False}))

    # ingest (stored, duplicate, rejected, conflicting), Alertmanager, then a breaker trip and its event
    now = clock.now()
    failures = [{"kind": "command", "id": f"f{i}", "type": "restart_service", "status": s, "autonomous": True,
                 "service": "api", "at": isoformat(now - timedelta(minutes=3, seconds=-i))}
                for i in range(12) for s in ("proposed", "failed")]
    _ok(api.post("/api/events", json=failures, headers=bot))
    _ok(api.post("/api/events", json=failures[:2], headers=bot))
    _ok(api.post("/api/events", json=[{"kind": "command", "id": "bad", "type": "x", "status": "exploded",
                                       "at": isoformat(now)}], headers=bot), 422)
    _ok(api.post("/api/events", json={**failures[1], "status": "succeeded"}, headers=bot), 200, 409)
    _ok(api.post("/api/events", json=[{"kind": "incident", "id": "inc-1", "severity": "high", "service": "api",
                                       "command_id": "f1", "at": isoformat(now)},
                                      {"kind": "safety", "type": "guardrail_violation", "at": isoformat(now)},
                                      {"kind": "eval_coverage", "covered": 9, "total": 10, "at": isoformat(now)}],
                 headers=bot), 200, 422)
    _ok(api.post("/api/integrations/alertmanager", json={
        "version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "Down", "severity": "page", "service": "api"},
             "annotations": {}, "startsAt": isoformat(now), "fingerprint": "abc123"},
            {"status": "resolved", "labels": {"alertname": "Old"}, "annotations": {},
             "startsAt": isoformat(now - timedelta(hours=1)), "fingerprint": "def456"}]}, headers=bot))
    _ok(api.post("/api/integrations/alertmanager", json={"version": "4", "status": "resolved", "alerts": []},
                 headers=bot))
    gov.breakers.evaluate()
    events = _ok(api.get("/api/circuit-breaker/events"))
    for event in events:
        _ok(api.get(f"/api/circuit-breaker/events/{event['id']}"))
    if events:
        ids["event"] = events[0]["id"]
        _ok(api.get("/api/circuit-breaker/events/unresolved"))
        _ok(api.post(f"/api/circuit-breaker/events/{events[-1]['id']}/resolve",
                     json={"note": "seeded", "falsePositive": True}, headers=admin))
        _ok(api.get(f"/api/circuit-breaker/events/{events[-1]['id']}"))
    _ok(api.patch("/api/circuit-breaker/rules/High%20Error%20Rate", json={"window": "10m", "shadow": False},
                  headers=admin))
    _ok(api.get("/api/circuit-breaker/rules"))

    # alerts: dead-lettered ones retried and dismissed
    with gov.store.write() as conn:
        outbox_repo.insert_many(conn, [{"created_at": now, "sink": "pager", "severity": "critical",
                                        "kind": "trigger", "dedup_key": f"seed-{i}", "payload": {"summary": "x"},
                                        "next_attempt_at": now} for i in range(3)])
        for row in [r for r in outbox_repo.list_rows(conn) if r.dedup_key.startswith("seed-")]:
            outbox_repo.mark_dead(conn, row.id, attempts=1, error="HTTP 400")
    dead = _ok(api.get("/api/alerts", params={"status": "dead"}))
    _ok(api.get("/api/alerts", params={"status": "all"}))
    if dead:
        _ok(api.post("/api/alerts/retry", json={"ids": [dead[0]["id"]]}, headers=admin))
    _ok(api.post("/api/alerts/dismiss", json={"dead": True, "reason": "seeded"}, headers=admin))

    # overrides: mode, revert, the kill switch and a drill
    _ok(api.post("/api/mode", json={"mode": "minimal", "reason": "seed"}, headers=admin))
    _ok(api.get("/api/mode"))
    _ok(api.post("/api/mode", json={"mode": "normal", "reason": "seed"}, headers=admin))
    _ok(api.post("/api/kill-switch", json={"action": "drill"}, headers=admin))
    _ok(api.post("/api/kill-switch", json={"action": "engage", "reason": "seed"}, headers=admin))
    _ok(api.post("/api/agents/rollback-bot/heartbeat", headers=bound))
    _ok(api.get("/health"))
    _ok(api.get("/api/governance/state"))
    _ok(api.post("/api/kill-switch", json={"action": "release", "reason": "seed"}, headers=admin))
    _ok(api.post("/api/governance/revert", json={"reason": "seed"}, headers=admin))
    _ok(api.post("/api/governance/run-cycle", headers=admin))
    for path in ("/api/governance/state", "/api/readiness/score", "/api/readiness/current", "/api/metrics/latest",
                 "/api/governance/reports/latest", "/api/governance/proposals"):
        _ok(api.get(path))
    _ok(api.post("/api/rpc", json={"m": "hello"}, headers=admin))
    return ids
