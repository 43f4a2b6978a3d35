"""Half-open command types (engine/recovery.py): one row per type on probation, read by primary key."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.db import WRITE_LOCK_KEY, WRITE_LOCK_SQL
from storage.tables import breaker_events as EVENTS
from storage.tables import breaker_rules as RULES
from storage.tables import half_open as HALF_OPEN


def get(conn: Connection, command_type: str) -> Row | None:
    return conn.execute(sa.select(HALF_OPEN).where(HALF_OPEN.c.command_type == command_type)).first()


def insert(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(HALF_OPEN).values(**fields))


def update(conn: Connection, command_type: str, **fields: Any) -> int:
    """Rows changed (0: the type is no longer half-open)."""
    return conn.execute(sa.update(HALF_OPEN).where(HALF_OPEN.c.command_type == command_type)
                        .values(**fields)).rowcount


def serialise(conn: Connection) -> None:
    """Join the store-wide write order in a transaction opened without it (ingest, on PostgreSQL): a
    probe's outcome pauses or closes a type, which the gate must see in the order of its grants. SQLite
    serialises every writer anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(WRITE_LOCK_SQL, {"k": WRITE_LOCK_KEY})


def delete(conn: Connection, command_type: str) -> None:
    conn.execute(sa.delete(HALF_OPEN).where(HALF_OPEN.c.command_type == command_type))


def all_rows(conn: Connection) -> Sequence[Row]:
    return conn.execute(sa.select(HALF_OPEN).order_by(HALF_OPEN.c.command_type)).all()


def probing(conn: Connection, grant_ids: Iterable[str]) -> Sequence[Row]:
    """The half-open types whose probe in flight is one of these grants (the table is small: no index)."""
    ids = list(set(grant_ids))
    if not ids:
        return []
    return conn.execute(sa.select(HALF_OPEN).where(HALF_OPEN.c.probe_grant_id.in_(ids))).all()


def open_pauses_with_cooldown(conn: Connection) -> Sequence[Row]:
    """Every unresolved, enforced pause event whose rule re-opens it after a cooldown (``rule_cooldown``)."""
    rows = conn.execute(sa.select(EVENTS, RULES.c.cooldown.label("rule_cooldown"))
                        .join(RULES, RULES.c.name == EVENTS.c.rule_name)
                        .where(EVENTS.c.resolved.is_(False), EVENTS.c.shadow.is_(False),
                               EVENTS.c.action == "pause_command_type", RULES.c.recovery == "half_open",
                               RULES.c.cooldown.is_not(None))
                        .order_by(EVENTS.c.timestamp)).all()
    return rows
