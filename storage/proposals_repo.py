"""Scope-expansion proposals and their approvals."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.models import Approval, Proposal

PROPOSALS = Proposal.__table__
APPROVALS = Approval.__table__


def count_pending(conn: Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(PROPOSALS)
                        .where(PROPOSALS.c.status == "pending")).scalar_one()


def list_proposals(conn: Connection, *, status: str | None = None) -> list[Row]:
    q = sa.select(PROPOSALS).order_by(PROPOSALS.c.created_at.desc())
    if status:
        q = q.where(PROPOSALS.c.status == status)
    return conn.execute(q).all()
