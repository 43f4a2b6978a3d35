"""Scope-expansion proposals and their approvals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import approvals as APPROVALS
from storage.tables import proposals as PROPOSALS


def count_pending(conn: Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(PROPOSALS)
                        .where(PROPOSALS.c.status == "pending")).scalar_one()


def list_proposals(conn: Connection, *, status: str | None = None) -> Sequence[Row]:
    q = sa.select(PROPOSALS).order_by(PROPOSALS.c.created_at.desc())
    if status:
        q = q.where(PROPOSALS.c.status == status)
    return conn.execute(q).all()


def get(conn: Connection, proposal_id: str) -> Row | None:
    return conn.execute(sa.select(PROPOSALS).where(PROPOSALS.c.id == proposal_id)).first()


def insert(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(PROPOSALS).values(**fields))


def update(conn: Connection, proposal_id: str, **fields: Any) -> None:
    conn.execute(sa.update(PROPOSALS).where(PROPOSALS.c.id == proposal_id).values(**fields))


def approvals(conn: Connection, proposal_id: str) -> Sequence[Row]:
    return conn.execute(sa.select(APPROVALS).where(APPROVALS.c.proposal_id == proposal_id)
                        .order_by(APPROVALS.c.at, APPROVALS.c.id)).all()


def approvals_for(conn: Connection, proposal_ids: list[str]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {pid: [] for pid in proposal_ids}
    if proposal_ids:
        for row in conn.execute(sa.select(APPROVALS).where(APPROVALS.c.proposal_id.in_(proposal_ids))
                                .order_by(APPROVALS.c.at, APPROVALS.c.id)):
            out[row.proposal_id].append(row)
    return out


def add_approval(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(APPROVALS).values(**fields))
