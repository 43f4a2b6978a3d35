"""Circuit breakers: judge the enabled rules over windows that end now, and trip them.

A window holds what happened in it (by the event's own ``at``) and the events judged on arrival that
arrived in it (by ``ingested_at``: those stored more than 5 s but at most the late horizon after their
``at``, or stamped more than 5 s ahead; decided by the ingest as it stores them): evidence that
arrives late is judged on arrival, while backfilled history never trips a breaker (docs/rules.md,
"Windows").

A trip is one write transaction: the breaker event, the action's state change (revert to L3 or pause
the offending command types; nothing in shadow mode), its audit entry and its alerts in the outbox.
While an unresolved event of the same rule and scope is open, the rule does not trip again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Row

from engine import access
from engine.alerts import Alert
from engine.clock import Clock, isoformat
from engine.domain import safety_totals
from engine.errors import Conflict, InvalidInput, NotFound, NotInitialised
from engine.metrics import CommandCounts
from engine.rule_language import Condition, RuleError, parse_condition, parse_window
from storage import audit, breaker_repo, events_repo, recovery_repo, state_repo
from storage.store import Store

#: events stamped a little in the future (agents' clocks drift) still count as "now"
CLOCK_SKEW = timedelta(seconds=5)
#: failures of a type since its last success in the window (a count: judged whatever min_samples says)
CONSECUTIVE = "commandType.consecutiveFailures"


@dataclass(frozen=True)
class CompiledRule:
    name: str
    condition: Condition
    window: timedelta
    window_text: str
    action: str
    severity: str
    min_samples: int
    shadow: bool = False  # this rule only records what it would have done

    @classmethod
    def from_row(cls, row: Row) -> CompiledRule:
        return cls(row.name, parse_condition(row.condition), parse_window(row.window), row.window,
                   row.action, row.alert_severity, row.min_samples, bool(row.shadow))


class WindowScope:
    """The values a condition reads, for one window (and, for commandType.* names, one type)."""

    def __init__(self, values: dict[str, Any], severities: frozenset[str]) -> None:
        self.values = values
        self._severities = severities

    def value(self, name: str) -> Any:
        return self.values.get(name)

    def severities(self) -> frozenset[str]:
        return self._severities


def counts_values(prefix: str, counts: CommandCounts, min_samples: int) -> dict[str, Any]:
    values: dict[str, Any] = {prefix + k: v for k, v in counts.to_json().items()}
    judged = counts.total >= min_samples
    for name, rate in counts.rates().items():
        values[prefix + name] = rate if judged else None  # too few commands: the rate is not judged
    return values


_counts_values = counts_values  # the name other modules knew it by


def window_ending(now: datetime, start: datetime, *, arrived_after: datetime | None = None) -> events_repo.Window:
    """The window a rule judges at ``now``: from ``start``, events stamped up to CLOCK_SKEW ahead count;
    ``arrived_after`` (a resolution) counts only what arrived after it, not at the same instant."""
    arrived_from = None if arrived_after is None else arrived_after + timedelta(microseconds=1)
    return events_repo.Window(start, now + CLOCK_SKEW, now, arrived_from)


class WindowData:
    """Aggregates for one window (events_repo.Window), fetched once and shared by the rules that need them."""

    def __init__(self, conn: Connection, window: events_repo.Window | datetime, end: datetime | None = None) -> None:
        if not isinstance(window, events_repo.Window):  # (start, now + CLOCK_SKEW)
            assert end is not None, "a window given by its start needs its end"
            window = window_ending(end - CLOCK_SKEW, window)
        self.conn, self.window = conn, window
        self._cache: dict[str, Any] = {}

    def _get(self, key: str, fetch: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fetch()
        return self._cache[key]

    def commands(self) -> CommandCounts:
        return self._get("all", lambda: CommandCounts.from_status_counts(
            events_repo.window_command_counts(self.conn, self.window)))

    def autonomous(self) -> CommandCounts:
        return self._get("auto", lambda: CommandCounts.from_status_counts(
            events_repo.window_command_counts(self.conn, self.window, autonomous_only=True)))

    def by_type(self) -> dict[str, CommandCounts]:
        return self._get("types", lambda: {t: CommandCounts.from_status_counts(c) for t, c in
                                           events_repo.window_command_counts_by_type(self.conn, self.window).items()})

    def consecutive_failures(self) -> dict[str, int]:
        return self._get("consecutive", lambda: events_repo.window_consecutive_failures(self.conn, self.window))

    def incidents(self) -> dict[str, int]:
        return self._get("inc", lambda: events_repo.window_incident_counts(self.conn, self.window))

    def safety(self) -> dict[str, int]:
        return self._get("safety", lambda: events_repo.window_safety_counts(self.conn, self.window))

    def severities(self) -> frozenset[str]:
        return self._get("sev", lambda: frozenset(events_repo.window_incident_severities(self.conn, self.window)))

    def scope(self, condition: Condition, min_samples: int) -> WindowScope:
        names = condition.names
        values: dict[str, Any] = {}
        if any("." not in n for n in names):
            values.update(counts_values("", self.commands(), min_samples))
        if any(n.startswith("autonomous.") for n in names):
            values.update(counts_values("autonomous.", self.autonomous(), min_samples))
        if any(n.startswith("incidents.") for n in names):
            values.update({f"incidents.{k}": v for k, v in self.incidents().items()})
        if any(n.startswith("safety.") for n in names):
            s = self.safety()
            values.update(safety_totals(s, "safety."))
        severities = self.severities() if condition.uses_incident_severity() else frozenset()
        return WindowScope(values, severities)


@dataclass(frozen=True)
class Verdict:
    """A rule whose condition holds now, for the whole window or for one command type."""

    rule: CompiledRule
    command_type: str | None
    observed: dict[str, Any]


@dataclass(frozen=True)
class Assessment:
    """One (rule, scope) judged over its window ending now, whether or not its condition holds: what
    ``judge`` keeps the holding ones of, and what the console shows for every rule."""

    rule: CompiledRule
    command_type: str | None
    scope: WindowScope
    samples: int
    holds: bool


def assess(conn: Connection, rules: Iterable[CompiledRule], now: datetime, *,
           since: datetime | None = None) -> Iterator[Assessment]:
    """Every (rule, scope) over its window ending now (starting no earlier than ``since``, when given):
    what happened in the window and the events judged on arrival that arrived in it, each event once.
    A commandType rule yields one assessment per command type seen in the window (none if none)."""
    windows: dict[datetime, WindowData] = {}
    for rule in rules:
        after = since if since is not None and since >= now - rule.window else None
        start = now - rule.window if after is None else after
        data = windows.get(start)
        if data is None:
            data = windows[start] = WindowData(conn, window_ending(now, start, arrived_after=after))
        base = data.scope(rule.condition, rule.min_samples)
        if not rule.condition.uses_command_type():
            yield Assessment(rule, None, base, data.commands().total, rule.condition.evaluate(base))
            continue
        consecutive = data.consecutive_failures() if CONSECUTIVE in rule.condition.names else None
        for ctype, counts in sorted(data.by_type().items()):
            scope = WindowScope({**base.values, **counts_values("commandType.", counts, rule.min_samples)},
                                base.severities())
            if consecutive is not None:
                scope.values[CONSECUTIVE] = consecutive.get(ctype, 0)
            yield Assessment(rule, ctype, scope, counts.total, rule.condition.evaluate(scope))


def judge(conn: Connection, rules: Iterable[CompiledRule], now: datetime, *,
          since: datetime | None = None) -> list[Verdict]:
    """Every (rule, scope) whose condition holds over its window ending now (``assess``, the holding ones)."""
    return [Verdict(a.rule, a.command_type, _observed(a.rule, a.scope, a.samples))
            for a in assess(conn, rules, now, since=since) if a.holds]


def _observed(rule: CompiledRule, scope: WindowScope, samples: int) -> dict[str, Any]:
    observed = {name: scope.value(name) for name in sorted(rule.condition.names) if name != "incident.severity"}
    if rule.condition.uses_incident_severity():
        observed["incident.severity"] = sorted(scope.severities())
    observed["samples"] = samples
    observed["window"] = rule.window_text
    return observed


@dataclass
class Trip:
    event_id: str
    rule_name: str
    command_type: str | None
    action: str
    severity: str
    shadow: bool
    effect: str
    observed: dict[str, Any] = field(default_factory=dict)


AlertSink = Callable[[Connection, Alert, bool], Any]


def _enforcing(state: Row, rule: CompiledRule) -> bool:
    """Whether a trip of ``rule`` acts now: neither the store nor the rule is in shadow."""
    return state.breaker_mode != "shadow" and not rule.shadow


def _held_back(open_scope: bool | None, *, enforcing: bool) -> bool:
    """``open_scope``: None when nothing is open for the rule and scope, else whether an enforced event is."""
    return open_scope is not None and (open_scope or not enforcing)


class BreakerEngine:
    """Evaluates the rules (as events arrive and on the scheduler's tick) and resolves events."""

    def __init__(self, store: Store, clock: Clock, *, enqueue_alert: AlertSink | None = None) -> None:
        self.store = store
        self.clock = clock
        self.enqueue_alert = enqueue_alert
        self.on_trip: list[Callable[[Trip], None]] = []
        self._compiled: dict[tuple, CompiledRule] = {}

    def compiled_rules(self, conn: Connection) -> list[CompiledRule]:
        """The enabled rules, parsed once per version of each rule (evaluation runs many times a second)."""
        rules = []
        for row in breaker_repo.list_rules(conn, enabled_only=True):
            key = (row.name, row.condition, row.window, row.action, row.alert_severity, row.min_samples, row.shadow)
            compiled = self._compiled.get(key)
            if compiled is None:
                try:
                    compiled = self._compiled[key] = CompiledRule.from_row(row)
                except RuleError:
                    continue  # stored rules were validated; one edited behind our back is skipped, not fatal
            rules.append(compiled)
        return rules

    def evaluate(self) -> list[Trip]:
        now = self.clock.now()
        with self.store.read() as conn:
            state = state_repo.get_state(conn)
            if state is None:
                return []
            rules = self.compiled_rules(conn)
            verdicts = judge(conn, rules, now)
            open_now = breaker_repo.open_scopes(conn)
            # an open event holds its rule back; a shadow one only while the rule itself is in shadow, so
            # that a rule switched back to enforcing acts at once where it had tripped in shadow
            verdicts = [v for v in verdicts if not _held_back(open_now.get((v.rule.name, v.command_type)),
                                                              enforcing=_enforcing(state, v.rule))]
            verdicts = self._after_resolutions(conn, verdicts, now)
        if not verdicts:
            return []
        trips = []
        with self.store.write() as conn:
            for verdict in verdicts:
                trip = self._trip(conn, verdict, now)
                if trip is not None:
                    trips.append(trip)
        for trip in trips:
            for callback in self.on_trip:
                callback(trip)
        return trips

    def _after_resolutions(self, conn: Connection, verdicts: list[Verdict], now: datetime) -> list[Verdict]:
        """An event resolved inside the window judged what came before it: judge what came after — what
        happened after the resolution, or arrived after it (late evidence the resolver had not seen)."""
        if not verdicts:
            return verdicts
        resolved = breaker_repo.last_resolutions(conn)
        kept = []
        for v in verdicts:
            at = resolved.get((v.rule.name, v.command_type))
            if at is not None and at > now - v.rule.window:
                again = [w for w in judge(conn, [v.rule], now, since=at) if w.command_type == v.command_type]
                if not again:
                    continue
                v = again[0]
            kept.append(v)
        return kept

    def _trip(self, conn: Connection, verdict: Verdict, now: datetime) -> Trip | None:
        state = require_initialised(conn)
        rule = verdict.rule
        shadow = not _enforcing(state, rule)
        if breaker_repo.open_event(conn, rule.name, verdict.command_type, enforced_only=not shadow) is not None:
            return None  # another process tripped it between our read and this write
        event_id = "cbe-" + uuid.uuid4().hex[:12]
        why = "shadow mode" if state.breaker_mode == "shadow" else "rule in shadow"
        effect = f"none ({why}: would have " + _describe_action(rule.action, verdict.command_type) + ")" \
            if shadow else apply_action(conn, state, rule.action, verdict.command_type, now,
                                        reason=f"circuit breaker {rule.name!r} tripped", actor="circuit-breaker",
                                        event_id=event_id)
        breaker_repo.insert_event(conn, id=event_id, rule_name=rule.name, timestamp=now, severity=rule.severity,
                                  action=rule.action, command_type=verdict.command_type,
                                  observed={**verdict.observed, "effect": effect}, shadow=shadow)
        audit.append(conn, at=now, actor="circuit-breaker", action="breaker.trip", target=rule.name,
                     reason=rule.condition.text,
                     details={"event": event_id, "action": rule.action, "commandType": verdict.command_type,
                              "mode": state.breaker_mode, "ruleShadow": rule.shadow, "effect": effect,
                              "observed": verdict.observed})
        if self.enqueue_alert is not None:
            scope = f" ({verdict.command_type})" if verdict.command_type else ""
            # a shadow trip informs; it never pages (at most medium: chat and the log)
            severity = "medium" if shadow and rule.severity in ("critical", "high") else rule.severity
            self.enqueue_alert(conn, Alert(
                kind="trigger", severity=severity,
                title=f"{'[shadow] ' if shadow else ''}Circuit breaker tripped: {rule.name}{scope}",
                body=f"{rule.condition.text} over {rule.window_text}: {effect}",
                dedup_key=f"govcon-breaker-{event_id}", at=now,
                details={"event": event_id, "rule": rule.name, "observed": verdict.observed}),
                bool(state.kill_switch_engaged))
        return Trip(event_id, rule.name, verdict.command_type, rule.action, rule.severity, shadow, effect,
                    verdict.observed)

    def resolve(self, actor: str, event_id: str, *, note: str, false_positive: bool = False) -> dict[str, Any]:
        if not note or not note.strip():
            raise InvalidInput("resolving an event needs --note saying what was found and done")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "events.resolve")
            event = breaker_repo.get_event(conn, event_id)
            if event is None:
                raise NotFound(f"no breaker event {event_id!r}; see `govcon events list --unresolved`")
            if event.resolved:
                raise Conflict(f"event {event_id} was resolved already by {event.resolved_by} "
                               f"at {isoformat(event.resolved_at)}")
            self._resolve_in(conn, actor, event, note.strip(), now, false_positive=false_positive)
            row = breaker_repo.get_event(conn, event_id)
        assert row is not None  # read back in the transaction that resolved it
        return event_json(row)

    def _resolve_in(self, conn: Connection, actor: str, event: Row, note: str, now: datetime, *,
                    false_positive: bool = False) -> None:
        """Resolve inside the caller's transaction. The paused type (when no other pause holds it) becomes
        half-open (engine/recovery.py), or unpaused at once under ``recovery = manual`` or when the
        event was a false positive."""
        from engine import recovery
        unpaused = half_open = None
        if event.action == "pause_command_type" and not event.shadow and event.command_type:
            if not breaker_repo.other_open_pauses(conn, event.command_type, excluding=event.id):
                state = require_initialised(conn)
                paused = [t for t in state.paused_command_types or [] if t != event.command_type]
                if paused != list(state.paused_command_types or []):
                    state_repo.update_state(conn, paused_command_types=paused, updated_at=now)
                    unpaused = event.command_type
                    mode, probes = recovery.recovery_of(conn, event.rule_name)
                    if mode == "half_open" and not false_positive:
                        recovery.enter(conn, event, now, probes=probes)
                        half_open = {"probes": probes}
        breaker_repo.update_event(conn, event.id, resolved=True, resolved_by=actor, resolved_at=now,
                                  note=note, false_positive=false_positive)
        audit.append(conn, at=now, actor=actor, action="breaker.resolve", target=event.id, reason=note,
                     details={"rule": event.rule_name, "falsePositive": false_positive,
                              "unpaused": unpaused, "halfOpen": half_open and event.command_type,
                              **({"probes": half_open["probes"]} if half_open else {})})
        if self.enqueue_alert is not None:
            body = f"resolved by {actor}: {note}"
            if half_open:
                body += f"; {event.command_type} is half-open: {half_open['probes']} probe(s), one at a time"
            self.enqueue_alert(conn, Alert(
                kind="resolve", severity=event.severity, title=f"Resolved: {event.rule_name}",
                body=body, dedup_key=f"govcon-breaker-{event.id}", at=now,
                details={"event": event.id, "falsePositive": false_positive}), False)

    def reopen_after_cooldown(self) -> list[str]:
        """Pause events whose rule's cooldown has passed are resolved by the scheduler: their types
        become half-open without a human (seed 003). Returns the events resolved."""
        from engine import recovery
        now = self.clock.now()
        with self.store.read() as conn:
            if not recovery.cooldown_due(conn, now):
                return []
        done = []
        with self.store.write() as conn:
            for event in recovery.cooldown_due(conn, now):
                self._resolve_in(conn, "scheduler", event, f"cooldown {event.rule_cooldown} passed: half-open "
                                                           "probing instead of a human's resolution", now)
                done.append(event.id)
        return done


