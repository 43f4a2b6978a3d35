"""Governance reports (JSON and Markdown)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import phase_history as PHASES
from storage.tables import reports as REPORTS


def insert(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(REPORTS).values(**fields))


def latest(conn: Connection) -> Row | None:
    return conn.execute(sa.select(REPORTS).order_by(REPORTS.c.created_at.desc()).limit(1)).first()


def list_reports(conn: Connection, limit: int = 20) -> Sequence[Row]:
    return conn.execute(sa.select(REPORTS).order_by(REPORTS.c.created_at.desc()).limit(limit)).all()


def get(conn: Connection, report_id: str) -> Row | None:
    return conn.execute(sa.select(REPORTS).where(REPORTS.c.id == report_id)).first()


def reversions_during_validation(conn: Connection, since: datetime) -> Sequence[Row]:
    """Phase-history rows since a time that reverted to L3 while a proposal's validation period ran."""
    return conn.execute(sa.select(PHASES).where(PHASES.c.started_at >= since, PHASES.c.phase == "L3",
                                                PHASES.c.proposal_id.is_not(None))
                        .order_by(PHASES.c.started_at)).all()
