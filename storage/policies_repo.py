"""Gate policies in the store (table ``gate_policies``) and the version counter that tells a process to
reload them (``governance_state.policies_version``). Call the writers inside a write transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import gate_policies as T
from storage.tables import governance_state as STATE

_ALL = sa.select(T).order_by(T.c.name)
_VERSION = sa.select(STATE.c.policies_version).where(STATE.c.id == 1)


def all_policies(conn: Connection) -> list[Row]:
    return conn.execute(_ALL).all()


def get(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(T).where(T.c.name == name)).first()


def version(conn: Connection) -> int | None:
    """The policies' version (None: no governance state yet)."""
    return conn.execute(_VERSION).scalar()


def upsert(conn: Connection, *, name: str, spec: dict[str, Any], at: datetime, actor: str) -> bool:
    """Create or replace; True when it was created."""
    if get(conn, name) is None:
        conn.execute(sa.insert(T).values(name=name, spec=spec, created_at=at, created_by=actor,
                                         updated_at=at, updated_by=actor))
        created = True
    else:
        conn.execute(sa.update(T).where(T.c.name == name).values(spec=spec, updated_at=at, updated_by=actor))
        created = False
    bump(conn)
    return created


def delete(conn: Connection, name: str) -> bool:
    gone = conn.execute(sa.delete(T).where(T.c.name == name)).rowcount > 0
    if gone:
        bump(conn)
    return gone


def bump(conn: Connection) -> None:
    conn.execute(sa.update(STATE).where(STATE.c.id == 1)
                 .values(policies_version=STATE.c.policies_version + 1))
