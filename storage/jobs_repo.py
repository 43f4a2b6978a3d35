"""Claims of scheduled-job slots: a slot (job, scheduled time) can be claimed once, ever."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from storage.tables import job_runs as RUNS

if TYPE_CHECKING:
    from storage.store import Store


def claim(store: Store, *, job_id: str, slot: str, holder: str, now: datetime) -> bool:
    try:
        with store.write(serialise=False) as conn:
            conn.execute(sa.insert(RUNS).values(job_id=job_id, slot=slot, holder=holder, started_at=now))
        return True
    except IntegrityError:
        return False


def runs(conn: Connection, job_id: str | None = None) -> Sequence[Row]:
    q = sa.select(RUNS).order_by(RUNS.c.id)
    if job_id:
        q = q.where(RUNS.c.job_id == job_id)
    return conn.execute(q).all()
