"""Reading the audit log (appending and verifying live in storage/audit.py)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import audit_log as T


def list_entries(conn: Connection, *, limit: int = 100, search: str | None = None,
                 before_seq: int | None = None) -> Sequence[Row]:
    q = sa.select(T).order_by(T.c.seq.desc()).limit(limit)
    if search:
        like = f"%{search}%"
        q = q.where(sa.or_(T.c.actor.ilike(like), T.c.action.ilike(like), T.c.target.ilike(like),
                           T.c.reason.ilike(like)))
    if before_seq is not None:
        q = q.where(T.c.seq < before_seq)
    return conn.execute(q).all()


def entries_for(conn: Connection, *, target: str, actions: Sequence[str], limit: int = 100) -> Sequence[Row]:
    """The newest entries of these actions about ``target`` (the action index narrows; the target is checked on
    those rows)."""
    q = sa.select(T).where(T.c.action.in_(list(actions)), T.c.target == target).order_by(T.c.seq.desc()).limit(limit)
    return conn.execute(q).all()
