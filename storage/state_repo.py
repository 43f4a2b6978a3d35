"""Governance state (one row), phase history, kill-switch drills and the leader lease."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import governance_state as STATE
from storage.tables import kill_switch_drills as DRILLS
from storage.tables import leader_lease as LEASE
from storage.tables import phase_history as PHASES


def get_state(conn: Connection) -> Row | None:
    return conn.execute(sa.select(STATE).where(STATE.c.id == 1)).first()


def create_state(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(STATE).values(id=1, **fields))


def update_state(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.update(STATE).where(STATE.c.id == 1).values(**fields))


def start_phase(conn: Connection, *, phase: str, at: datetime, actor: str, reason: str,
                proposal_id: str | None = None, breaker_event_id: str | None = None) -> None:
    """Close the open phase-history row and open a new one."""
    conn.execute(sa.update(PHASES).where(PHASES.c.ended_at.is_(None)).values(ended_at=at))
    conn.execute(sa.insert(PHASES).values(phase=phase, started_at=at, actor=actor, reason=reason,
                                          proposal_id=proposal_id, breaker_event_id=breaker_event_id))


def phase_history(conn: Connection) -> Sequence[Row]:
    return conn.execute(sa.select(PHASES).order_by(PHASES.c.started_at, PHASES.c.id)).all()


def record_drill(conn: Connection, *, at: datetime, operator: str, passed: bool, details: str) -> None:
    conn.execute(sa.insert(DRILLS).values(at=at, operator=operator, passed=passed, details=details))


def last_drill(conn: Connection, *, passed_only: bool = True) -> Row | None:
    q = sa.select(DRILLS).order_by(DRILLS.c.at.desc()).limit(1)
    if passed_only:
        q = q.where(DRILLS.c.passed.is_(True))
    return conn.execute(q).first()


def get_lease(conn: Connection, name: str = "scheduler") -> Row | None:
    return conn.execute(sa.select(LEASE).where(LEASE.c.name == name)).first()


def try_acquire_lease(conn: Connection, *, name: str, holder: str, now: datetime,
                      expires_at: datetime) -> bool:
    """Take or renew the lease if it is free, expired, or ours. Call inside a write transaction."""
    current = get_lease(conn, name)
    if current is None:
        conn.execute(sa.insert(LEASE).values(name=name, holder=holder, acquired_at=now, renewed_at=now,
                                             expires_at=expires_at))
        return True
    if current.holder == holder:
        conn.execute(sa.update(LEASE).where(LEASE.c.name == name)
                     .values(renewed_at=now, expires_at=expires_at))
        return True
    if current.expires_at <= now:
        conn.execute(sa.update(LEASE).where(LEASE.c.name == name)
                     .values(holder=holder, acquired_at=now, renewed_at=now, expires_at=expires_at))
        return True
    return False


def release_lease(conn: Connection, *, name: str, holder: str) -> None:
    conn.execute(sa.delete(LEASE).where(LEASE.c.name == name, LEASE.c.holder == holder))
