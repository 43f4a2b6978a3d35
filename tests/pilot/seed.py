"""A deterministic console store: fixed clock, fixed ids, known events — for pilot and snapshot tests.

Everything goes through the real engine where its output is deterministic (init, roles, attestations,
ingest of seeded simulator history); breaker events, proposals and reports, whose engine ids are
random, are written with fixed ids through the storage repositories.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.clock import ManualClock
from engine.governance import Governance
from engine.readiness import CHECKLISTS
from engine.simulator import generate_history
from storage import actions_repo, audit, breaker_repo, proposals_repo, readiness_repo, reports_repo, state_repo
from storage.store import Store

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
OPERATOR = "alice"
OPEN_EVENT = "cbe-000000000001"
RESOLVED_EVENT = "cbe-000000000002"
SHADOW_EVENT = "cbe-000000000003"
PENDING = "prop-0000000001"
REJECTED = "prop-0000000000"
REPORT = "rep-20261113-120000-0000"

ATTESTED = ("Incident response playbook complete", "Runbooks for autonomous actions",
            "Approval workflow defined", "Escalation paths established", "Team trained on monitoring",
            "On-call rotation established")


def seeded_gov(url: str, *, clock: ManualClock | None = None, trips: bool = True,
               proposal: bool = True, ready: bool = False) -> Governance:
    """``ready``: every checklist item attested as well, so readiness allows approving the proposal."""
    clock = clock or ManualClock(T0)
    store = Store(url)
    loader = Governance(store, clock, evaluate_on_ingest=False)
    loader.init_store(OPERATOR, phase_started=T0 - timedelta(days=200))
    for role in ("on-call", "tech-lead", "incident-commander"):
        loader.grant_role(OPERATOR, OPERATOR, role)
    loader.grant_role(OPERATOR, "bob", "tech-lead")
    loader.ingestor.ingest_objects(generate_history(T0 - timedelta(days=3), T0 - timedelta(minutes=1),
                                                    commands_per_hour=30, seed=7))
    attested = ATTESTED if not ready else \
        [i.name for items in CHECKLISTS.values() for i in items if i.decided_by == "attestation"]
    for name in attested:
        loader.attest(OPERATOR, name, passed=True, evidence=f"https://wiki.example/{name.split()[0].lower()}")
    with store.write() as conn:
        state_repo.record_drill(conn, at=T0 - timedelta(days=10), operator=OPERATOR, passed=True,
                                details="gate answered deny: kill switch engaged")
        state_repo.try_acquire_lease(conn, name="scheduler", holder="console:carol@ops-1:4242", now=T0,
                                     expires_at=T0 + timedelta(seconds=30))
        for week in range(10, 0, -1):
            score = 0.30 + 0.035 * (10 - week)
            readiness_repo.add_assessment(conn, taken_at=T0 - timedelta(days=7 * week), score=score,
                                          ready=False, technical_score=score, process_score=score,
                                          organizational_score=score, data={})
        if trips:
            _seed_events(conn)
        if proposal:
            _seed_proposals(conn)
        reports_repo.insert(conn, id=REPORT, created_at=T0 - timedelta(days=7), kind="weekly",
                            recommendation="investigate", data={}, markdown=REPORT_MARKDOWN)
    return Governance(store, clock)


def _seed_events(conn) -> None:
    breaker_repo.insert_event(
        conn, id=OPEN_EVENT, rule_name="Repeated Command Failures", timestamp=T0 - timedelta(minutes=3),
        severity="high", action="pause_command_type", command_type="restart_service", shadow=False,
        observed={"commandType.failed": 4, "samples": 12, "window": "5m",
                  "effect": "paused restart_service: the gate refuses it autonomy until the event is resolved"})
    state_repo.update_state(conn, paused_command_types=["restart_service"])
    audit.append(conn, at=T0 - timedelta(minutes=3), actor="circuit-breaker", action="breaker.trip",
                 target="Repeated Command Failures", reason="commandType.failed >= 3",
                 details={"event": OPEN_EVENT, "action": "pause_command_type", "commandType": "restart_service",
                          "mode": "enforce", "ruleShadow": False, "observed": {"commandType.failed": 4}})
    breaker_repo.insert_event(
        conn, id=RESOLVED_EVENT, rule_name="High Error Rate", timestamp=T0 - timedelta(days=1, minutes=10),
        severity="critical", action="revert_to_l3", command_type=None, shadow=False,
        observed={"errorRate": 0.0714, "samples": 42, "window": "5m", "effect": "already at L3 with an empty whitelist"},
        resolved=True, resolved_by=OPERATOR, resolved_at=T0 - timedelta(days=1), note="bad deploy rolled back",
        false_positive=False)
    breaker_repo.insert_event(
        conn, id=SHADOW_EVENT, rule_name="High Rollback Rate", timestamp=T0 - timedelta(days=2),
        severity="medium", action="alert_only", command_type=None, shadow=True,
        observed={"rollbackRate": 0.125, "samples": 16, "window": "15m", "effect": "none (shadow mode: would have alerted)"},
        resolved=True, resolved_by="bob", resolved_at=T0 - timedelta(days=2) + timedelta(hours=1),
        note="maintenance window", false_positive=True)


def _seed_proposals(conn) -> None:
    common = dict(current_phase="L3", target_phase="L3+", validation_period_days=14, required_approvals=["tech-lead"],
                  risk_assessment={"level": "low", "mitigations": ["circuit breakers enabled: High Error Rate",
                                                                   "14-day validation period with daily review"],
                                   "rollbackPlan": "console key L returns to L3 and clears the whitelist"})
    proposals_repo.insert(
        conn, id=REJECTED, created_at=T0 - timedelta(days=9), proposed_by="bob", commands_to_whitelist=["drain_node"],
        rationale={"keyAchievements": ["readiness 96% with no blockers"], "commandChoices": [
            {"commandType": "drain_node", "chosen": True, "reason": "25 human-approved executions"}]},
        status="rejected", expires_at=T0 - timedelta(days=2), decided_at=T0 - timedelta(days=8), decided_by=OPERATOR,
        reason="drain_node needs a runbook first", **common)
    proposals_repo.insert(
        conn, id=PENDING, created_at=T0 - timedelta(hours=1), proposed_by="bob",
        commands_to_whitelist=["clear_cache", "rotate_logs"],
        rationale={"keyAchievements": ["readiness 96% with no blockers",
                                       "success rate 99.80% over 2,160 commands in 30 days"],
                   "readiness": {"score": 0.96, "ready": True, "blockers": []},
                   "commandChoices": [
                       {"commandType": "clear_cache", "chosen": True,
                        "reason": "41 human-approved executions in 30 days, success rate 100.00%"},
                       {"commandType": "rotate_logs", "chosen": True,
                        "reason": "37 human-approved executions in 30 days, success rate 100.00%"},
                       {"commandType": "restart_service", "chosen": False, "reason": "paused by a circuit breaker"}]},
        status="pending", expires_at=T0 + timedelta(days=7) - timedelta(hours=1), **common)


REPORT_MARKDOWN = """# Governance report rep-20261113-120000-0000

