"""Each breaker rule now: its state, what its condition reads over its window ending now, last trip.

Runs in a worker thread. It reuses the breakers' own window aggregation (engine.breakers.WindowData),
so the dashboard shows exactly the numbers the breakers judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from engine.breakers import CLOCK_SKEW, CompiledRule, WindowData, WindowScope, _counts_values
from engine.rule_language import NAMES, RuleError
from storage import breaker_repo

TRIPPED, FIRING, OK, TOO_FEW, DISABLED, INVALID = "TRIPPED", "FIRING", "ok", "too few", "disabled", "invalid"


@dataclass(frozen=True)
class RuleStatus:
    name: str
    state: str          # one of the constants above
    condition: str
    window: str
    action: str
    severity: str
    observed: str       # "errorRate 0.31% · n=298", scoped "(restart_service)" for commandType rules
    last_trip: datetime | None
    shadow_open: bool = False
    shadow: bool = False  # the rule itself is in shadow: it records what it would have done


def _show(name: str, value: Any) -> str:
    if name == "incident.severity":
        return "incidents " + (", ".join(value) if value else "none")
    short = name.split(".", 1)[-1] if name.startswith("commandType.") else name
    if value is None:
        return f"{short} –"
    if name in NAMES and NAMES[name].kind == "rate":
        return f"{short} {value * 100:.2f}%"
    return f"{short} {value:g}" if isinstance(value, float) else f"{short} {value}"


def _describe(rule: CompiledRule, scope: WindowScope, samples: int) -> str:
    parts = []
    for name in sorted(rule.condition.names):
        value = sorted(scope.severities()) if name == "incident.severity" else scope.value(name)
        parts.append(_show(name, value))
    parts.append(f"n={samples}")
    return " · ".join(parts)


def _judge_one(rule: CompiledRule, data: WindowData) -> tuple[bool, str, int]:
    """(holds, observed text, samples) for the whole window, or for the worst command type."""
    base = data.scope(rule.condition, rule.min_samples)
    if not rule.condition.uses_command_type():
        samples = data.commands().total
        return rule.condition.evaluate(base), _describe(rule, base, samples), samples
    best: tuple[bool, float, str, int] | None = None
    first = sorted(n for n in rule.condition.names if n.startswith("commandType."))[0]
    for ctype, counts in sorted(data.by_type().items()):
        scope = WindowScope({**base.values, **_counts_values("commandType.", counts, rule.min_samples)},
                            base.severities())
        holds = rule.condition.evaluate(scope)
        weight = scope.value(first) or 0
        if best is None or (holds, weight) > (best[0], best[1]):
            best = (holds, weight, f"{_describe(rule, scope, counts.total)} ({ctype})", counts.total)
    if best is None:
        return False, _describe(rule, base, 0) + " (no commands)", 0
    return best[0], best[2], best[3]


def rule_statuses(conn: Connection, now: datetime) -> list[RuleStatus]:
    stats = breaker_repo.rule_stats(conn)
    open_rules: dict[str, bool] = {}
    for row in breaker_repo.list_events(conn, unresolved_only=True):
        open_rules[row.rule_name] = open_rules.get(row.rule_name, True) and bool(row.shadow)
    windows: dict[Any, WindowData] = {}
    out = []
    for row in breaker_repo.list_rules(conn):
        last = (stats.get(row.name) or {}).get("lastTrip")
        common = dict(name=row.name, condition=row.condition, window=row.window, action=row.action,
                      severity=row.alert_severity, last_trip=last, shadow=bool(row.shadow))
        if not row.enabled:
            out.append(RuleStatus(state=DISABLED, observed="", **common))
            continue
        try:
            rule = CompiledRule.from_row(row)
        except RuleError as exc:
            out.append(RuleStatus(state=INVALID, observed=str(exc), **common))
            continue
        data = windows.get(rule.window)
        if data is None:
            data = windows[rule.window] = WindowData(conn, now - rule.window, now + CLOCK_SKEW)
        holds, observed, samples = _judge_one(rule, data)
        uses_rates = bool(rule.condition.rate_names())
        if row.name in open_rules:
            state = TRIPPED
        elif holds:
            state = FIRING
        elif uses_rates and samples < rule.min_samples:
            state = TOO_FEW
        else:
            state = OK
        out.append(RuleStatus(state=state, observed=observed, shadow_open=open_rules.get(row.name, False),
                              **common))
    return out
