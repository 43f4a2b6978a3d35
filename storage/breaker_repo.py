"""Breaker rules and breaker events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import breaker_events as EVENTS
from storage.tables import breaker_rules as RULES


def list_rules(conn: Connection, *, enabled_only: bool = False) -> Sequence[Row]:
    q = sa.select(RULES).order_by(RULES.c.id)
    if enabled_only:
        q = q.where(RULES.c.enabled.is_(True))
    return conn.execute(q).all()


def get_rule(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(RULES).where(RULES.c.name == name)).first()


def insert_rule(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(RULES).values(**fields))


def update_rule(conn: Connection, name: str, **fields: Any) -> None:
    conn.execute(sa.update(RULES).where(RULES.c.name == name).values(**fields))


def count_unresolved(conn: Connection, *, include_shadow: bool = False,
                     severities: tuple[str, ...] | None = None) -> int:
    q = sa.select(sa.func.count()).select_from(EVENTS).where(EVENTS.c.resolved.is_(False))
    if not include_shadow:
        q = q.where(EVENTS.c.shadow.is_(False))
    if severities:
        q = q.where(EVENTS.c.severity.in_(severities))
    return conn.execute(q).scalar_one()


def list_events(conn: Connection, *, unresolved_only: bool = False, limit: int | None = None,
                since: datetime | None = None) -> Sequence[Row]:
    q = sa.select(EVENTS).order_by(EVENTS.c.timestamp.desc(), EVENTS.c.id)
    if unresolved_only:
        q = q.where(EVENTS.c.resolved.is_(False))
    if since is not None:
        q = q.where(EVENTS.c.timestamp >= since)
    if limit:
        q = q.limit(limit)
    return conn.execute(q).all()


def open_event(conn: Connection, rule_name: str, command_type: str | None, *,
               enforced_only: bool = False) -> Row | None:
    """The unresolved event of this rule and scope, if any (the rule does not trip again meanwhile).
    ``enforced_only``: not counting shadow events (a rule enforcing now is not held back by them)."""
    q = sa.select(EVENTS).where(EVENTS.c.rule_name == rule_name, EVENTS.c.resolved.is_(False))
    if enforced_only:
        q = q.where(EVENTS.c.shadow.is_(False))
    q = q.where(EVENTS.c.command_type.is_(None) if command_type is None
                else EVENTS.c.command_type == command_type)
    return conn.execute(q.limit(1)).first()


def open_scopes(conn: Connection) -> dict[tuple[str, str | None], bool]:
    """(rule name, command type or None) of every unresolved event -> whether one of them is enforced
    (False: only shadow events are open there)."""
    out: dict[tuple[str, str | None], bool] = {}
    for r in conn.execute(sa.select(EVENTS.c.rule_name, EVENTS.c.command_type, EVENTS.c.shadow)
                          .where(EVENTS.c.resolved.is_(False))).all():
        key = (r.rule_name, r.command_type)
        out[key] = out.get(key, False) or not r.shadow
    return out


def insert_event(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(EVENTS).values(**fields))


def get_event(conn: Connection, event_id: str) -> Row | None:
    return conn.execute(sa.select(EVENTS).where(EVENTS.c.id == event_id)).first()


def update_event(conn: Connection, event_id: str, **fields: Any) -> None:
    conn.execute(sa.update(EVENTS).where(EVENTS.c.id == event_id).values(**fields))


def other_open_pauses(conn: Connection, command_type: str, excluding: str) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(EVENTS).where(
        EVENTS.c.command_type == command_type, EVENTS.c.action == "pause_command_type",
        EVENTS.c.resolved.is_(False), EVENTS.c.shadow.is_(False), EVENTS.c.id != excluding)).scalar_one()


def rule_stats(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per rule: trips, resolved, false positives, last trip (enforced events; shadow counted apart)."""
    rows = conn.execute(sa.select(
        EVENTS.c.rule_name, EVENTS.c.shadow, sa.func.count(),
        sa.func.count().filter(EVENTS.c.resolved.is_(True)),
        sa.func.count().filter(EVENTS.c.false_positive.is_(True)),
        sa.func.max(EVENTS.c.timestamp),
    ).group_by(EVENTS.c.rule_name, EVENTS.c.shadow)).all()
    stats: dict[str, dict[str, Any]] = {}
    for name, shadow, trips, resolved, fps, last in rows:
        s = stats.setdefault(name, {"trips": 0, "resolved": 0, "falsePositives": 0, "lastTrip": None,
                                    "shadowTrips": 0})
        if shadow:
            s["shadowTrips"] += trips
        else:
            s["trips"] += trips
            s["resolved"] += resolved
            s["falsePositives"] += fps
        s["lastTrip"] = max(filter(None, [s["lastTrip"], last]), default=None)
    return stats


def delete_rule(conn: Connection, name: str) -> bool:
    return conn.execute(sa.delete(RULES).where(RULES.c.name == name)).rowcount > 0


def last_resolutions(conn: Connection) -> dict[tuple[str, str | None], datetime]:
    """(rule name, command type or None) -> when its newest event was resolved."""
    rows = conn.execute(sa.select(EVENTS.c.rule_name, EVENTS.c.command_type, sa.func.max(EVENTS.c.resolved_at))
                        .where(EVENTS.c.resolved.is_(True))
                        .group_by(EVENTS.c.rule_name, EVENTS.c.command_type)).all()
    return {(r[0], r[1]): r[2] for r in rows if r[2] is not None}