*2026-11-13T12:00:00Z* · phase **L3** · recommendation **investigate**

## Metrics (last 7 days)

| metric | this week | change |
|---|---:|---:|
| total commands | 5,040 | +12 |
| successRate | 99.70% | +0.10 pp |

## Readiness

Overall **61.25%** (49/80 points) — not ready
"""


# --- governed actions (screen 8): fixed ids, times relative to T0 ---------------------------------

REQ_RESTART = "req-0000000000000001"   # pending, expires first
REQ_SCALE = "req-0000000000000002"     # pending
GRANT_FLYING = "gr-0000000000000001"   # in flight (from an approved request)
GRANT_DONE = "gr-0000000000000002"     # succeeded, with a `govcon run` report
GRANT_ROLLED = "gr-0000000000000003"   # rolled back, with a report
REQ_REJECTED = "req-0000000000000005"
REQ_EXPIRED = "req-0000000000000006"
L3_REASON = "phase L3: every command needs human approval"


def seed_actions(gov: Governance) -> None:
    """Two pending requests, one grant in flight, two finished grants with reports, one rejected and one
    expired request: what screen 8 shows, with fixed ids (the engine's are random)."""
    m = timedelta(minutes=1)

    def request(rid, ctype, service, agent, conf, at, status="pending", **kw):
        actions_repo.insert_request(conn, id=rid, command_type=ctype, service=service, agent=agent, confidence=conf,
                                    action_class=None, policy=None, reason=kw.pop("reason", L3_REASON),
                                    notification_level=kw.pop("level", "alert"),
                                    approver_roles=["on-call", "incident-commander", "ops-lead"],
                                    requested_by=kw.pop("by", agent), requested_at=at,
                                    expires_at=kw.pop("expires", at + 30 * m), status=status, **kw)

    def grant(gid, ctype, service, agent, conf, at, status, **kw):
        actions_repo.insert_grant(conn, id=gid, command_type=ctype, service=service, agent=agent, confidence=conf,
                                  action_class=None, policy=None, granted_at=at, expires_at=at + 15 * m,
                                  status=status, requested_by=agent, **kw)

    with gov.store.write() as conn:
        request(REQ_RESTART, "restart_service", "api", "rollback-bot", 0.93, T0 - 5 * m, by="bot-operator",
                reason="restart_service is paused by a circuit breaker until its event is resolved")
        request(REQ_SCALE, "scale_up", "web", "capacity-bot", 0.71, T0 - 2 * m, level="info")
        request("req-0000000000000003", "clear_cache", "cdn", "cache-bot", 0.98, T0 - 4 * m, status="approved",
                decided_by=OPERATOR, decided_at=T0 - 3 * m, grant_id=GRANT_FLYING)
        grant(GRANT_FLYING, "clear_cache", "cdn", "cache-bot", 0.98, T0 - 3 * m, "granted", approved_by=OPERATOR,
              request_id="req-0000000000000003")
        request("req-0000000000000004", "restart_service", "worker", "rollback-bot", 0.9, T0 - 42 * m,
                status="approved", decided_by=OPERATOR, decided_at=T0 - 40 * m, grant_id=GRANT_DONE,
                note="worker queue stuck, restart is the runbook step")
        grant(GRANT_DONE, "restart_service", "worker", "rollback-bot", 0.9, T0 - 40 * m, "succeeded",
              approved_by=OPERATOR, request_id="req-0000000000000004", outcome_at=T0 - 37 * m, report={
                  "outcome": "succeeded", "exitCode": 0, "steps": [
                      {"name": "check", "command": "curl -fsS http://worker:8080/health", "exitCode": 0,
                       "durationMs": 120},
                      {"name": "backup", "command": "worker-ctl snapshot", "exitCode": 0, "durationMs": 1480},
                      {"name": "command", "command": "systemctl restart worker", "exitCode": 0, "durationMs": 2310,
                       "outputTail": "stopping worker\nworker started (pid 4242)"},
                      {"name": "verify", "command": "curl -fsS http://worker:8080/health", "exitCode": 0,
                       "durationMs": 95}]})
        grant(GRANT_ROLLED, "rotate_logs", "db", "log-bot", 0.88, T0 - 2 * 60 * m, "rolled_back",
              approved_by="carol", outcome_at=T0 - 115 * m, report={
                  "outcome": "rolled_back", "exitCode": 6, "steps": [
                      {"name": "command", "command": "logrotate -f /etc/logrotate.d/db", "exitCode": 0,
                       "durationMs": 640},
                      {"name": "verify", "command": "pg_isready -h db", "exitCode": 2, "durationMs": 30012,
                       "outputTail": "db:5432 - no response"},
                      {"name": "rollback", "command": "db-ctl restore-logs", "exitCode": 0, "durationMs": 890}]})
        request(REQ_REJECTED, "drain_node", "node-7", "rollback-bot", 0.55, T0 - 25 * m, status="rejected",
                decided_by=OPERATOR, decided_at=T0 - 20 * m, note="not during the release freeze")
        request(REQ_EXPIRED, "scale_down", "web", "capacity-bot", 0.62, T0 - 95 * m, status="expired",
                decided_at=T0 - 65 * m, level="info")
