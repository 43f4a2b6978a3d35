"""Stated confidence and outcome of finished grants: the rows behind an agent's calibration."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from storage.tables import grants as GR

#: outcomes that say whether the action worked; ``released`` (never acted) and ``granted`` say nothing
JUDGED = ("succeeded", "failed", "rolled_back", "expired")


def judged_grants(conn: Connection, *, since: datetime, agent: str | None = None, command_type: str | None = None,
                  limit: int = 20_000) -> list[tuple[str, str, float, str]]:
    """(agent, command type, stated confidence, status) of the newest ``limit`` grants issued since
    ``since`` that stated a confidence and have an outcome."""
    query = sa.select(GR.c.agent, GR.c.command_type, GR.c.confidence, GR.c.status).where(
        GR.c.granted_at >= since, GR.c.status.in_(JUDGED), GR.c.confidence.is_not(None))
    if agent is not None:
        query = query.where(GR.c.agent == agent)
    if command_type is not None:
        query = query.where(GR.c.command_type == command_type)
    query = query.order_by(GR.c.granted_at.desc()).limit(limit)
    return [(r.agent, r.command_type, float(r.confidence), r.status) for r in conn.execute(query)]


def bin_counts(conn: Connection, *, agent: str, command_type: str, since: datetime, low: float, high: float,
               closed: bool) -> tuple[int, int]:
    """(outcomes, successes) of this agent's grants of this type since ``since`` whose stated confidence is in
    [low, high) — [low, high] for the last bin."""
    upper = GR.c.confidence <= high if closed else GR.c.confidence < high
    row = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(
        sa.func.sum(sa.case((GR.c.status == "succeeded", 1), else_=0)), 0)).where(
        GR.c.agent == agent, GR.c.command_type == command_type, GR.c.granted_at >= since,
        GR.c.status.in_(JUDGED), GR.c.confidence >= low, upper)).one()
    return int(row[0]), int(row[1])
