"""Gate policies in the store (table ``gate_policies``) and the version counter that tells a process to
reload them (``governance_state.policies_version``): the shape storage/named_rows.py keeps. Call the
writers inside a write transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage import named_rows
from storage.tables import gate_policies as T
from storage.tables import governance_state as STATE

_ALL = sa.select(T).order_by(T.c.name)
_COUNTER = STATE.c.policies_version


def all_policies(conn: Connection) -> list[Row]:
    return list(conn.execute(_ALL).all())


def get(conn: Connection, name: str) -> Row | None:
    return named_rows.get(conn, T, name)


def version(conn: Connection) -> int | None:
    """The policies' version (None: no governance state yet)."""
    return named_rows.version(conn, _COUNTER)


def upsert(conn: Connection, *, name: str, spec: dict[str, Any], at: datetime, actor: str) -> bool:
    """Create or replace; True when it was created."""
    return named_rows.upsert(conn, T, _COUNTER, name=name, values={"spec": spec}, at=at, actor=actor)


def delete(conn: Connection, name: str) -> bool:
    return named_rows.delete(conn, T, _COUNTER, name)
