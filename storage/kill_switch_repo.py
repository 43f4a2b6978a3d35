"""Which engagement of the kill switch is the current one.

An engagement is identified by the audit entry that made it (``kill_switch.engage``, whose ``details``
say whether it was a drill): a drill releases the switch only while the newest engagement is still its
own, and a real engage over a drill's engagement makes a new one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage.tables import audit_log as T

ENGAGE_ACTION = "kill_switch.engage"
RELEASE_ACTION = "kill_switch.release"


def last_engagement(conn: Connection) -> tuple[int, dict[str, Any]] | None:
    """(audit seq, details) of the newest engagement, or None when the switch was never engaged."""
    return _last(conn, ENGAGE_ACTION)


def last_release(conn: Connection) -> tuple[int, dict[str, Any]] | None:
    """(audit seq, details) of the newest release (its details name the marker file it removed)."""
    return _last(conn, RELEASE_ACTION)


def _last(conn: Connection, action: str) -> tuple[int, dict[str, Any]] | None:
    newest = sa.select(sa.func.max(T.c.seq)).where(T.c.action == action).scalar_subquery()
    row = conn.execute(sa.select(T.c.seq, T.c.details).where(T.c.seq == newest)).first()
    return (row.seq, row.details or {}) if row is not None else None
