"""Each breaker rule now, as the console shows it: its state, what its condition reads over its window
ending now (the breakers' own ``assess``/``judge``, so the console shows exactly what the breakers judge),
its last trip, and — when its condition holds but no event is open — why no event is open.

The reasons follow BreakerEngine.evaluate step by step: an open event of the same scope holds the rule
back (dedupe); an event resolved inside the window means only what happened or arrived after the
resolution is judged (docs/runbook.md §4); a rule or store in shadow records its trips as shadow events;
otherwise the breaker trips at its next evaluation (the scheduler's tick, or the next ingest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from engine.breakers import Assessment, CompiledRule, assess, judge
from engine.clock import isoformat
from engine.rule_language import NAMES, RuleError
from storage import breaker_repo, state_repo

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
    reason: str = ""      # FIRING (or TRIPPED only in shadow): why no enforced event is open

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "condition": self.condition, "window": self.window,
                "action": self.action, "severity": self.severity, "observed": self.observed,
                "lastTrip": isoformat(self.last_trip) if self.last_trip else None,
                "shadowOpen": self.shadow_open, "shadow": self.shadow, "reason": self.reason}


def _show(name: str, value: Any) -> str:
    if name == "incident.severity":
        return "incidents " + (", ".join(value) if value else "none")
    short = name.split(".", 1)[-1] if name.startswith("commandType.") else name
    if value is None:
        return f"{short} –"
    if name in NAMES and NAMES[name].kind == "rate":
        return f"{short} {value * 100:.2f}%"
    return f"{short} {value:g}" if isinstance(value, float) else f"{short} {value}"


def describe(a: Assessment) -> str:
    parts = []
    for name in sorted(a.rule.condition.names):
        value = sorted(a.scope.severities()) if name == "incident.severity" else a.scope.value(name)
        parts.append(_show(name, value))
    parts.append(f"n={a.samples}")
    text = " · ".join(parts)
    return f"{text} ({a.command_type})" if a.command_type else text


def _shown(rule: CompiledRule, found: list[Assessment]) -> Assessment | None:
    """The scope shown for a rule: a holding one first, then the one reading most on its first name."""
    if not found:
        return None
    first = sorted(rule.condition.names)[0]
    return max(found, key=lambda a: (a.holds, a.scope.value(first) or 0 if not isinstance(
        a.scope.value(first), (list, tuple, frozenset)) else 0))


def _hm(at: datetime) -> str:
    return f"{at:%m-%d %H:%M}"


def why_no_event(conn: Connection, rule: CompiledRule, a: Assessment, now: datetime, *, store_shadow: bool,
                 open_now: dict, resolved: dict) -> str:
    """Why a rule whose condition holds for scope ``a`` has no enforced event open (see the module doc)."""
    key = (rule.name, a.command_type)
    scope = f" for {a.command_type}" if a.command_type else ""
    enforcing = not store_shadow and not rule.shadow
    held = open_now.get(key)
    if held is not None and (held or not enforcing):
        kind = "an event" if held else "a shadow event"
        return f"held back: {kind}{scope} is already open (one event per rule and scope)"
    at = resolved.get(key)
    if at is not None and at > now - rule.window:
        again = [v for v in judge(conn, [rule], now, since=at) if v.command_type == a.command_type]
        if not again:
            return (f"already resolved at {_hm(at)}: only what happens or arrives after the resolution is "
                    f"judged, so what came before it does not trip again (runbook §4)")
    if not enforcing:
        why = "the store is in shadow mode" if store_shadow else "the rule is in shadow"
        return f"shadow ({why}): a trip only records what it would have done; trips at the next evaluation"
    return "no event yet: trips at the breakers' next evaluation (next tick or ingest)"


def rule_statuses(conn: Connection, now: datetime) -> list[RuleStatus]:
    state = state_repo.get_state(conn)
    store_shadow = state is not None and state.breaker_mode == "shadow"
    stats = breaker_repo.rule_stats(conn)
    open_now = breaker_repo.open_scopes(conn)
    open_rules: dict[str, bool] = {}  # rule -> only shadow events open
    for (rule_name, _ctype), enforced in open_now.items():
        open_rules[rule_name] = open_rules.get(rule_name, True) and not enforced
    resolved: dict | None = None
    rows, compiled, out = breaker_repo.list_rules(conn), [], []
    for row in rows:
        if not row.enabled:
            continue
        try:
            compiled.append(CompiledRule.from_row(row))
        except RuleError:
            pass
    by_rule: dict[str, list[Assessment]] = {}
    for a in assess(conn, compiled, now):  # one pass: the rules sharing a window share its reads
        by_rule.setdefault(a.rule.name, []).append(a)
    rules = {r.name: r for r in compiled}
    for row in rows:
        last = (stats.get(row.name) or {}).get("lastTrip")
        common = dict(name=row.name, condition=row.condition, window=row.window, action=row.action,
                      severity=row.alert_severity, last_trip=last, shadow=bool(row.shadow))
        if not row.enabled:
            out.append(RuleStatus(state=DISABLED, observed="", **common))
            continue
        rule = rules.get(row.name)
        if rule is None:
            try:
                CompiledRule.from_row(row)
                message = "could not be compiled"
            except RuleError as exc:
                message = str(exc)
            out.append(RuleStatus(state=INVALID, observed=message, **common))
            continue
        found = by_rule.get(row.name, [])
        shown = _shown(rule, found)
        observed = describe(shown) if shown is not None else "n=0 (no commands)"
        holds = shown is not None and shown.holds
        samples = shown.samples if shown is not None else 0
        reason = ""
        if row.name in open_rules and not (holds and open_rules[row.name]):
            state_name = TRIPPED
        elif holds and shown is not None:
            state_name = FIRING
            if resolved is None:
                resolved = breaker_repo.last_resolutions(conn)
            reason = why_no_event(conn, rule, shown, now, store_shadow=store_shadow, open_now=open_now,
                                  resolved=resolved)
        elif rule.condition.rate_names() and samples < rule.min_samples:
            state_name = TOO_FEW
        else:
            state_name = OK
        out.append(RuleStatus(state=state_name, observed=observed, shadow_open=open_rules.get(row.name, False),
                              reason=reason, **common))
    return out
