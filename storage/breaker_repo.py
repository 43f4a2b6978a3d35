"""Breaker rules and breaker events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.models import BreakerEvent, BreakerRule

RULES = BreakerRule.__table__
EVENTS = BreakerEvent.__table__


def list_rules(conn: Connection, *, enabled_only: bool = False) -> list[Row]:
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
                since: datetime | None = None) -> list[Row]:
    q = sa.select(EVENTS).order_by(EVENTS.c.timestamp.desc(), EVENTS.c.id)
    if unresolved_only:
        q = q.where(EVENTS.c.resolved.is_(False))
    if since is not None:
        q = q.where(EVENTS.c.timestamp >= since)
    if limit:
        q = q.limit(limit)
    return conn.execute(q).all()