def _describe_action(action: str, command_type: str | None) -> str:
    return {"revert_to_l3": "reverted to L3 and cleared the whitelist",
            "pause_command_type": f"paused {command_type}",
            "alert_only": "alerted"}[action]


def apply_action(conn: Connection, state: Row, action: str, command_type: str | None, now: datetime, *,
                 reason: str, actor: str, event_id: str | None = None) -> str:
    """Perform a breaker action on the governance state (inside the caller's transaction)."""
    if action == "revert_to_l3":
        return revert_state(conn, state, now, actor=actor, reason=reason, event_id=event_id)
    if action == "pause_command_type" and command_type:
        paused = list(state.paused_command_types or [])
        if command_type in paused:
            return f"{command_type} was paused already"
        state_repo.update_state(conn, paused_command_types=paused + [command_type], updated_at=now)
        recovery_repo.delete(conn, command_type)  # a pause ends probing: its resolution starts it afresh
        return f"paused {command_type}: the gate refuses it autonomy until the event is resolved"
    return "alert only"


def revert_state(conn: Connection, state: Row, now: datetime, *, actor: str, reason: str,
                 event_id: str | None = None) -> str:
    if state.current_phase == "L3" and not state.command_whitelist:
        return "already at L3 with an empty whitelist"
    previous = state.current_phase
    in_validation = state.validation_until is not None and state.validation_until > now
    state_repo.update_state(conn, current_phase="L3", phase_started_at=now, command_whitelist=[], updated_at=now,
                            validation_until=None, validation_proposal_id=None)
    # a reversion during a validation period is recorded against the proposal (the next report shows it)
    state_repo.start_phase(conn, phase="L3", at=now, actor=actor, reason=reason, breaker_event_id=event_id,
                           proposal_id=state.validation_proposal_id if in_validation else None)
    return f"reverted {previous} -> L3 and cleared the whitelist ({len(state.command_whitelist or [])} types)"


def event_json(row: Row) -> dict[str, Any]:
    return {"id": row.id, "ruleName": row.rule_name, "timestamp": isoformat(row.timestamp),
            "severity": row.severity, "action": row.action, "commandType": row.command_type,
            "observed": row.observed, "shadow": bool(row.shadow), "resolved": bool(row.resolved),
            "resolvedBy": row.resolved_by, "resolvedAt": isoformat(row.resolved_at), "note": row.note,
            "falsePositive": bool(row.false_positive)}


def require_initialised(conn: Connection) -> Row:
    state = state_repo.get_state(conn)
    if state is None:
        raise NotInitialised()
    return state
