"""Breaker rule administration: validate before storing, audit with before and after, statistics."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from engine import access
from engine.clock import Clock, isoformat
from engine.domain import BREAKER_ACTIONS, SEVERITIES, BreakerAction
from engine.errors import Conflict, InvalidInput, NotFound
from engine.rule_language import RuleError, format_window, parse_condition, parse_window
from storage import audit, breaker_repo
from storage.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

RULE_FIELDS = ("condition", "window", "action", "alert_severity", "min_samples", "enabled", "shadow", "recovery",
               "cooldown", "probes")
RECOVERIES = ("half_open", "manual")  # how a type paused by the rule comes back (engine/recovery.py)
#: the HTTP API's camelCase spelling of the same fields
API_FIELDS = {"condition": "condition", "window": "window", "action": "action", "alertSeverity": "alert_severity",
              "minSamples": "min_samples", "enabled": "enabled", "shadow": "shadow", "recovery": "recovery",
              "cooldown": "cooldown", "probes": "probes"}


def validate_rule(fields: dict[str, Any]) -> dict[str, Any]:
    """Check a whole rule; returns it normalised, or raises InvalidInput naming the field."""
    out = dict(fields)
    name = (out.get("name") or "").strip()
    if not name or len(name) > 200:
        raise InvalidInput("rule name: must be 1 to 200 characters")
    out["name"] = name
    try:
        condition = parse_condition(out.get("condition") or "")
    except RuleError as exc:
        raise InvalidInput(f"condition: {exc}\n  {out.get('condition')}\n  {' ' * exc.position}^") from None
    try:
        window = parse_window(out.get("window") or "")
    except RuleError as exc:
        raise InvalidInput(f"window: {exc}") from None
    out["window"] = format_window(window)
    if out.get("action") not in BREAKER_ACTIONS:
        raise InvalidInput(f"action: {out.get('action')!r} is not one of {', '.join(BREAKER_ACTIONS)}")
    if out["action"] == BreakerAction.PAUSE_COMMAND_TYPE and not condition.uses_command_type():
        raise InvalidInput("action: pause_command_type needs a condition on commandType.* "
                           "(e.g. commandType.failures >= 3) so that it knows which type to pause")
    if out.get("alert_severity") not in SEVERITIES:
        raise InvalidInput(f"severity: {out.get('alert_severity')!r} is not one of {', '.join(SEVERITIES)}")
    samples = out.get("min_samples", 10)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 1_000_000:
        raise InvalidInput(f"min_samples: {samples!r} must be a whole number from 1 to 1000000")
    out["min_samples"] = samples
    for flag, default in (("enabled", True), ("shadow", False)):
        if not isinstance(out.get(flag, default), bool):
            raise InvalidInput(f"{flag}: must be true or false")
        out[flag] = out.get(flag, default)
    _validate_recovery(out)
    return out


def _validate_recovery(out: dict[str, Any]) -> None:
    """recovery, cooldown and probes (of a pause_command_type rule; stored, unused, on the others)."""
    where = f"rule {out['name']!r}"
    recovery = out.get("recovery") or "half_open"
    if recovery not in RECOVERIES:
        raise InvalidInput(f"{where}: recovery {recovery!r} is not one of {', '.join(RECOVERIES)}")
    out["recovery"] = recovery
    cooldown = out.get("cooldown")
    if cooldown is not None and cooldown != "":
        text = str(cooldown).strip()
        if text.startswith("-"):
            raise InvalidInput(f"{where}: cooldown {cooldown!r} is negative; give a duration such as 30m or 1h")
        try:
            out["cooldown"] = format_window(parse_window(text))
        except RuleError as exc:
            raise InvalidInput(f"{where}: cooldown: {exc}") from None
        if recovery == "manual":
            raise InvalidInput(f"{where}: a cooldown re-opens a paused type by itself, which recovery = manual "
                               "forbids; drop the cooldown or use recovery half_open")
    else:
        out["cooldown"] = None
    probes = out.get("probes", 3)
    if probes is None:
        probes = 3
    if isinstance(probes, bool) or not isinstance(probes, int) or not 1 <= probes <= 1000:
        raise InvalidInput(f"{where}: probes {probes!r} must be a whole number from 1 to 1000 (the succeeded "
                           "probes that close a half-open type)")
    out["probes"] = probes


def rule_json(row: Row, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    s = stats or {}
    trips, fps, resolved = s.get("trips", 0), s.get("falsePositives", 0), s.get("resolved", 0)
    return {
        "name": row.name, "enabled": bool(row.enabled), "condition": row.condition, "window": row.window,
        "action": row.action, "alertSeverity": row.alert_severity, "minSamples": row.min_samples,
        "shadow": bool(row.shadow), "recovery": row.recovery, "cooldown": row.cooldown, "probes": row.probes,
        "statistics": {"trips": trips, "resolved": resolved, "falsePositives": fps,
                       "falsePositiveRate": (fps / trips) if trips else None,
                       "shadowTrips": s.get("shadowTrips", 0),
                       "lastTrip": isoformat(s["lastTrip"]) if s.get("lastTrip") else None},
    }


class RuleBook:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def list(self, *, enabled_only: bool = False) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            stats = breaker_repo.rule_stats(conn)
            return [rule_json(r, stats.get(r.name)) for r in breaker_repo.list_rules(conn, enabled_only=enabled_only)]

    def show(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            return rule_json(_rule(conn, name), breaker_repo.rule_stats(conn).get(name))

    def add(self, actor: str, fields: dict[str, Any]) -> dict[str, Any]:
        rule = validate_rule(fields)
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "rules.edit")
            if breaker_repo.get_rule(conn, rule["name"]) is not None:
                raise Conflict(f"a rule named {rule['name']!r} exists already: change it with `govcon rules set`")
            breaker_repo.insert_rule(conn, **{k: rule[k] for k in ("name", *RULE_FIELDS)}, created_at=now,
                                     updated_at=now)
            audit.append(conn, at=now, actor=actor, action="rule.add", target=rule["name"],
                         details={"after": {k: rule[k] for k in RULE_FIELDS}})
            return rule_json(_rule(conn, rule["name"]))

    def set(self, actor: str, name: str, changes: dict[str, Any], *, reason: str = "") -> dict[str, Any]:
        unknown = set(changes) - set(RULE_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown rule fields: {', '.join(sorted(unknown))}; "
                               f"changeable: {', '.join(RULE_FIELDS)}")
        if not changes:
            raise InvalidInput("nothing to change: give at least one of --condition, --window, --action, "
                               "--severity, --min-samples, --enable/--disable, --shadow/--enforce")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "rules.edit")
            row = _rule(conn, name)
            before = {k: getattr(row, k) for k in RULE_FIELDS}
            merged = validate_rule({"name": name, **before, **changes})
            after = {k: merged[k] for k in RULE_FIELDS}
            if after == before:
                return rule_json(row)
            breaker_repo.update_rule(conn, name, **after, updated_at=now)
            audit.append(conn, at=now, actor=actor, action="rule.set", target=name, reason=reason,
                         details={"before": before, "after": after})
            return rule_json(_rule(conn, name), breaker_repo.rule_stats(conn).get(name))


def _rule(conn: Connection, name: str) -> Row:
    row = breaker_repo.get_rule(conn, name)
    if row is None:
        raise NotFound(_no_rule(name, [r.name for r in breaker_repo.list_rules(conn)]))
    return row


def _no_rule(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; rules: {', '.join(names)}"
    return f"no rule named {name!r}{hint}"

