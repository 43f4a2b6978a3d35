"""The shape gate policies and alert sinks share in the store: rows keyed by ``name`` with who made and last
changed them, and a version counter in ``governance_state`` that every change bumps (a process holding a
loaded copy compares it and reloads). Call the writers inside a write transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import governance_state as STATE


def get(conn: Connection, table: sa.Table, name: str) -> Row | None:
    return conn.execute(sa.select(table).where(table.c.name == name)).first()


def version(conn: Connection, counter: sa.Column) -> int | None:
    """The counter's value (None: no governance state yet)."""
    return conn.execute(sa.select(counter).where(STATE.c.id == 1)).scalar()


def upsert(conn: Connection, table: sa.Table, counter: sa.Column, *, name: str, values: dict[str, Any],
           at: datetime, actor: str) -> bool:
    """Create ``name`` with ``values`` or replace its values, stamp who and when, bump ``counter``; True when
    it was created."""
    created = get(conn, table, name) is None
    if created:
        conn.execute(sa.insert(table).values(name=name, **values, created_at=at, created_by=actor,
                                             updated_at=at, updated_by=actor))
    else:
        conn.execute(sa.update(table).where(table.c.name == name).values(**values, updated_at=at, updated_by=actor))
    bump(conn, counter)
    return created


def delete(conn: Connection, table: sa.Table, counter: sa.Column, name: str) -> bool:
    gone = conn.execute(sa.delete(table).where(table.c.name == name)).rowcount > 0
    if gone:
        bump(conn, counter)
    return gone


def bump(conn: Connection, counter: sa.Column) -> None:
    conn.execute(sa.update(STATE).where(STATE.c.id == 1).values({counter.name: counter + 1}))
