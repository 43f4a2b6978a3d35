"""A breaker event's drill-down: what made it trip, what it did, how it ended.

One answer, built here and only rendered by the console (Enter on an event), `govcon events show ID
[--json]` and `GET /api/circuit-breaker/events/{id}`:

- the event (DESIGN's breaker-event fields) and its rule (condition, window, min samples — as stored
  now; ``rule.changedSinceTrip`` says when the window it was judged over differs);
- ``window``: the span the breaker judged — the rule's window ending at the trip, or starting just after
  an earlier event of the same rule and scope was resolved inside it (the breaker then judges only what
  came after); only rows stored by the trip (``seenBy``) count: later evidence did not make it trip;
- ``commands``: the command events behind the condition (failed ones for an error or success rate,
  rolled-back ones for a rollback rate, the type's failures for commandType.*; those the incidents name
  for an incident rule), newest first, at most ``LIMIT``, with ``commandsMatching`` all of them and
  ``commandCounts`` the window's distinct commands per status;
- ``incidents`` (with the type of the command each names) and ``safety`` events in the window;
- ``series``: the rule's metric as the window filled up (the value over [window start, each step's end],
  so the last point is what the breaker judged), against its threshold; a rate under ``minSamples``
  commands is null (not judged), as the breaker has it;
- ``effect``: what the action did (reverted from which phase, paused which type and whether it still
  is, or nothing: shadow), and ``resolution`` (who, when, note, false positive) or null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Row

from engine.breakers import CLOCK_SKEW, event_json
from engine.clock import isoformat
from engine.domain import SAFETY_METRIC_TYPES
from engine.errors import NotFound
from engine.metrics import CommandCounts
from engine.rule_language import (
    NAMES,
    And,
    Compare,
    Condition,
    Literal,
    Name,
    Node,
    Not,
    Or,
    RuleError,
    format_window,
    parse_condition,
    parse_window,
)
from storage import breaker_repo, drilldown_repo, state_repo
from storage.events_repo import Window
from storage.store import Store

LIMIT = 50          # command events and incidents listed (the counts say how many there are)
POINTS = 30         # steps of the series: a sparkline of 30 cells fits beside its labels at 80 columns
SERIES_INCIDENTS = 1000  # incidents read for the series (a window rarely holds more than a few)
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}
_STATUS = {"rolledBack": "rolled_back"}


@dataclass(frozen=True)
class Metric:
    """The comparison a series is drawn for: ``name op threshold`` (for ``incident.severity == "x"``:
    incidents of severity x, at least 1)."""

    name: str
    op: str
    threshold: float
    severity: str | None = None

    @property
    def label(self) -> str:
        if self.severity is not None:
            return f'incidents with severity "{self.severity}"'
        return self.name

    @property
    def kind(self) -> str:
        return "count" if self.severity is not None else NAMES[self.name].kind

    def breached(self, value: float | None) -> bool:
        if value is None:
            return False
        return {">": value > self.threshold, ">=": value >= self.threshold, "<": value < self.threshold,
                "<=": value <= self.threshold, "==": value == self.threshold,
                "!=": value != self.threshold}[self.op]


def _comparisons(node: Node) -> Iterator[Compare]:
    if isinstance(node, Compare):
        yield node
    elif isinstance(node, Not):
        yield from _comparisons(node.operand)
    elif isinstance(node, (And, Or)):
        for operand in node.operands:
            yield from _comparisons(operand)


def metric_of(condition: Condition) -> Metric | None:
    """The first comparison of a name with a number (or of incident.severity with a string)."""
    for c in _comparisons(condition.ast):
        name, lit, op = (c.left, c.right, c.op) if isinstance(c.left, Name) else (c.right, c.left, _FLIP[c.op])
        if not isinstance(name, Name) or not isinstance(lit, Literal):
            continue
        if name.name == "incident.severity" and isinstance(lit.value, str) and op == "==":
            return Metric(name.name, ">=", 1, severity=lit.value)
        if isinstance(lit.value, (int, float)) and not isinstance(lit.value, bool) and name.name in NAMES:
            return Metric(name.name, op, float(lit.value))
    return None


def _statuses_for(names: frozenset[str]) -> tuple[tuple[str, ...] | None, bool]:
    """The command statuses behind a condition's names (None: every status), and whether it names any
    command figure at all."""
    statuses: set[str] = set()
    commands = False
    for full in names:
        base = full.split(".")[-1] if full.startswith(("commandType.", "autonomous.")) else full
        if "." in base or full.startswith(("incident", "safety.")):
            continue
        commands = True
        if base in ("failed", "errorRate", "successRate"):
            statuses.add("failed")
        elif base == "consecutiveFailures":
            statuses |= {"failed", "rolled_back"}
        elif base in ("rollbackRate", "rolledBack"):
            statuses.add("rolled_back")
        elif base in ("succeeded", "proposed", "approved", "rejected"):
            statuses.add(_STATUS.get(base, base))
        else:  # total, approvalRate: every status tells
            return None, True
    return (tuple(sorted(statuses)) if statuses else None), commands


def _command_json(r: Row) -> dict[str, Any]:
    return {"id": r.command_id, "type": r.command_type, "status": r.status, "at": isoformat(r.at),
            "autonomous": bool(r.autonomous), "service": r.service}


def _incident_json(r: Row, metric: Metric | None) -> dict[str, Any]:
    return {"id": r.incident_id, "severity": r.severity, "commandId": r.command_id, "service": r.service,
            "at": isoformat(r.at), "commandType": r.command_type,
            "autonomous": None if r.command_type is None else bool(r.autonomous),
            "matches": metric is not None and metric.severity is not None and r.severity == metric.severity}


class _Steps:
    def __init__(self, start: datetime, end: datetime) -> None:
        seconds = max((end - start).total_seconds(), 1.0)
        self.step = max(1, math.ceil(seconds / POINTS))
        self.count = min(POINTS, math.ceil(seconds / self.step))
        self.start = start

    def index(self, at: datetime) -> int:
        return min(max(int((at - self.start).total_seconds() // self.step), 0), self.count - 1)

    def end_of(self, i: int) -> datetime:
        return self.start + timedelta(seconds=self.step * (i + 1))


def _cumulative(per_step: list[float]) -> list[float | None]:
    out: list[float | None] = []
    total = 0.0
    for v in per_step:
        total += v
        out.append(total)
    return out


def _counted(rows: Sequence[Row], steps: _Steps, counts: Callable[[Row], bool]) -> list[float | None]:
    """The running count of the rows that ``counts``, per step."""
    per = [0.0] * steps.count
    for r in rows:
        if counts(r):
            per[steps.index(r.at)] += 1
    return _cumulative(per)


def _incident_counts(metric: Metric) -> Callable[[Row], bool]:
    if metric.severity is not None:
        severity = metric.severity
        return lambda r: bool(r.severity == severity)
    return {"incidents.total": lambda r: True,
            "incidents.critical": lambda r: bool(r.severity == "critical"),
            "incidents.fromAutonomousActions": lambda r: bool(r.autonomous) and r.command_type is not None,
            }[metric.name]


def _consecutive_failures(conn: Connection, w: Window, seen_by: datetime, steps: _Steps,
                          command_type: str | None) -> list[float | None]:
    values: list[float | None] = []
    run, i = 0, 0
    rows = drilldown_repo.outcome_sequence(conn, w, seen_by, command_type) if command_type else []
    for k in range(steps.count):
        while i < len(rows) and steps.index(rows[i].at) <= k:
            run = 0 if rows[i].status == "succeeded" else run + 1
            i += 1
        values.append(float(run))
    return values


def _command_series(conn: Connection, name: str, w: Window, seen_by: datetime, steps: _Steps,
                    command_type: str | None, min_samples: int) -> list[float | None]:
    scoped = command_type if name.startswith("commandType.") else None
    by_status, new = drilldown_repo.command_buckets(conn, w, seen_by, steps.step, command_type=scoped,
                                                    autonomous_only=name.startswith("autonomous."))
    per: dict[str, list[int]] = {}
    for b, status, n in by_status:
        per.setdefault(status, [0] * steps.count)[min(max(b, 0), steps.count - 1)] += n
    totals = [0] * steps.count
    for b, n in new:
        totals[min(max(b, 0), steps.count - 1)] += n
    base = name.split(".")[-1]
    running: dict[str, int] = {}
    total = 0
    values: list[float | None] = []
    for k in range(steps.count):
        for status, column in per.items():
            running[status] = running.get(status, 0) + column[k]
        total += totals[k]
        counts = CommandCounts.from_status_counts({**running, "total": total})
        if NAMES[name].kind == "rate":
            values.append(counts.rates()[base] if total >= min_samples else None)
        else:
            values.append(float(getattr(counts, base)))
    return values


def _series(conn: Connection, metric: Metric, w: Window, seen_by: datetime, steps: _Steps,
            command_type: str | None, min_samples: int, incidents: Sequence[Row],
            safety: Sequence[Row]) -> list[float | None]:
    name = metric.name
    if metric.severity is not None or name.startswith("incidents."):
        return _counted(incidents, steps, _incident_counts(metric))
    if name.startswith("safety."):
        kind = SAFETY_METRIC_TYPES[name]
        return _counted(safety, steps, lambda r: bool(r.type == kind))
    if name == "commandType.consecutiveFailures":
        return _consecutive_failures(conn, w, seen_by, steps, command_type)
    return _command_series(conn, name, w, seen_by, steps, command_type, min_samples)


def drilldown_in(conn: Connection, event_id: str) -> dict[str, Any]:
    row = breaker_repo.get_event(conn, event_id)
    if row is None:
        raise NotFound(f"no breaker event {event_id!r}; `govcon events list` shows their ids")
    doc = event_json(row)
    observed = row.observed or {}
    rule_row = breaker_repo.get_rule(conn, row.rule_name)
    condition = None
    if rule_row is not None:
        try:
            condition = parse_condition(rule_row.condition)
        except RuleError:
            condition = None
    try:
        window = parse_window(observed["window"]) if observed.get("window") else None
    except RuleError:
        window = None
    rule_window = parse_window(rule_row.window) if rule_row is not None else None
    window = window or rule_window or timedelta(minutes=5)
    min_samples = rule_row.min_samples if rule_row is not None else 10
    doc["rule"] = None if rule_row is None else {
        "name": rule_row.name, "condition": rule_row.condition, "window": rule_row.window,
        "minSamples": rule_row.min_samples, "enabled": bool(rule_row.enabled),
        "changedSinceTrip": rule_window is not None and rule_window != window}

    trip = row.timestamp
    start = trip - window
    after = drilldown_repo.previous_resolution(conn, row.id, row.rule_name, row.command_type, start, trip)
    if after is not None:
        start = after
    w = Window(start, trip + CLOCK_SKEW, trip,
               None if after is None else after + timedelta(microseconds=1))
    seen_by = trip + CLOCK_SKEW
    doc["window"] = {"start": isoformat(start), "end": isoformat(trip), "length": format_window(window),
                     "afterResolutionAt": isoformat(after), "seenBy": isoformat(seen_by)}

    metric = metric_of(condition) if condition is not None else None
    names = condition.names if condition is not None else frozenset()
    statuses, about_commands = _statuses_for(names)
    autonomous_only = any(n.startswith("autonomous.") for n in names)
    ctype = row.command_type if any(n.startswith("commandType.") for n in names) or row.command_type else None

    incident_rows, incident_total = drilldown_repo.incident_rows(conn, w, seen_by, limit=SERIES_INCIDENTS)
    safety_rows, safety_total = drilldown_repo.safety_rows(conn, w, seen_by, limit=LIMIT)
    doc["incidents"] = [_incident_json(r, metric) for r in incident_rows[:LIMIT]]
    doc["incidentsInWindow"] = incident_total
    doc["safety"] = [{"type": r.type, "at": isoformat(r.at)} for r in safety_rows]
    doc["safetyInWindow"] = safety_total

    if about_commands or not incident_rows:
        commands, matching = drilldown_repo.command_rows(conn, w, seen_by, command_type=ctype,
                                                         autonomous_only=autonomous_only, statuses=statuses,
                                                         limit=LIMIT)
        doc["commandsAre"] = {"statuses": list(statuses) if statuses else None, "commandType": ctype,
                              "autonomousOnly": autonomous_only, "namedByIncidents": False}
    else:  # an incident rule: the commands its incidents name
        relevant = [r for r in incident_rows if metric is None or metric.severity is None
                    or r.severity == metric.severity]
        ids = sorted({r.command_id for r in relevant if r.command_id})
        commands = drilldown_repo.commands_named(conn, ids, limit=LIMIT)
        matching = len(commands)
        doc["commandsAre"] = {"statuses": None, "commandType": None, "autonomousOnly": False,
                              "namedByIncidents": True}
    doc["commands"] = [_command_json(r) for r in commands]
    doc["commandsMatching"] = matching

    steps = _Steps(start, trip)
    if metric is not None:
        values = _series(conn, metric, w, seen_by, steps, row.command_type, min_samples, incident_rows,
                         safety_rows)
        doc["series"] = {
            "metric": metric.name, "label": metric.label, "kind": metric.kind, "op": metric.op,
            "threshold": metric.threshold, "minSamples": min_samples if metric.kind == "rate" else None,
            "stepSeconds": steps.step,
            "points": [{"at": isoformat(steps.end_of(k) if k < steps.count - 1 else trip), "value": v,
                        "breached": metric.breached(v)} for k, v in enumerate(values)]}
    else:
        doc["series"] = None
    doc["effect"] = _effect(conn, row, observed)
    doc["resolution"] = None if not row.resolved else {
        "by": row.resolved_by, "at": isoformat(row.resolved_at), "note": row.note,
        "falsePositive": bool(row.false_positive)}
    return doc


def _effect(conn: Connection, row: Row, observed: dict[str, Any]) -> dict[str, Any]:
    text = observed.get("effect") or ""
    effect: dict[str, Any] = {"action": row.action, "shadow": bool(row.shadow), "text": text,
                              "revertedFrom": None, "revertedAt": None, "pausedTypes": [], "stillPaused": None}
    if row.shadow:
        effect["summary"] = f"shadow only: nothing changed ({text or 'it recorded what it would have done'})"
        return effect
    if row.action == "revert_to_l3":
        entry = drilldown_repo.reversion_of(conn, row.id)
        if entry is not None:
            effect["revertedFrom"] = drilldown_repo.phase_before(conn, entry.id)
            effect["revertedAt"] = isoformat(entry.started_at)
            effect["summary"] = (f"reverted {effect['revertedFrom'] or '?'} -> L3 at {effect['revertedAt']} "
                                 "and cleared the whitelist")
        else:
            effect["summary"] = text or "nothing to revert: already at L3"
    elif row.action == "pause_command_type" and row.command_type:
        state = state_repo.get_state(conn)
        paused = list(state.paused_command_types or []) if state is not None else []
        effect["pausedTypes"] = [row.command_type]
        effect["stillPaused"] = row.command_type in paused
        effect["summary"] = (f"paused {row.command_type} (" + ("still paused" if effect["stillPaused"]
                                                                 else "no longer paused") + ")")
    else:
        effect["summary"] = text or "alert only: nothing changed"
    return effect


class Drilldown:
    """The drill-down read: one read transaction (the facade's `drilldown` property)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def show(self, event_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            return drilldown_in(conn, event_id)


# --- text: the sparkline the console and the CLI draw ---------------------------------------

BARS = "▁▂▃▄▅▆▇█"


def sparkline(series: dict[str, Any] | None) -> tuple[str, str, list[bool]]:
    """(bars, scale, breached per cell): one cell per point, scaled from 0 (or the lowest value) to the
    highest of the values and the threshold; an unknown value (too few samples) is a space. ``scale``
    says the top, the threshold and which cell height it sits at."""
    if not series or not series["points"]:
        return "", "", []
    values = [p["value"] for p in series["points"]]
    known = [v for v in values if v is not None]
    threshold = series["threshold"]
    lo = min([0.0, threshold, *known])
    hi = max([threshold, *known])
    span = (hi - lo) or 1.0
    cells = []
    for v in values:
        cells.append(" " if v is None else BARS[min(len(BARS) - 1, int((v - lo) / span * (len(BARS) - 1) + 0.5))])
    level = BARS[min(len(BARS) - 1, int((threshold - lo) / span * (len(BARS) - 1) + 0.5))]
    scale = f"0..{fmt_value(hi, series['kind'])}, threshold {series['op']} {fmt_value(threshold, series['kind'])} " \
            f"at {level}"
    return "".join(cells), scale, [p["breached"] for p in series["points"]]


def fmt_value(v: float | None, kind: str) -> str:
    if v is None:
        return "–"
    if kind == "rate":
        return f"{v * 100:.1f}%"
    return f"{v:g}"
