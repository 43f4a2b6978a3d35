"""Alert sinks and their routing in the store (table ``alert_sinks``) and the version counter that tells
a process to reload them (``governance_state.sinks_version``). ``secret`` (the URL, a routing key) is
returned to the engine, which never prints it. Call the writers inside a write transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import alert_sinks as T
from storage.tables import governance_state as STATE

_ALL = sa.select(T).order_by(T.c.name)
_VERSION = sa.select(STATE.c.sinks_version).where(STATE.c.id == 1)


def all_sinks(conn: Connection) -> list[Row]:
    return conn.execute(_ALL).all()


def get(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(T).where(T.c.name == name)).first()


def version(conn: Connection) -> int | None:
    return conn.execute(_VERSION).scalar()


def upsert(conn: Connection, *, name: str, kind: str, settings: dict[str, Any], secret: dict[str, Any],
           at: datetime, actor: str) -> bool:
    """Create or replace; True when it was created."""
    if get(conn, name) is None:
        conn.execute(sa.insert(T).values(name=name, kind=kind, settings=settings, secret=secret, created_at=at,
                                         created_by=actor, updated_at=at, updated_by=actor))
        created = True
    else:
        conn.execute(sa.update(T).where(T.c.name == name).values(kind=kind, settings=settings, secret=secret,
                                                                 updated_at=at, updated_by=actor))
        created = False
    bump(conn)
    return created


def delete(conn: Connection, name: str) -> bool:
    gone = conn.execute(sa.delete(T).where(T.c.name == name)).rowcount > 0
    if gone:
        bump(conn)
    return gone


def bump(conn: Connection) -> None:
    conn.execute(sa.update(STATE).where(STATE.c.id == 1).values(sinks_version=STATE.c.sinks_version + 1))
