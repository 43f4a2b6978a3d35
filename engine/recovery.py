"""Half-open recovery of paused command types (seed 002's OPEN -> HALF_OPEN -> CLOSED; DESIGN.md,
"Governed actions", "Recovery").

A ``pause_command_type`` rule with ``recovery = half_open`` (the default) does not give a paused type its
full autonomy back when its event is resolved, or when its ``cooldown`` passes: the type becomes
half-open (a row in ``half_open``). The gate then grants one probe at a time (``judge``, inside its
serialised write: one primary-key read, a second one while a probe is in flight). A probe is an
ordinary grant; its outcome, a command event whose id is the grant id, arrives through the ingest hook
(``outcomes``), its expiry through ``expired``. ``probes`` succeeded probes close the type (audited,
info alert); a failed, rolled-back or expired probe pauses it again with a new breaker event.
``recovery = manual`` keeps the old behaviour: resolving the event unpauses the type at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Connection, Row

from engine.alerts import Alert
from engine.breakers import require_initialised
from engine.clock import isoformat
from engine.domain import BreakerAction, CommandStatus, Decision
from engine.gate import Ask, GateDecision
from engine.rule_language import parse_window
from storage import actions_repo, audit, audit_repo, breaker_repo, recovery_repo, state_repo

DEFAULT_PROBES = 3
FAILED = (CommandStatus.FAILED, CommandStatus.ROLLED_BACK)
AlertFn = Callable[[Connection, Alert], Any]


# --- the gate ------------------------------------------------------------------------------------


def judge(conn: Connection, ask: Ask, decision: GateDecision, now: datetime) -> GateDecision:
    """An allow of a half-open type becomes its probe, unless a probe is in flight already (then
    needs_approval). Anything but an allow, and types not half-open, pass unchanged."""
    if decision.decision != Decision.ALLOW:
        return decision
    row = recovery_repo.get(conn, ask.command_type)
    if row is None:
        return decision
    if row.probe_grant_id is not None:
        probe = actions_repo.get_grant(conn, row.probe_grant_id)
        if probe is not None and probe.status == actions_repo.OPEN:
            return GateDecision(Decision.NEEDS_APPROVAL,
                                f"{ask.command_type} is half-open: probe {probe.id} is in flight "
                                f"({row.probes_left} succeeded probe(s) still needed); one probe "
                                "at a time", ask.command_type, decision.phase,
                                {**decision.extra, "halfOpen": {"probesLeft": row.probes_left,
                                                                "probeInFlight": probe.id}})
    return GateDecision(Decision.ALLOW,
                        f"{decision.reason}; half-open: this grant is a probe ({row.probes_left} succeeded "
                        "probe(s) close it)", ask.command_type, decision.phase,
                        {**decision.extra, "probe": True, "halfOpen": {"probesLeft": row.probes_left}})


def bind(conn: Connection, command_type: str, grant_id: str) -> None:
    """The grant just issued is the type's probe in flight (inside the gate's write). A type that left
    half-open meanwhile (its last probe's outcome arrived) refuses it: the gate then denies, failing closed."""
    if not recovery_repo.update(conn, command_type, probe_grant_id=grant_id):
        raise RuntimeError(f"{command_type} left half-open while its probe was being granted; ask again")


# --- entering half-open ----------------------------------------------------------------------------


def recovery_of(conn: Connection, rule_name: str) -> tuple[str, int]:
    """(recovery, probes) of the rule (a rule that no longer exists: half_open, the default probes)."""
    rule = breaker_repo.get_rule(conn, rule_name)
    if rule is None:
        return "half_open", DEFAULT_PROBES
    return rule.recovery or "half_open", rule.probes or DEFAULT_PROBES


def enter(conn: Connection, event: Row, now: datetime, *, probes: int) -> None:
    """The type of this resolved pause event is half-open (already half-open: it stays as it is)."""
    if recovery_repo.get(conn, event.command_type) is None:
        recovery_repo.insert(conn, command_type=event.command_type, since=now, probes_left=probes,
                             probe_grant_id=None, event_id=event.id, rule_name=event.rule_name)


def summary(conn: Connection) -> dict[str, int]:
    """type -> succeeded probes still needed (``status --json``'s ``halfOpen``)."""
    return {r.command_type: r.probes_left for r in recovery_repo.all_rows(conn)}


def details(conn: Connection) -> list[dict[str, Any]]:
    return [{"commandType": r.command_type, "since": isoformat(r.since), "probesLeft": r.probes_left,
             "probeInFlight": r.probe_grant_id, "event": r.event_id, "rule": r.rule_name}
            for r in recovery_repo.all_rows(conn)]


def cooldown_due(conn: Connection, now: datetime) -> list:
    """Open pause events whose rule's cooldown has passed since they tripped."""
    due = []
    for row in recovery_repo.open_pauses_with_cooldown(conn):
        if row.command_type and row.timestamp + parse_window(row.rule_cooldown) <= now:
            due.append(row)
    return due


# --- probe outcomes ---------------------------------------------------------------------------------


def outcomes(conn: Connection, rows: Iterable[dict], now: datetime, alert: AlertFn | None) -> None:
    """Outcome events (inside the ingest transaction) of probes in flight: success counts down, a
    failure or rollback pauses the type again."""
    by_grant: dict[str, list[str]] = {}
    for r in rows:
        by_grant.setdefault(r["command_id"], []).append(r["status"])
    if not recovery_repo.probing(conn, by_grant):
        return  # the usual case: no probe among them, and ingest keeps its own write order
    recovery_repo.serialise(conn)
    for row in recovery_repo.probing(conn, by_grant):  # again, in the gate's write order
        statuses = by_grant[row.probe_grant_id]
        failed = next((s for s in statuses if s in FAILED), None)
        if failed is not None:
            repause(conn, row, now, outcome=failed, alert=alert)
        elif CommandStatus.SUCCEEDED in statuses:
            _succeeded(conn, row, now, alert)


def rolled_back_after_success(conn: Connection, grants: Iterable[Row], now: datetime, alert: AlertFn | None) -> None:
    """Grants whose ``succeeded`` outcome is being followed by ``rolled_back`` (inside the ingest transaction):
    one that counted as a succeeded probe is a failed probe after all. The type is paused again with a new
    breaker event, whether it is still half-open or has closed since (a probe's success is known from its audit
    entry: once counted, the half-open row no longer names it)."""
    for grant in grants:
        counted = _counted_probe(conn, grant.command_type, grant.id)
        if counted is None:
            continue
        recovery_repo.serialise(conn)
        current = recovery_repo.get(conn, grant.command_type)
        rule = counted.get("rule") or _rule_of(conn, counted.get("event"))
        row = SimpleNamespace(command_type=grant.command_type, probe_grant_id=grant.id,
                              rule_name=current.rule_name if current is not None else rule,
                              event_id=current.event_id if current is not None else counted.get("event"),
                              probes_left=current.probes_left if current is not None else 0)
        repause(conn, row, now, outcome="rolled back after it succeeded", alert=alert)


def _counted_probe(conn: Connection, command_type: str, grant_id: str) -> dict[str, Any] | None:
    """The details of the audit entry that counted ``grant_id`` as a succeeded probe of the type, or None."""
    for entry in audit_repo.entries_for(conn, target=command_type, actions=("breaker.probe", "breaker.close"),
                                        limit=200):
        details = entry.details or {}
        if details.get("grantId") == grant_id:
            return dict(details)
    return None


def _rule_of(conn: Connection, event_id: str | None) -> str:
    event = breaker_repo.get_event(conn, event_id) if event_id else None
    return event.rule_name if event is not None else "half-open recovery"


def expired(conn: Connection, grants: Iterable, now: datetime, alert: AlertFn | None) -> None:
    """Grants that expired without an outcome (inside the expiry transaction): an expired probe is a
    failed one."""
    for row in recovery_repo.probing(conn, [g.id for g in grants]):
        repause(conn, row, now, outcome="expired", alert=alert)


def _succeeded(conn: Connection, row: Row, now: datetime, alert: AlertFn | None) -> None:
    left = row.probes_left - 1
    if left > 0:
        recovery_repo.update(conn, row.command_type, probes_left=left, probe_grant_id=None)
        audit.append(conn, at=now, actor="circuit-breaker", action="breaker.probe", target=row.command_type,
                     reason=f"probe {row.probe_grant_id} succeeded",
                     details={"grantId": row.probe_grant_id, "probesLeft": left, "event": row.event_id})
        return
    recovery_repo.delete(conn, row.command_type)
    audit.append(conn, at=now, actor="circuit-breaker", action="breaker.close", target=row.command_type,
                 reason=f"the last probe {row.probe_grant_id} succeeded: full autonomy back",
                 details={"grantId": row.probe_grant_id, "event": row.event_id, "rule": row.rule_name,
                          "halfOpenSince": isoformat(row.since)})
    if alert is not None:
        alert(conn, Alert(kind="info", severity="low", title=f"Circuit closed: {row.command_type} has full autonomy "
                                                             "again",
                          body=f"{row.command_type} passed its probes since {isoformat(row.since)} (event "
                               f"{row.event_id}, rule {row.rule_name})",
                          dedup_key=f"govcon-recovery-{row.event_id}", at=now,
                          details={"commandType": row.command_type, "event": row.event_id}))


def repause(conn: Connection, row: Any, now: datetime, *, outcome: str, alert: AlertFn | None) -> str:
    """A probe failed (or rolled back, or expired): a new breaker event pauses the type again."""
    rule = breaker_repo.get_rule(conn, row.rule_name)
    severity = rule.alert_severity if rule is not None else "high"
    event_id = "cbe-" + uuid.uuid4().hex[:12]
    ctype = row.command_type
    state = require_initialised(conn)
    paused = list(state.paused_command_types or [])
    if ctype not in paused:
        state_repo.update_state(conn, paused_command_types=paused + [ctype], updated_at=now)
    recovery_repo.delete(conn, ctype)
    effect = f"paused {ctype} again: half-open probe {row.probe_grant_id} {outcome}"
    observed = {"probe": row.probe_grant_id, "outcome": outcome, "previousEvent": row.event_id,
                "probesLeft": row.probes_left, "effect": effect}
    breaker_repo.insert_event(conn, id=event_id, rule_name=row.rule_name, timestamp=now, severity=severity,
                              action=BreakerAction.PAUSE_COMMAND_TYPE, command_type=ctype, observed=observed,
                              shadow=False)
    audit.append(conn, at=now, actor="circuit-breaker", action="breaker.trip", target=row.rule_name,
                 reason=f"half-open probe {row.probe_grant_id} of {ctype} {outcome}",
                 details={"event": event_id, "action": BreakerAction.PAUSE_COMMAND_TYPE, "commandType": ctype,
                          "effect": effect, "observed": observed})
    if alert is not None:
        alert(conn, Alert(kind="trigger", severity=severity,
                          title=f"Circuit breaker tripped: {row.rule_name} ({ctype}): half-open probe {outcome}",
                          body=effect, dedup_key=f"govcon-breaker-{event_id}", at=now,
                          details={"event": event_id, "rule": row.rule_name, "observed": observed}))
    return event_id

