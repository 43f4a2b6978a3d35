"""Backup (a consistent online copy of a SQLite store), retention pruning in short batches, and the
write probe behind /health.

Pruning never holds the store's write lock for long: a kill-switch engage waiting behind it must get
the lock within a second. Each batch is one short write transaction (its size adapted so that it holds
the lock for about ``PRUNE_LOCK_TARGET``), and on SQLite the prune then pauses longer than SQLite's
longest busy-wait sleep (100 ms), so a writer waiting in its busy handler wakes inside the gap and gets
the lock; PostgreSQL queues lock waiters, so there a batch follows the next at once.

Space: on PostgreSQL autovacuum reuses what a prune frees. A SQLite file keeps its size unless the store
uses ``auto_vacuum=INCREMENTAL``; then each prune returns freed pages to the filesystem in small steps
(``PRAGMA incremental_vacuum``). A store created without it needs one full VACUUM, which rewrites the
file and holds the lock for as long, so it is not done at prune time: docs/deployment.md says how.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storage import partitions as parts
from storage import rollups
from storage.db import LANES
from storage.tables import (
    action_requests,
    alert_outbox,
    breaker_events,
    command_events,
    eval_coverage,
    gate_decisions,
    grants,
    incidents,
    metrics_snapshots,
    readiness_assessments,
    safety_events,
)

if TYPE_CHECKING:
    from storage.store import Store


class BackupNotSupported(RuntimeError):
    pass


def backup_sqlite(engine: Engine, target: Path, *, compress: bool = False) -> int:
    """Copy the live store with SQLite's online backup API; returns the copy's size in bytes.

    Writers may keep writing meanwhile: the copy is a consistent snapshot. The copy is written beside
    the target and renamed into place, so a failed backup never leaves a half-written file at PATH.
    ``compress``: the checked copy is gzipped into PATH (`gunzip` restores the file; seed 001's runbook).
    """
    if engine.dialect.name != "sqlite":
        raise BackupNotSupported(
            "`govcon db backup` copies SQLite stores only. For PostgreSQL use pg_dump, e.g.\n"
            "  pg_dump --format=custom --file=governance.dump \"$GOVCON_DATABASE_URL\"\n"
            "(with the URL's scheme written postgresql://) and restore with pg_restore.")
    source = engine.url.database
    if source is None:
        raise BackupNotSupported("this SQLite store has no file to copy (an in-memory database)")
    target = target.expanduser().resolve()
    if target.exists():
        raise FileExistsError(f"{target} exists already: choose a new file name for the backup")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    # owner-only, whatever the umask: the copy holds what the store does (token hashes, sinks' routing keys),
    # and the store itself is 0600 (`db init`); SQLite gives the copy's journal the same mode
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
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
        if compress:
            packed = target.with_name(target.name + ".partial.gz")
            try:
                fd = os.open(packed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with open(partial, "rb") as raw, os.fdopen(fd, "wb") as file, \
                        gzip.GzipFile(fileobj=file, mode="wb", compresslevel=6) as out:
                    shutil.copyfileobj(raw, out, 1 << 20)
                os.replace(packed, target)
            finally:
                if packed.exists():
                    packed.unlink()
        else:
            os.replace(partial, target)
    finally:
        src.close()
        if partial.exists():
            partial.unlink()
    return target.stat().st_size


def _backup_family(name: str) -> tuple[str, str]:
    """(prefix, suffix) of a backup's file name: what precedes its first digit, and its extensions
    (``governance-20261206.db.gz`` -> ``governance-``, ``.db.gz``)."""
    m = re.match(r"^([^0-9]*)", name)
    prefix = m.group(1) if m else ""
    suffix = "".join(Path(name).suffixes[-2:]) if name.endswith(".gz") else Path(name).suffix
    return prefix, suffix


def retire_backups(target: Path, keep: timedelta, now: float) -> list[Path]:
    """Delete the older backups beside ``target``: regular files of the same family (the same name
    prefix before the first digit and the same extensions) last modified more than ``keep`` before
    ``now`` (epoch seconds) — seed 001's `find -name "governance-*.db.gz" -mtime +30 -delete`. Never the
    new backup itself, never a directory or a symlink. Returns what it deleted."""
    target = target.expanduser().resolve()
    prefix, suffix = _backup_family(target.name)
    if not prefix or not suffix:
        raise ValueError(f"cannot tell which files are older backups of {target.name}: name backups like "
                         "governance-20261206.db.gz (a prefix, a date, an extension)")
    gone = []
    for path in sorted(target.parent.iterdir()):
        if path == target or path.is_symlink() or not path.is_file():
            continue
        if _backup_family(path.name) != (prefix, suffix) or not path.name[len(prefix):][:1].isdigit():
            continue
        if now - path.stat().st_mtime > keep.total_seconds():
            path.unlink()
            gone.append(path)
    return gone


def _dead_alert_with_same_key(t: sa.Table) -> sa.ColumnElement[bool]:
    dead = alert_outbox.alias("dead")
    return sa.exists().where(dead.c.status == "dead", dead.c.sink == t.c.sink, dead.c.dedup_key == t.c.dedup_key)


#: (table, time column, extra condition) — what retention may delete
def _not_named_by_a_kept_incident(before: datetime) -> Callable[[sa.Table], sa.ColumnElement[bool]]:
    """A command an incident still in the store names is kept: it attributes that incident."""
    inc = incidents

    def condition(t: sa.Table) -> sa.ColumnElement[bool]:
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
    # the gate's decision log; decided action requests; grants only once finished and a week older than the
    # cut-off, so that no weekly budget ever loses a grant it must count ("budget-window")
    (gate_decisions, "at", None),
    (action_requests, "requested_at", lambda t: t.c.status != "pending"),
    (grants, "granted_at", "budget-window"),
]
#: the longest window a gate budget counts over (max_per_week)
BUDGET_WINDOW = timedelta(days=7)


#: how long one prune batch should hold the write lock (the hard bound is 100 ms: see the module doc)
PRUNE_LOCK_TARGET = 0.06
#: the pause between batches on SQLite: longer than SQLite's longest busy-handler sleep (100 ms)
SQLITE_PRUNE_GAP = 0.12
PRUNE_BATCH_START, PRUNE_BATCH_MIN, PRUNE_BATCH_MAX = 500, 50, 20_000
#: pages one incremental-vacuum step frees at most (4 MiB of 4 KiB pages), and the time it may take
VACUUM_STEP_PAGES = 1024
VACUUM_STEP_SECONDS = 0.04


def _condition(table: sa.Table, column: str, extra: Any, before: datetime) -> sa.ColumnElement[bool]:
    cond = table.c[column] < before
    if extra == "budget-window":
        cond = sa.and_(table.c[column] < before - BUDGET_WINDOW, table.c.status != "granted")
        extra = None
    if extra == "kept-incidents":
        extra = _not_named_by_a_kept_incident(before)
    if extra is not None:
        cond = sa.and_(cond, extra(table))
    return cond


def prune(conn: Connection, before: datetime) -> dict[str, int]:
    """Delete raw events and snapshots older than ``before`` in the caller's one transaction (small
    stores and tests); ``prune_in_batches`` is what retention runs."""
    out = {}
    for table, column, extra in _PRUNABLE:
        cond = _condition(table, column, extra, before)
        if table is command_events:  # the hourly rollups follow (storage/rollups.py)
            out[table.name] = rollups.delete_where(conn, cond)
            rollups.drop_empty(conn)
        else:
            out[table.name] = conn.execute(sa.delete(table).where(cond)).rowcount
    return out


def prune_in_batches(write: Callable[[], AbstractContextManager[Connection]], dialect: str, before: datetime, *,
                     lock_target: float = PRUNE_LOCK_TARGET, sleep: Callable[[float], None] = time.sleep,
                     removed: dict[str, int] | None = None,
                     events_write: Callable[[], AbstractContextManager[Connection]] | None = None,
                     now: datetime | None = None, partitions: dict[str, Any] | None = None) -> dict[str, int]:
    """What ``prune`` deletes, in short write transactions (``write()`` opens one) of adaptive size;
    never open events, proposals, unsent alerts or audit. Returns the rows removed per table (also
    counted into ``removed`` as it goes, so a caller knows what an interrupted prune did).

    PostgreSQL, given ``events_write`` (a transaction without the store-wide write lock): first the
    partitions of command_events for ``now``'s month and the next two are made, then every month wholly
    older than ``before`` is dropped whole (storage/partitions.py); what was made and dropped goes into
    ``partitions``. The boundary month and the DEFAULT partition are deleted from in batches as before."""
    gap = SQLITE_PRUNE_GAP if dialect == "sqlite" else 0.0
    removed = {} if removed is None else removed
    removed[command_events.name] = 0
    if dialect == "postgresql" and events_write is not None:
        info = {} if partitions is None else partitions
        if now is not None:
            info["made"] = parts.ensure_months(events_write, now, sleep=sleep)
        info["dropped"] = []
        for dropped in parts.drop_older(events_write, before, sleep=sleep):
            info["dropped"].append(dropped)
            removed[command_events.name] += dropped["rows"]
    size = PRUNE_BATCH_START
    for table, column, extra in _PRUNABLE:
        if table is not command_events:
            removed[table.name] = 0
        pk = table.primary_key.columns.values()[0]
        while True:
            cond = _condition(table, column, extra, before)
            started = time.perf_counter()
            with write() as conn:
                if table is command_events:  # the hourly rollups follow (storage/rollups.py)
                    n = rollups.delete_where(conn, cond, size,
                                             outer=command_events.c.at < before if dialect == "postgresql" else None)
                else:
                    batch = sa.select(pk).where(cond).limit(size).scalar_subquery()
                    n = conn.execute(sa.delete(table).where(pk.in_(batch))).rowcount
            held = time.perf_counter() - started
            removed[table.name] += n
            if n < size:
                break
            if held > lock_target * 1.4:  # 84 ms: shrink before the 100 ms bound
                size = max(PRUNE_BATCH_MIN, int(size * lock_target / held))
            elif held < lock_target / 2:
                size = min(PRUNE_BATCH_MAX, size * 2)
            sleep(gap)
        if removed[table.name] and gap:
            sleep(gap)
    return removed


def incremental_vacuum(write: Callable[[], AbstractContextManager[Connection]], dialect: str, *,
                       max_steps: int = 10_000, sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Give the pages a prune freed back to the filesystem, a step at a time (SQLite stores with
    auto_vacuum=INCREMENTAL); returns the pages freed, or None when the store does not do that."""
    if dialect != "sqlite":
        return None
    with write() as conn:
        if conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 2:
            return None
    freed = 0
    for _ in range(max_steps):
        with write() as conn:
            before = conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
            if not before:
                break
            # Python's sqlite3 steps a statement without result columns once, and the pragma frees one page
            # per step (a result row it does not declare): so one page per execute, up to the step's
            # pages or time (measured: PRAGMA incremental_vacuum(1024) executed once freed 1 page)
            cursor = conn.connection.cursor()
            deadline = time.perf_counter() + VACUUM_STEP_SECONDS
            for _ in range(VACUUM_STEP_PAGES):
                cursor.execute("PRAGMA incremental_vacuum(1)")
                if time.perf_counter() > deadline:
                    break
            cursor.close()
            step = before - (conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
        freed += step
        if step <= 0:  # nothing freed: never loop (10,000 gaps would be 20 minutes)
            break
        sleep(SQLITE_PRUNE_GAP)
    return freed


# --- the write probe of /health -----------------------------------------------------------------

#: a SQLite filesystem with less free space than this takes no more writes worth the name
MIN_FREE_BYTES = 1024 * 1024


class WriteProbe:
    """Can the store take writes now? ``check()`` returns None when it can, else why not; the probe
    itself runs at most every ``every`` seconds (the answer is cached in between).

    SQLite: the filesystem's free space (a full disk fails at COMMIT, when BEGIN still works) and a
    ``BEGIN IMMEDIATE`` + ROLLBACK on a connection of its own with a short busy timeout (read-only,
    unopenable, or the write lock held too long). PostgreSQL: the session's ``transaction_read_only``
    (a standby, default_transaction_read_only). Both: a write that failed for want of the store in the
    last ``remember`` seconds (on PostgreSQL the only sign of a full disk)."""

    def __init__(self, store: Store, *, every: float = 5.0, remember: float = 30.0, busy_timeout: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.every = every
        self.remember = remember
        self.busy_timeout = busy_timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._answer: str | None = None
        self._failed_at: float | None = None
        self._failure = ""
        for engine in _engines(store):
            sa.event.listen(engine, "handle_error", self._on_error)

    def _on_error(self, context: Any) -> None:
        conn = context.connection
        writing = conn is not None and conn.get_execution_options().get("govcon_write")
        orig = context.original_exception
        if writing and (isinstance(context.sqlalchemy_exception, sa.exc.OperationalError)
                        or getattr(orig, "sqlstate", None) == "25006"):
            with self._lock:
                self._failed_at, self._failure = self._monotonic(), str(orig).splitlines()[0][:300]

    def check(self) -> str | None:
        now = self._monotonic()
        with self._lock:
            if self._checked_at is None or now - self._checked_at >= self.every:
                self._checked_at = now
                self._answer = self._probe()
            if self._failed_at is not None and now - self._failed_at < self.remember:
                ago = now - self._failed_at
                return f"a write failed {ago:.0f} s ago: {self._failure}"
            return self._answer

    def _probe(self) -> str | None:
        try:
            if self.store.dialect == "sqlite":
                return self._probe_sqlite()
            return self._probe_postgres()
        except Exception as exc:
            return f"the write probe failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    def _probe_sqlite(self) -> str | None:
        path = self.store.engine.url.database
        if not path or path == ":memory:":
            return None
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        free = st.f_bavail * st.f_frsize
        if free < MIN_FREE_BYTES:
            return f"the store's filesystem is full ({free // 1024} KiB free)"
        try:
            db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=self.busy_timeout,
                                 isolation_level=None)
        except sqlite3.Error as exc:
            return f"cannot open the store for writing: {exc}"
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return f"the store's write lock has been held for over {self.busy_timeout:g} s"
            return f"cannot write to the store: {exc}"
        finally:
            db.close()
        return None

    def _probe_postgres(self) -> str | None:
        with self.store.read(lane="safety") as conn:  # the lane of the safety paths: short deadlines
            conn.exec_driver_sql("SET LOCAL statement_timeout = 1000")
            read_only = conn.exec_driver_sql("SELECT current_setting('transaction_read_only')").scalar()
        if read_only == "on":
            return "the store is read-only (a standby, or default_transaction_read_only is on)"
        return None


def _engines(store: Store) -> list[Engine]:
    """The store's engine and, where the store has connection lanes, each lane's."""
    engines = [store.engine]
    engine_for = getattr(store, "engine_for", None)
    if engine_for is not None:
        for name in LANES:
            engine = engine_for(name)
            if all(engine is not e for e in engines):
                engines.append(engine)
    return engines
