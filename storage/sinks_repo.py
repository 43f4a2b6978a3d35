"""Alert sinks and their routing in the store (table ``alert_sinks``) and the version counter that tells
a process to reload them (``governance_state.sinks_version``): the shape storage/named_rows.py keeps.
``secret`` (the URL, a routing key) is returned to the engine, which never prints it. Call the writers
inside a write transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage import named_rows
from storage.tables import alert_sinks as T
from storage.tables import governance_state as STATE

_ALL = sa.select(T).order_by(T.c.name)
_COUNTER = STATE.c.sinks_version


def all_sinks(conn: Connection) -> list[Row]:
    return list(conn.execute(_ALL).all())


def get(conn: Connection, name: str) -> Row | None:
    return named_rows.get(conn, T, name)


def version(conn: Connection) -> int | None:
    return named_rows.version(conn, _COUNTER)


def upsert(conn: Connection, *, name: str, kind: str, settings: dict[str, Any], secret: dict[str, Any],
           at: datetime, actor: str) -> bool:
    """Create or replace; True when it was created."""
    return named_rows.upsert(conn, T, _COUNTER, name=name, values={"kind": kind, "settings": settings,
                                                                   "secret": secret}, at=at, actor=actor)


def delete(conn: Connection, name: str) -> bool:
    return named_rows.delete(conn, T, _COUNTER, name)
