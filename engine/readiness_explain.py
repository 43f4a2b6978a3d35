"""Why not ready: for each checklist item that earns no points now, what would earn it and when, and what
the score would be if it passed (issue 15 point 5).

``explain(report, facts, now)`` is pure: it takes the ReadinessReport (its JSON document, as
``govcon readiness --json`` prints it) and the counts behind the data-decided items (``ExplainFacts``,
read by ``load_facts`` in one read transaction), and computes:

- a time-based item: the date it passes if nothing trips (6+ months at L3: the day the time since
  entering L3 — adoption or the latest reversion — reaches the policy's span; zero critical incidents:
  the day the newest critical incident naming a command leaves the lookback window);
- a rate: exactly how many more commands it needs, in whole numbers from the current counts and the
  threshold (``success rate > 99.5%`` with s succeeded and f failed needs the least n with
  (s + n) / (s + n + f) > 0.995, i.e. n = floor(0.995 f / 0.005) + 1 - s), assuming no new failure;
- eval coverage: the covered count a report over the same number of evals needs;
- an attestation or a drill: the command to run;
- for each: the score if it passed (points + its weight over the points possible) and whether that alone
  would make the checklist ready; and items passing now with a known lapse date (an attestation's or
  a drill's expiry) within ``LAPSE_HORIZON``.

The headline says "checklist ready — N open events block expansion" when the checklist is ready but
unresolved breaker events stand in the way of a proposal, never a bare READY.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from engine.clock import isoformat
from engine.errors import NotInitialised
from engine.metrics import CommandCounts
from engine.readiness import READY_THRESHOLD, ReadinessPolicy, ReadinessReport, at_l3_since
from storage import breaker_repo, events_repo, readiness_repo, state_repo

if TYPE_CHECKING:
    from engine.governance import Governance

LAPSE_HORIZON = timedelta(days=30)
#: the thresholds of the rate items, exactly (engine/readiness.py decides them with these bounds)
SUCCESS = Fraction(995, 1000)   # successRate > 99.5%
APPROVAL = Fraction(80, 100)    # approvalRate > 80%
ROLLBACK = Fraction(2, 100)     # rollbackRate < 2%
COVERAGE = Fraction(90, 100)    # eval coverage > 90%


@dataclass(frozen=True)
class ExplainFacts:
    """The counts and times behind the data-decided items (what ReadinessReport's details only word)."""

    commands: CommandCounts                       # distinct commands per status over the lookback
    at_l3_since: datetime
    critical_from_commands: list[tuple[str, datetime]]  # (incident id, at) in the lookback, oldest first
    eval_coverage: tuple[int, int, datetime] | None     # the latest report in the lookback
    last_drill: datetime | None
    breaker_mode: str
    reverting_rules: list[tuple[str, bool, bool]]  # (name, enabled, shadow) of the revert_to_l3 rules
    open_events: int                               # unresolved, enforced breaker events
    attestation_expiry: dict[str, datetime] = field(default_factory=dict)  # slug -> expiry, passing ones
    policy: ReadinessPolicy = field(default_factory=ReadinessPolicy)


def load_facts(conn: Connection, now: datetime, policy: ReadinessPolicy | None = None) -> ExplainFacts:
    policy = policy or ReadinessPolicy()
    start = now - policy.lookback
    state = state_repo.get_state(conn)
    if state is None:
        raise NotInitialised()
    counts = CommandCounts.from_status_counts(events_repo.command_counts(conn, start, now))
    critical = [(r.incident_id, r.at) for r in events_repo.incidents_between(conn, start, now)
                if r.severity == "critical" and r.command_id is not None]
    cov = events_repo.latest_eval_coverage(conn, start, now)
    drill = state_repo.last_drill(conn)
    rules = [(r.name, bool(r.enabled), bool(r.shadow)) for r in breaker_repo.list_rules(conn)
             if r.action == "revert_to_l3"]
    expiry = {slug: a.expires_at for slug, a in readiness_repo.latest_attestations(conn).items()
              if a.passed and a.expires_at > now}
    return ExplainFacts(counts, at_l3_since(conn, state), critical,
                        None if cov is None else (cov.covered, cov.total, cov.at),
                        drill.at if drill is not None else None, state.breaker_mode, rules,
                        breaker_repo.count_unresolved(conn), expiry, policy)


# --- the arithmetic -------------------------------------------------------------------------------


def more_successes_for_success_rate(succeeded: int, failed: int, above: Fraction = SUCCESS) -> int:
    """The least n >= 0 with (succeeded + n) / (succeeded + n + failed) > ``above`` (no new failure):
    (s + n)(1 - p) > p f, i.e. s + n > p f / (1 - p)."""
    return max(0, math.floor(above * failed / (1 - above)) + 1 - succeeded)


def more_approvals_for_approval_rate(approved: int, proposed: int, above: Fraction = APPROVAL) -> int:
    """The least n >= 0 with (approved + n) / (proposed + n) > ``above``: n more commands proposed and
    approved. (a + n) > p (P + n), i.e. n > (p P - a) / (1 - p)."""
    return max(0, math.floor((above * proposed - approved) / (1 - above)) + 1)


def more_successes_for_rollback_rate(rolled_back: int, succeeded: int, below: Fraction = ROLLBACK) -> int:
    """The least n >= 0 with rolled_back / (succeeded + n) < ``below`` (no new rollback):
    s + n > r / q."""
    return max(0, math.floor(rolled_back / below) + 1 - succeeded)


def covered_needed(total: int, above: Fraction = COVERAGE) -> int:
    """The least covered count c with c / total > ``above`` (c = floor(p T) + 1, at most T)."""
    return min(total, math.floor(above * total) + 1)


# --- the explanation -------------------------------------------------------------------------------


def _day(when: datetime) -> str:
    return f"{when:%Y-%m-%d}"


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _earn(item: dict[str, Any], facts: ExplainFacts, now: datetime) -> dict[str, Any]:
    """What earns ``item``: {earn (one sentence), when (ISO or None), needs ({...} or None), command}."""
    name, slug = item["name"], item["slug"]
    c = facts.commands
    days = facts.policy.lookback.days
    out: dict[str, Any] = {"earn": "", "when": None, "needs": None, "command": None}
    if item["decidedBy"] == "attestation":
        out["command"] = f"govcon attest {slug} --pass --evidence TEXT"
        out["earn"] = (f"an attestation with evidence, today (admin, tech-lead or ops-lead; valid "
                       f"{facts.policy.attestation_valid_for.days} days)")
        out["when"] = isoformat(now)
        return out
    if name == "6+ months running at L3":
        need = facts.policy.months_at_l3.days
        on = facts.at_l3_since + timedelta(days=need)
        left = max(0, math.ceil((on - now).total_seconds() / 86400))
        out.update(when=isoformat(on), needs={"days": left},
                   earn=f"time: passes on {_day(on)} ({_plural(left, 'more day')}) if nothing reverts to L3 "
                        f"before (L3 since {_day(facts.at_l3_since)}; needs {need} days)")
    elif name == "Command success rate >99.5%":
        n = more_successes_for_success_rate(c.succeeded, c.failed)
        out.update(needs={"successfulCommands": n, "succeeded": c.succeeded, "failed": c.failed},
                   earn=f"{_plural(n, 'more successful command')} with no further failure "
                        f"(now {c.succeeded:,} succeeded, {c.failed:,} failed in {days} days; "
                        f"needs > 99.5%)")
    elif name == "Command approval rate >80%":
        n = more_approvals_for_approval_rate(c.approved, c.proposed)
        out.update(needs={"approvedCommands": n, "approved": c.approved, "proposed": c.proposed},
                   earn=f"{_plural(n, 'more proposed command')} approved, none rejected "
                        f"(now {c.approved:,} approved of {c.proposed:,} proposed in {days} days; needs > 80%)")
    elif name == "Rollback rate <2%":
        n = more_successes_for_rollback_rate(c.rolledBack, c.succeeded)
        out.update(needs={"successfulCommands": n, "rolledBack": c.rolledBack, "succeeded": c.succeeded},
                   earn=f"{_plural(n, 'more successful command')} with no further rollback "
                        f"(now {c.rolledBack:,} rolled back of {c.succeeded:,} succeeded in {days} days; "
                        "needs < 2%)")
    elif name == "Eval coverage >90%":
        if facts.eval_coverage is None:
            out["earn"] = (f"an eval coverage report above 90% (none in the last {days} days): "
                           '{"kind":"eval_coverage","covered":C,"total":T} with C/T > 0.9')
            out["command"] = "govcon ingest FILE"
        else:
            covered, total, at = facts.eval_coverage
            need = covered_needed(total)
            out.update(needs={"covered": need, "total": total, "reported": covered},
                       earn=f"a coverage report above 90%: with {total} evals, {need} covered "
                            f"({need - covered} more than the {covered} reported {_day(at)})")
            out["command"] = "govcon ingest FILE"
    elif name == "Zero critical incidents from commands":
        newest_id, newest_at = facts.critical_from_commands[-1]
        on = newest_at + facts.policy.lookback
        out.update(when=isoformat(on), needs={"incidents": len(facts.critical_from_commands)},
                   earn=f"time: passes on {_day(on)} if no new critical incident names a command "
                        f"(the newest, {newest_id} on {_day(newest_at)}, then leaves the {days}-day window)")
    elif name == "Circuit breakers implemented":
        enforcing = [n for n, enabled, shadow in facts.reverting_rules if enabled and not shadow]
        if facts.breaker_mode != "enforce":
            out["command"] = "govcon rules mode enforce --reason TEXT"
            out["earn"] = "breakers enforcing: the store is in shadow mode"
        if not enforcing:
            candidate = facts.reverting_rules[0][0] if facts.reverting_rules else None
            if candidate is None:
                out["command"] = 'govcon rules add NAME --condition "errorRate > 0.05" --window 5m ' \
                                 "--action revert_to_l3 --severity critical"
                out["earn"] = "an enabled, enforcing revert_to_l3 rule (there is none)"
            else:
                cmd = f"govcon rules set '{candidate}' --enable --enforce"
                out["command"] = cmd if out["command"] is None else out["command"] + f"; {cmd}"
                out["earn"] = (out["earn"] + "; " if out["earn"] else "") + \
                    "an enabled, enforcing revert_to_l3 rule"
        out["when"] = isoformat(now)
    elif name == "Real-time monitoring operational":
        out.update(when=isoformat(now), command="govcon serve (or govcon scheduler, or open govcon)",
                   earn="a scheduler holding the leader lease: the service, the headless scheduler or a console")
    elif name == "Kill switch tested":
        out.update(when=isoformat(now), command="govcon kill-switch drill",
                   earn="a kill-switch drill (engage, the gate refuses, release) in the last "
                        f"{facts.policy.drill_valid_for.days} days"
                        + (f"; the last was {_day(facts.last_drill)}" if facts.last_drill else ""))
    needs = out["needs"] or {}
    if needs.get("successfulCommands", needs.get("approvedCommands")) == 0:  # the report was read before
        out["earn"] = "the counts pass now: it passes at the next assessment (" + out["earn"].split("(", 1)[1]
    return out


def explain(report: ReadinessReport | dict[str, Any], facts: ExplainFacts, now: datetime) -> dict[str, Any]:
    doc = report.to_json() if isinstance(report, ReadinessReport) else report
    overall = doc["overall"]
    earned, possible = overall["points"], overall["possible"]
    blockers = set(overall["blockers"])
    items = [dict(i, category=cat) for cat in ("technical", "process", "organizational") for i in doc[cat]["items"]]
    missing = []
    for item in sorted((i for i in items if not i["status"]), key=lambda i: (not i["required"], -i["weight"])):
        score_if = (earned + item["weight"]) / possible
        ready_if = score_if >= READY_THRESHOLD and not (blockers - {item["name"]})
        missing.append({"name": item["name"], "slug": item["slug"], "category": item["category"],
                        "weight": item["weight"], "required": item["required"], "decidedBy": item["decidedBy"],
                        "now": item["details"], **_earn(item, facts, now),
                        "scoreIfPassed": round(score_if, 4), "readyIfPassed": ready_if})
    lapsing = []
    horizon = now + LAPSE_HORIZON
    for item in items:
        if not item["status"]:
            continue
        on = None
        if item["decidedBy"] == "attestation":
            on = facts.attestation_expiry.get(item["slug"])
            command = f"govcon attest {item['slug']} --pass --evidence TEXT"
        elif item["name"] == "Kill switch tested" and facts.last_drill is not None:
            on = facts.last_drill + facts.policy.drill_valid_for
            command = "govcon kill-switch drill"
        if on is not None and on <= horizon:
            lapsing.append({"name": item["name"], "on": isoformat(on), "command": command,
                            "scoreIfLapsed": round((earned - item["weight"]) / possible, 4)})
    lapsing.sort(key=lambda x: x["on"])
    score = earned / possible
    ready = bool(overall["ready"])
    need_points = max(0, math.ceil(READY_THRESHOLD * possible - 1e-9) - earned)
    if ready and facts.open_events:
        headline = (f"checklist ready — {_plural(facts.open_events, 'open event')} "
                    f"block{'s' if facts.open_events == 1 else ''} expansion")
    elif ready:
        headline = f"ready: {score:.1%} with no blockers and no open events"
    else:
        parts = [f"not ready: {score:.1%} of {possible} points (needs {READY_THRESHOLD:.0%})"]
        if blockers:
            parts.append(f"{_plural(len(blockers), 'required item')} failing")
        if need_points:
            parts.append(f"{_plural(need_points, 'more point')} needed")
        headline = " · ".join(parts)
    every = (earned + sum(m["weight"] for m in missing)) / possible
    return {"timestamp": isoformat(now), "score": round(score, 4), "points": earned, "possible": possible,
            "ready": ready, "openEvents": facts.open_events, "headline": headline,
            "pointsToReady": need_points, "missing": missing,
            "ifAllPassed": {"score": round(every, 4), "ready": every >= READY_THRESHOLD}, "lapsing": lapsing}


class ReadinessExplainer:
    """``explain()``: assess, read the facts, explain (the CLI and the API); the console explains the
    report it already has with ``explain_doc``."""

    def __init__(self, gov: Governance) -> None:
        self.gov = gov

    def facts(self) -> ExplainFacts:
        with self.gov.store.read() as conn:
            return load_facts(conn, self.gov.clock.now(), self.gov.readiness.policy)

    def explain_doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        return explain(doc, self.facts(), self.gov.clock.now())

    def explain(self) -> tuple[dict[str, Any], dict[str, Any]]:
        doc = self.gov.readiness.assess().to_json()
        return doc, self.explain_doc(doc)


__all__ = ["ExplainFacts", "ReadinessExplainer", "explain", "load_facts"]
