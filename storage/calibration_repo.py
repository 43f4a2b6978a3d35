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
