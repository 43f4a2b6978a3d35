"""The alert outbox: alerts written in the transaction that raised them, delivered later.

Rows go ``pending`` -> ``sent`` or ``dead``; an operator sends a dead row back to ``pending`` or marks it
``dismissed`` (`govcon alerts`). A deliverer claims a due row by pushing its
``next_attempt_at`` forward (a lease) with a conditional update, so two deliverers never both send it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import alert_outbox as OUTBOX

ERROR_MAX = 1000


def insert_many(conn: Connection, rows: Iterable[dict[str, Any]]) -> int:
    """Insert pending rows (keys: created_at, sink, severity, kind, dedup_key, payload, next_attempt_at)."""
    rows = [{"status": "pending", "attempts": 0, **r} for r in rows]
    if rows:
        conn.execute(sa.insert(OUTBOX), rows)
    return len(rows)


def due(conn: Connection, now: datetime, *, limit: int = 100) -> Sequence[Row]:
    """Pending rows whose time has come, oldest first."""
    q = (sa.select(OUTBOX).where(OUTBOX.c.status == "pending", OUTBOX.c.next_attempt_at <= now)
         .order_by(OUTBOX.c.id).limit(limit))
    return conn.execute(q).all()


def claim(conn: Connection, row_id: int, now: datetime, lease_until: datetime) -> bool:
    """Take a due row for sending until ``lease_until``; False if another deliverer took it first."""
    result = conn.execute(
        sa.update(OUTBOX)
        .where(OUTBOX.c.id == row_id, OUTBOX.c.status == "pending", OUTBOX.c.next_attempt_at <= now)
        .values(next_attempt_at=lease_until))
    return result.rowcount == 1


def mark_sent(conn: Connection, row_id: int, *, sent_at: datetime, attempts: int) -> None:
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id)
                 .values(status="sent", sent_at=sent_at, attempts=attempts, last_error=None))


def mark_retry(conn: Connection, row_id: int, *, attempts: int, next_attempt_at: datetime, error: str) -> None:
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id)
                 .values(attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:ERROR_MAX]))


def mark_dead(conn: Connection, row_id: int, *, attempts: int, error: str) -> None:
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id)
                 .values(status="dead", attempts=attempts, last_error=error[:ERROR_MAX]))


def count(conn: Connection, *, status: str | None = "pending") -> int:
    q = sa.select(sa.func.count()).select_from(OUTBOX)
    if status is not None:
        q = q.where(OUTBOX.c.status == status)
    return conn.execute(q).scalar_one()


def list_rows(conn: Connection, *, status: str | None = None, statuses: Iterable[str] | None = None,
              dedup_key: str | None = None, sink: str | None = None, limit: int | None = None,
              newest_first: bool = False) -> Sequence[Row]:
    q = sa.select(OUTBOX).order_by(OUTBOX.c.id.desc() if newest_first else OUTBOX.c.id)
    if status is not None:
        q = q.where(OUTBOX.c.status == status)
    if statuses is not None:
        q = q.where(OUTBOX.c.status.in_(list(statuses)))
    if dedup_key is not None:
        q = q.where(OUTBOX.c.dedup_key == dedup_key)
    if sink is not None:
        q = q.where(OUTBOX.c.sink == sink)
    if limit:
        q = q.limit(limit)
    return conn.execute(q).all()


def counts_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(sa.select(OUTBOX.c.status, sa.func.count()).group_by(OUTBOX.c.status)).all()
    return {status: n for status, n in rows}


def by_ids(conn: Connection, ids: Iterable[int]) -> Sequence[Row]:
    return conn.execute(sa.select(OUTBOX).where(OUTBOX.c.id.in_(list(ids))).order_by(OUTBOX.c.id)).all()


def superseded(conn: Connection, row: Row) -> bool:
    """A trigger whose resolve (same sink, same dedup key) was queued after it, whatever became of that
    resolve: sending the trigger now would open an incident that is already over. (Retention keeps such
    a resolve while the dead trigger is there: storage/maintenance.py.)"""
    if row.kind != "trigger":
        return False
    return conn.execute(sa.select(sa.func.count()).select_from(OUTBOX).where(
        OUTBOX.c.sink == row.sink, OUTBOX.c.dedup_key == row.dedup_key, OUTBOX.c.kind == "resolve",
        OUTBOX.c.id > row.id)).scalar_one() > 0


def requeue(conn: Connection, row_id: int, now: datetime) -> None:
    """A dead row back to pending, due now, its attempts counted afresh (its last error kept until sent)."""
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id, OUTBOX.c.status == "dead")
                 .values(status="pending", attempts=0, next_attempt_at=now))


def dismiss(conn: Connection, row_id: int) -> None:
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == row_id, OUTBOX.c.status == "dead")
                 .values(status="dismissed"))
