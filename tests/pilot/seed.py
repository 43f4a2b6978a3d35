"""A deterministic console store: fixed clock, fixed ids, known events — for pilot and snapshot tests.

Everything goes through the real engine where its output is deterministic (init, roles, attestations,
ingest of seeded simulator history); breaker events, proposals and reports, whose engine ids are
random, are written with fixed ids through the storage repositories.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.clock import ManualClock
from engine.governance import Governance
from engine.readiness import CHECKLISTS
from engine.simulator import generate_history
from storage import breaker_repo, proposals_repo, readiness_repo, reports_repo, state_repo
from storage.store import Store

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
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
