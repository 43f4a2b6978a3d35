"""Attestations, metrics snapshots and readiness assessments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import attestations as ATT
from storage.tables import metrics_snapshots as SNAP
from storage.tables import readiness_assessments as ASSESS


def add_attestation(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(ATT).values(**fields))


def latest_attestations(conn: Connection) -> dict[str, Row]:
    """The newest attestation of each item (an attestation replaces the ones before it)."""
    newest = (sa.select(ATT.c.item_slug, sa.func.max(ATT.c.id).label("id"))
              .group_by(ATT.c.item_slug).subquery())
    rows = conn.execute(sa.select(ATT).join(newest, ATT.c.id == newest.c.id)).all()
    return {r.item_slug: r for r in rows}


def add_snapshot(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(SNAP).values(**fields))


def snapshots(conn: Connection, since: datetime, until: datetime | None = None) -> Sequence[Row]:
    q = sa.select(SNAP).where(SNAP.c.taken_at >= since).order_by(SNAP.c.taken_at)
    if until is not None:
        q = q.where(SNAP.c.taken_at < until)
    return conn.execute(q).all()


def last_snapshot_at(conn: Connection) -> datetime | None:
    return conn.execute(sa.select(sa.func.max(SNAP.c.taken_at))).scalar_one()


def add_assessment(conn: Connection, **fields: Any) -> None:
    conn.execute(sa.insert(ASSESS).values(**fields))


def assessments(conn: Connection, since: datetime) -> Sequence[Row]:
    return conn.execute(sa.select(ASSESS.c.taken_at, ASSESS.c.score, ASSESS.c.ready)
                        .where(ASSESS.c.taken_at >= since).order_by(ASSESS.c.taken_at)).all()
