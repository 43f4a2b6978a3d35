"""Readiness: seed 000's three checklists, decided from the store where data can decide them and by
named operators' attestations (with evidence, expiring) where it cannot.

score = points earned / points possible (80); ready = score >= 0.95 and no required item failing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Row

from engine.clock import Clock, isoformat
from engine.domain import next_phase
from engine.errors import NotInitialised
from engine.metrics import AutonomyMetrics, collect_in
from storage import breaker_repo, events_repo, proposals_repo, readiness_repo, state_repo
from storage.store import Store

READY_THRESHOLD = 0.95


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("%", " percent ").replace("+", " plus ")
                  .replace(">", " ").replace("<", " ")).strip("-")


@dataclass(frozen=True)
class ChecklistItem:
    name: str
    weight: int
    required: bool
    category: str
    decided_by: str = "attestation"  # or "data"

    @property
    def slug(self) -> str:
        return slugify(self.name)


def _items(category: str, rows: list[tuple[str, int, bool, str]]) -> list[ChecklistItem]:
    return [ChecklistItem(n, w, r, category, d) for n, w, r, d in rows]


D, A = "data", "attestation"
CHECKLISTS: dict[str, list[ChecklistItem]] = {
    "technical": _items("technical", [
        ("6+ months running at L3", 5, True, D),
        ("Command success rate >99.5%", 5, True, D),
        ("Command approval rate >80%", 3, False, D),
        ("Rollback rate <2%", 2, False, D),
        ("Eval coverage >90%", 5, True, D),
        ("Zero critical incidents from commands", 5, True, D),
        ("Circuit breakers implemented", 3, True, D),
        ("Real-time monitoring operational", 3, True, D),
        ("Kill switch tested", 2, True, D),
        ("Chaos engineering tests passing", 2, False, A),
    ]),
    "process": _items("process", [
        ("Incident response playbook complete", 5, True, A),
        ("Runbooks for autonomous actions", 3, True, A),
        ("Accountability framework documented", 2, True, A),
        ("Approval workflow defined", 5, True, A),
        ("Escalation paths established", 3, True, A),
        ("Rollback procedures tested", 2, True, A),
        ("Compliance requirements validated", 3, False, A),
        ("Audit trail comprehensive", 2, True, A),
    ]),
    "organizational": _items("organizational", [
        ("Team trained on monitoring", 5, True, A),
        ("On-call rotation established", 3, True, A),
        ("24/7 coverage available", 2, False, A),
        ("Leadership approval obtained", 5, True, A),
        ("Customer communication plan ready", 3, False, A),
        ("Design partner validation complete", 2, True, A),
    ]),
}
ALL_ITEMS: list[ChecklistItem] = [i for items in CHECKLISTS.values() for i in items]


def find_item(name_or_slug: str) -> ChecklistItem | None:
    key = name_or_slug.strip()
    for item in ALL_ITEMS:
        if key == item.name or key.lower() == item.slug or slugify(key) == item.slug:
            return item
    return None


@dataclass(frozen=True)
class ReadinessPolicy:
    lookback: timedelta = timedelta(days=30)
    months_at_l3: timedelta = timedelta(days=182)
    drill_valid_for: timedelta = timedelta(days=90)
    attestation_valid_for: timedelta = timedelta(days=90)


@dataclass(frozen=True)
class ItemResult:
    item: ChecklistItem
    status: bool
    details: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.item.name, "slug": self.item.slug, "weight": self.item.weight,
                "required": self.item.required, "status": self.status, "details": self.details,
                "decidedBy": self.item.decided_by}


@dataclass
class ReadinessReport:
    timestamp: datetime
    current_phase: str
    days_since_phase_start: int
    results: dict[str, list[ItemResult]]
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    next_actions: list[dict[str, Any]] = field(default_factory=list)

    def category_score(self, category: str) -> float:
        results = self.results[category]
        return sum(r.item.weight for r in results if r.status) / sum(r.item.weight for r in results)

    @property
    def points(self) -> tuple[int, int]:
        every = [r for rs in self.results.values() for r in rs]
        return sum(r.item.weight for r in every if r.status), sum(r.item.weight for r in every)

    @property
    def score(self) -> float:
        earned, possible = self.points
        return earned / possible

    @property
    def blockers(self) -> list[str]:
        return [r.item.name for rs in self.results.values() for r in rs if r.item.required and not r.status]

    @property
    def ready(self) -> bool:
        return self.score >= READY_THRESHOLD and not self.blockers

    @property
    def recommendation(self) -> str:
        return self.recommendations[0]["type"] if self.recommendations else "maintain"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "timestamp": isoformat(self.timestamp),
            "currentPhase": self.current_phase,
            "daysSincePhaseStart": self.days_since_phase_start,
            "overall": {"score": round(self.score, 4), "ready": self.ready, "blockers": self.blockers,
                        "points": self.points[0], "possible": self.points[1]},
        }
        for category, results in self.results.items():
            doc[category] = {"score": round(self.category_score(category), 4),
                             "items": [r.to_json() for r in results]}
        doc["recommendations"] = self.recommendations
        doc["nextActions"] = self.next_actions
        return doc


def _pct(x: float | None) -> str:
    return "unknown (no data)" if x is None else f"{x * 100:.2f}%"


class ReadinessAssessor:
    def __init__(self, store: Store, clock: Clock, policy: ReadinessPolicy | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy or ReadinessPolicy()

    def assess(self, *, record: bool = False) -> ReadinessReport:
        now = self.clock.now()
        with self.store.read() as conn:
            report = assess_in(conn, now, self.policy)
        if record:
            self.record(report)
        return report

    def record(self, report: ReadinessReport) -> None:
        with self.store.write(serialise=False) as conn:
            readiness_repo.add_assessment(
                conn, taken_at=report.timestamp, score=report.score, ready=report.ready,
                technical_score=report.category_score("technical"),
                process_score=report.category_score("process"),
                organizational_score=report.category_score("organizational"), data=report.to_json())


def assess_in(conn: Connection, now: datetime, policy: ReadinessPolicy) -> ReadinessReport:
    state = state_repo.get_state(conn)
    if state is None:
        raise NotInitialised()
    metrics = collect_in(conn, now - policy.lookback, now)
    facts = _Facts(conn, now, policy, state, metrics)
    attestations = readiness_repo.latest_attestations(conn)
    results: dict[str, list[ItemResult]] = {}
    for category, items in CHECKLISTS.items():
        results[category] = [
            facts.decide(item) if item.decided_by == "data" else _attested(item, attestations.get(item.slug), now)
            for item in items]
    report = ReadinessReport(now, state.current_phase, (now - state.phase_started_at).days, results)
    unresolved = breaker_repo.count_unresolved(conn)
    pending = proposals_repo.count_pending(conn)
    validating = state.validation_until if state.validation_until and state.validation_until > now else None
    report.recommendations = recommend(report, metrics, unresolved, pending, validation_until=validating)
    report.next_actions = next_actions(report)
    return report


def _attested(item: ChecklistItem, att: Row[Any] | None, now: datetime) -> ItemResult:
    if att is None:
        return ItemResult(item, False, f"not attested yet: `govcon attest {item.slug} --pass --evidence TEXT`")
    when = f"by {att.operator} on {att.at:%Y-%m-%d}"
    if att.expires_at <= now:
        return ItemResult(item, False, f"attestation {when} expired on {att.expires_at:%Y-%m-%d}; "
                                       f"attest again ({att.evidence})")
    verdict = "passed" if att.passed else "failed"
    return ItemResult(item, bool(att.passed),
                      f"{verdict} {when}, valid until {att.expires_at:%Y-%m-%d}: {att.evidence}")


def at_l3_since(conn: Connection, state: Row[Any]) -> datetime:
    """When governance last entered L3: its adoption, or the latest reversion after it. A reversion (manual
    or by a breaker) restarts the time at L3 (runbook: the phase start resets), so a revert is never
    followed at once by a proposal counting the days from before it."""
    entries = [row.started_at for row in state_repo.phase_history(conn) if row.phase == "L3"]
    return max([state.adopted_at, *entries])


class _Facts:
    """The data-decided items; each method returns (status, details)."""

    def __init__(self, conn: Connection, now: datetime, policy: ReadinessPolicy, state: Row[Any],
                 metrics: AutonomyMetrics) -> None:
        self.conn, self.now, self.policy, self.state, self.metrics = conn, now, policy, state, metrics
        self.rates = metrics.rates
        self.lookback_days = policy.lookback.days
        self.deciders: dict[str, Callable[[], tuple[bool, str]]] = {
            "6+ months running at L3": self.months_at_l3,
            "Command success rate >99.5%": lambda: self.rate("successRate", lambda r: r > 0.995, "> 99.5%"),
            "Command approval rate >80%": lambda: self.rate("approvalRate", lambda r: r > 0.80, "> 80%"),
            "Rollback rate <2%": lambda: self.rate("rollbackRate", lambda r: r < 0.02, "< 2%"),
            "Eval coverage >90%": self.eval_coverage,
            "Zero critical incidents from commands": self.critical_incidents,
            "Circuit breakers implemented": self.breakers,
            "Real-time monitoring operational": self.monitoring,
            "Kill switch tested": self.kill_switch_drill,
        }

    def decide(self, item: ChecklistItem) -> ItemResult:
        status, details = self.deciders[item.name]()
        return ItemResult(item, status, details)

    def months_at_l3(self) -> tuple[bool, str]:
        since = at_l3_since(self.conn, self.state)
        days = (self.now - since).days
        need = self.policy.months_at_l3.days
        return days >= need, (f"{days} days since entering L3 on {since:%Y-%m-%d} (needs {need})")

    def rate(self, name: str, ok: Callable[[float], bool], target: str) -> tuple[bool, str]:
        value = self.rates[name]
        n = self.metrics.commands.total
        if value is None:
            basis = {"successRate": "succeeded or failed", "approvalRate": "proposed",
                     "rollbackRate": "succeeded", "errorRate": ""}[name]
            return False, (f"{name} unknown: no {basis} commands to judge in the last "
                           f"{self.lookback_days} days").replace("no  commands", "no commands")
        return ok(value), (f"{name} {_pct(value)} over {n} commands in the last {self.lookback_days} days "
                           f"(needs {target})")

    def eval_coverage(self) -> tuple[bool, str]:
        row = events_repo.latest_eval_coverage(self.conn, self.now - self.policy.lookback, self.now)
        if row is None:
            return False, f"no eval coverage reported in the last {self.lookback_days} days"
        share = row.covered / row.total
        return share > 0.90, (f"{row.covered}/{row.total} = {_pct(share)} reported {row.at:%Y-%m-%d %H:%M} "
                              f"(needs > 90%)")

    def critical_incidents(self) -> tuple[bool, str]:
        n = self.metrics.incidents.get("criticalFromCommands", 0)
        return n == 0, (f"{n} critical incident{'' if n == 1 else 's'} naming a command in the last "
                        f"{self.lookback_days} days")

    def breakers(self) -> tuple[bool, str]:
        enabled = breaker_repo.list_rules(self.conn, enabled_only=True)
        shadow = [r.name for r in enabled if r.shadow]
        # a rule in shadow acts on nothing: it is no protection
        reverting = [r.name for r in enabled if r.action == "revert_to_l3" and not r.shadow]
        mode = self.state.breaker_mode
        ok = bool(reverting) and mode == "enforce"
        return ok, (f"{len(enabled)} rules enabled, {len(reverting)} reverting to L3, mode {mode}"
                    + (f", in shadow: {', '.join(shadow)}" if shadow else "")
                    + ("" if ok else " (needs an enabled, enforcing revert_to_l3 rule in enforce mode)"))

    def monitoring(self) -> tuple[bool, str]:
        lease = state_repo.get_lease(self.conn)
        if lease is None:
            return False, "no scheduler has ever held the leader lease: open `govcon` or run `govcon serve`"
        if lease.expires_at <= self.now:
            return False, f"scheduler leader {lease.holder} lost its lease at {lease.expires_at:%Y-%m-%d %H:%M:%S}"
        return True, f"scheduler leader {lease.holder}, lease renewed {lease.renewed_at:%H:%M:%S}"

    def kill_switch_drill(self) -> tuple[bool, str]:
        drill = state_repo.last_drill(self.conn)
        if drill is None:
            return False, "no kill-switch drill recorded: run `govcon kill-switch drill`"
        age = self.now - drill.at
        ok = age <= self.policy.drill_valid_for
        return ok, (f"last drill {drill.at:%Y-%m-%d} by {drill.operator}"
                    + ("" if ok else f", older than {self.policy.drill_valid_for.days} days"))


def recommend(report: ReadinessReport, metrics: AutonomyMetrics, unresolved_events: int,
              pending_proposals: int, *, validation_until: datetime | None = None) -> list[dict[str, Any]]:
    """The runbook's decision trees ("Should I rollback…", "Should I approve…"), in priority order."""
    recs: list[dict[str, Any]] = []
    phase = report.current_phase
    critical = metrics.incidents.get("criticalFromCommands", 0)
    success = metrics.rates["successRate"]
    score = report.score
    worrying = []
    if critical:
        worrying.append(f"{critical} critical incident{'' if critical == 1 else 's'} attributed to commands")
    if success is not None and success < 0.99:
        worrying.append(f"success rate {_pct(success)} is below 99%")
    if score < 0.80:
        worrying.append(f"readiness score {score:.0%} is below 80%")
    if worrying and phase != "L3":
        recs.append({"type": "rollback", "priority": "high", "rationale": "; ".join(worrying),
                     "actions": ["Revert to L3 (`govcon revert --reason ...`, console key L)",
                                 "Open a post-mortem and record the incident IDs"]})
    if unresolved_events:
        recs.append({"type": "investigate", "priority": "high",
                     "rationale": f"{unresolved_events} unresolved circuit-breaker events",
                     "actions": ["Review `govcon events list --unresolved` and resolve each with a note"]})
    if worrying and phase == "L3":
        recs.append({"type": "investigate", "priority": "high", "rationale": "; ".join(worrying),
                     "actions": ["Investigate the failing commands before any expansion"]})
    elif score < 0.90 and not worrying:
        recs.append({"type": "investigate", "priority": "medium",
                     "rationale": f"readiness score {score:.0%} is below 90%",
                     "actions": ["Address the blockers: " + ", ".join(report.blockers[:5])]})
    target = next_phase(phase)
    if report.ready and not unresolved_events and target and not recs and validation_until is not None:
        recs.append({"type": "maintain", "priority": "medium",
                     "rationale": f"the {phase} validation period runs until {validation_until:%Y-%m-%d}: "
                                  "no further expansion before it ends",
                     "actions": ["Review the validation period's metrics daily"]})
    if report.ready and not unresolved_events and target and not recs:
        recs.append({"type": "expand_scope", "priority": "high" if not pending_proposals else "medium",
                     "rationale": f"readiness {score:.0%} with no blockers and no unresolved events: "
                                  f"{phase} -> {target} may be proposed",
                     "actions": ["Run the governance cycle (`govcon cycle`, console key c)"
                                 if not pending_proposals else "Review the pending proposal"]})
    if not recs:
        why = ("readiness 90-95%: good, monitor trends" if 0.90 <= score < READY_THRESHOLD
               else "not ready yet: blockers remain" if report.blockers
               else f"at {phase}, the last phase" if target is None else "keep the current scope")
        recs.append({"type": "maintain", "priority": "low", "rationale": why,
                     "actions": ["Keep monitoring; re-assess next week"]})
    return recs


def next_actions(report: ReadinessReport) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    for results in report.results.values():
        for r in sorted(results, key=lambda r: (not r.item.required, -r.item.weight)):
            if r.status:
                continue
            if r.item.decided_by == "attestation":
                how = f"govcon attest {r.item.slug} --pass --evidence TEXT"
            elif r.item.name == "Kill switch tested":
                how = "govcon kill-switch drill"
            else:
                how = None
            actions.append({"item": r.item.name, "required": r.item.required, "points": r.item.weight,
                            "action": r.details, "command": how})
    actions.sort(key=lambda a: (not a["required"], -a["points"]))
    return actions
