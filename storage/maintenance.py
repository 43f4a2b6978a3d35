"""Backup (a consistent online copy of a SQLite store) and retention pruning."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storage.tables import (alert_outbox, breaker_events, command_events, eval_coverage, incidents,
                            metrics_snapshots, readiness_assessments, safety_events)


class BackupNotSupported(RuntimeError):
    pass


def backup_sqlite(engine: Engine, target: Path) -> int:
    """Copy the live store with SQLite's online backup API; returns the copy's size in bytes.

    Writers may keep writing meanwhile: the copy is a consistent snapshot. The copy is written beside
    the target and renamed into place, so a failed backup never leaves a half-written file at PATH.
    """
    if engine.dialect.name != "sqlite":
        raise BackupNotSupported(
            "`govcon db backup` copies SQLite stores only. For PostgreSQL use pg_dump, e.g.\n"
            "  pg_dump --format=custom --file=governance.dump \"$GOVCON_DATABASE_URL\"\n"
            "(with the URL's scheme written postgresql://) and restore with pg_restore.")
    source = engine.url.database
    target = target.expanduser().resolve()
    if target.exists():
        raise FileExistsError(f"{target} exists already: choose a new file name for the backup")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    src = sqlite3.connect(source, timeout=10)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise RuntimeError(f"the backup copy failed its integrity check: {ok}")
        finally:
            dst.close()
        os.replace(partial, target)
    finally:
        src.close()
        if partial.exists():
            partial.unlink()
    return target.stat().st_size


def _dead_alert_with_same_key(t):
    dead = alert_outbox.alias("dead")
    return sa.exists().where(dead.c.status == "dead", dead.c.sink == t.c.sink, dead.c.dedup_key == t.c.dedup_key)


#: (table, time column, extra condition) — what retention may delete
def _not_named_by_a_kept_incident(before: datetime):
    """A command an incident still in the store names is kept: it attributes that incident."""
    inc = incidents

    def condition(t):
        return ~sa.exists().where(inc.c.command_id == t.c.command_id, inc.c.at >= before)
    return condition


_PRUNABLE = [
    (command_events, "at", "kept-incidents"),
    (incidents, "at", None),
    (safety_events, "at", None),
    (eval_coverage, "at", None),
    (metrics_snapshots, "taken_at", None),
    (readiness_assessments, "taken_at", None),
    # breaker events only once resolved: an open event is never pruned, whatever its age
    (breaker_events, "timestamp", lambda t: t.c.resolved.is_(True)),
    # alerts once sent or dismissed: a dead one stays until an operator has retried or dismissed it, and
    # so do the alerts of its sink and dedup key (the resolve that makes a dead trigger superseded)
    (alert_outbox, "created_at", lambda t: t.c.status.in_(("sent", "dismissed")) & ~_dead_alert_with_same_key(t)),
]


def prune(conn: Connection, before: datetime) -> dict[str, int]:
    """Delete raw events and snapshots older than ``before``; never open events, proposals, unsent alerts or audit."""
    removed: dict[str, int] = {}
    for table, column, extra in _PRUNABLE:
        cond = table.c[column] < before
        if extra == "kept-incidents":
            extra = _not_named_by_a_kept_incident(before)
        if extra is not None:
            cond = sa.and_(cond, extra(table))
        removed[table.name] = conn.execute(sa.delete(table).where(cond)).rowcount
    return removed
