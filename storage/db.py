"""Engine and connection setup: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL (psycopg 3).

Write transactions are serialised store-wide, so that every state change sees the state it changes and
the audit chain has one order: on SQLite with ``BEGIN IMMEDIATE``, on PostgreSQL with a transaction-level
advisory lock. Reads never take that lock.

Connections come in *lanes* (``Lane``): each lane is an engine with a pool of its own, so that the
safety paths (the gate, the kill switch, revert, /health) and ingest never wait for a connection that
ordinary reads hold. On PostgreSQL a lane also bounds how long it waits: ``connect_timeout`` for new
connections, ``statement_timeout`` and ``lock_timeout`` for the server, and a client-side deadline per
transaction (``Deadline``): a server that stops answering altogether (paused, a dead network path whose
kernel still acknowledges) enforces no timeout of its own, so a watchdog thread cuts the connection's
socket when the deadline passes, and the caller gets StoreUnavailable instead of a hang.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import itertools
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from storage import checkpoint, commit_hooks, writer_queue

if TYPE_CHECKING:
    import psycopg

#: advisory lock key for store-wide write serialisation on PostgreSQL ("govcon" in ASCII, truncated)
WRITE_LOCK_KEY = 0x676F76636F6E
#: the statement that takes it: advisory locks are database-wide, so the key is mixed with the schema the
#: store lives in, and two stores in one database (each in its own schema) do not serialise each other
WRITE_LOCK_SQL = sa.text("SELECT pg_advisory_xact_lock(CAST(:k AS bigint) # hashtext(current_schema()))")
#: the safety lane's lock statement also sets, for the transaction, one generic plan per prepared statement (the
#: gate's snapshot, see storage/actions_repo.py ``plan_once``): one round trip instead of two
WRITE_LOCK_GENERIC_SQL = sa.text("SELECT pg_advisory_xact_lock(CAST(:k AS bigint) # hashtext(current_schema())), "
                                 "set_config('plan_cache_mode', 'force_generic_plan', true)")
#: Connection.info key: this transaction has generic plans set already
GENERIC_PLANS = "govcon_generic_plans"
BUSY_TIMEOUT_MS = 10_000
#: seconds to wait for a new PostgreSQL connection (libpq's minimum is 2)
CONNECT_TIMEOUT_S = 2


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or read; callers that decide safety fail closed on this."""


@dataclass(frozen=True)
class Lane:
    """A connection budget: its own pool, and how long its callers may wait (PostgreSQL)."""

    name: str
    pool_size: int
    max_overflow: int
    pool_timeout: float  #: seconds to wait for a pooled connection before StoreUnavailable
    deadline: float | None = None  #: seconds a transaction may take before its connection is cut
    statement_timeout_ms: int | None = None
    lock_timeout_ms: int | None = None


#: ordinary reads and writes: the CLI, the console, the API's reads, the scheduler, maintenance
DEFAULT = Lane("default", pool_size=5, max_overflow=10, pool_timeout=10.0)
#: the environment variable that sets the safety lane's deadline in seconds (default 1.5): a store over a
#: slow link may need more; the gate fails closed, and /health reports unhealthy, once it passes
SAFETY_DEADLINE_ENV = "GOVCON_SAFETY_DEADLINE"
SAFETY_DEADLINE_DEFAULT = 1.5
SAFETY_DEADLINE_RANGE = (0.5, 30.0)


def safety_lane(deadline: float = SAFETY_DEADLINE_DEFAULT) -> Lane:
    """The safety lane with a deadline of ``deadline`` seconds; its pool wait, statement and lock timeouts
    keep their proportions to it (1.0 s, 1.5 s and 1.0 s for the default 1.5 s)."""
    return Lane("safety", pool_size=3, max_overflow=2, pool_timeout=round(deadline * 2 / 3, 3), deadline=deadline,
                statement_timeout_ms=round(deadline * 1000), lock_timeout_ms=round(deadline * 2000 / 3))


def safety_deadline_from(environ: Mapping[str, str]) -> float:
    """The deadline ``$GOVCON_SAFETY_DEADLINE`` asks for, or the default; a bad value is refused by name."""
    raw = environ.get(SAFETY_DEADLINE_ENV, "").strip()
    if not raw:
        return SAFETY_DEADLINE_DEFAULT
    low, high = SAFETY_DEADLINE_RANGE
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not low <= seconds <= high:  # NaN fails both comparisons
        raise ValueError(f"${SAFETY_DEADLINE_ENV} = {raw!r}: expected a number of seconds from {low:g} to {high:g}")
    return seconds


def _safety_lane_from_environment() -> tuple[Lane, str | None]:
    """The lane ``$GOVCON_SAFETY_DEADLINE`` asks for; a bad value keeps the default and is remembered, and
    every Store then refuses to open naming it (storage/store.py), so the mistake is seen, not ignored."""
    try:
        return safety_lane(safety_deadline_from(os.environ)), None
    except ValueError as exc:
        return safety_lane(), str(exc)


#: the gate, the kill switch, revert, /health: small, and fast to fail (a hung store -> deny within 2 s)
SAFETY, LANE_SETTING_ERROR = _safety_lane_from_environment()
#: ingest: isolated from reads like the safety lane, with room for a 10 MiB batch
INGEST = Lane("ingest", pool_size=2, max_overflow=1, pool_timeout=5.0, deadline=30.0,
              statement_timeout_ms=30_000, lock_timeout_ms=5_000)
LANES: dict[str, Lane] = {lane.name: lane for lane in (DEFAULT, SAFETY, INGEST)}


def lane_named(name: str) -> Lane:
    try:
        return LANES[name]
    except KeyError:
        raise ValueError(f"unknown store lane {name!r}; lanes are {', '.join(LANES)}") from None


def normalise_url(url: str) -> str:
    """Accept plain paths and ``postgresql://`` URLs; pick psycopg 3 for PostgreSQL."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_db_engine(url: str, *, echo: bool = False, lane: Lane = DEFAULT) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        pool: dict[str, Any] = {}
        if lane is not DEFAULT and parsed.database and parsed.database != ":memory:":
            pool = {"pool_size": lane.pool_size, "max_overflow": lane.max_overflow, "pool_timeout": lane.pool_timeout}
        engine = sa.create_engine(
            url,
            echo=echo,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **pool,
        )
        _install_sqlite_hooks(engine)
        commit_hooks.install(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # application_name lets a DBA tell govcon's sessions apart in pg_stat_activity
        connect_args: dict[str, Any] = {"application_name": "govcon" if lane is DEFAULT else f"govcon-{lane.name}"}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        engine = sa.create_engine(url, echo=echo, pool_size=lane.pool_size, max_overflow=lane.max_overflow,
                                  pool_timeout=lane.pool_timeout, pool_pre_ping=lane.deadline is None,
                                  connect_args=connect_args)
        if lane.name == SAFETY.name:
            _GENERIC_PLAN_LOCK.add(engine)
        _install_postgres_hooks(engine, lane)
        commit_hooks.install(engine)
        return engine
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
                     "use a SQLite path or a postgresql+psycopg:// URL")


#: the engines (PostgreSQL safety lanes) whose serialised writes take WRITE_LOCK_GENERIC_SQL
_GENERIC_PLAN_LOCK: weakref.WeakSet[Engine] = weakref.WeakSet()


def _install_sqlite_hooks(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:  # a sqlite3.Connection
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        # a new file returns the pages a prune frees to the filesystem, a step at a time (storage/maintenance.py
        # incremental_vacuum); only takes effect before the first table exists, a no-op on an older file
        if cur.execute("PRAGMA page_count").fetchone()[0] == 0:  # only a new, empty file: setting it on an
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")          # existing one writes (fails on a full disk)
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        for pragma in checkpoint.CONNECT_PRAGMAS:  # checkpoints run off the request path (storage/checkpoint.py)
            cur.execute(pragma)
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("govcon_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _install_postgres_hooks(engine: Engine, lane: Lane) -> None:
    settings = [f"SET {name} = {value}" for name, value in (("statement_timeout", lane.statement_timeout_ms),
                                                            ("lock_timeout", lane.lock_timeout_ms))
                if value is not None]
    if settings:
        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: psycopg.Connection[Any], record: ConnectionPoolEntry) -> None:
            with dbapi_conn.cursor() as cur:
                for statement in settings:
                    cur.execute(statement)
            dbapi_conn.commit()

    if lane.deadline is None:
        return

    @sa.event.listens_for(engine, "do_connect")
    def _connect_within_deadline(dialect: Dialect, _record: ConnectionPoolEntry, cargs: tuple[Any, ...],
                                 cparams: dict[str, Any]) -> DBAPIConnection | None:
        """A new connection within what is left of the caller's deadline (libpq waits at least 2 s)."""
        deadline = Deadline.current()
        if deadline is None:
            return None  # SQLAlchemy connects as usual
        future = _connector().submit(dialect.loaded_dbapi.connect, *cargs, **cparams)
        try:
            return future.result(timeout=max(deadline.remaining(), 0.0))
        except concurrent.futures.TimeoutError:
            future.add_done_callback(_close_late_connection)
            deadline.expired = True
            raise StoreUnavailable(deadline.describe("connecting")) from None

    @sa.event.listens_for(engine, "connect")
    def _mark_fresh(_dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["govcon_fresh"] = True

    @sa.event.listens_for(engine, "checkout")
    def _arm_and_ping(dbapi_conn: psycopg.Connection[Any], record: ConnectionPoolEntry, _proxy: object) -> None:
        """Replaces pool_pre_ping, whose ping would run before any deadline could be armed."""
        deadline = Deadline.current()
        if deadline is not None:
            deadline.watch(dbapi_conn)
        if record.info.pop("govcon_fresh", False):
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
        except Exception as exc:
            if deadline is not None and deadline.expired:
                raise StoreUnavailable(deadline.describe("checking a pooled connection")) from exc
            raise sa_exc.DisconnectionError(f"pooled connection is dead: {exc}") from exc


def _close_late_connection(future: concurrent.futures.Future[DBAPIConnection]) -> None:
    if not future.cancelled() and future.exception() is None:
        with contextlib.suppress(Exception):
            future.result().close()


_connector_pool: concurrent.futures.ThreadPoolExecutor | None = None
_connector_lock = threading.Lock()


def _connector() -> concurrent.futures.ThreadPoolExecutor:
    global _connector_pool
    with _connector_lock:
        if _connector_pool is None:
            _connector_pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="govcon-connect")
        return _connector_pool


class Deadline:
    """How long one store call (a read or write transaction) may take, on this thread.

    ``watch`` puts a DBAPI connection under the watchdog: when the deadline passes while the call still
    holds it, its socket is shut down, so a blocked read returns with an error at once. A nested store
    call on the same thread keeps the outer deadline.
    """

    _local = threading.local()

    def __init__(self, seconds: float, lane: str) -> None:
        self.seconds = seconds
        self.lane = lane
        self.at = time.monotonic() + seconds
        self.expired = False
        self._watched: list[int] = []

    @classmethod
    def current(cls) -> Deadline | None:
        return getattr(cls._local, "deadline", None)

    @classmethod
    @contextlib.contextmanager
    def scope(cls, seconds: float | None, lane: str) -> Iterator[Deadline | None]:
        outer = cls.current()
        if outer is not None or seconds is None:
            yield outer
            return
        deadline = cls(seconds, lane)
        cls._local.deadline = deadline
        try:
            yield deadline
        finally:
            cls._local.deadline = None
            for key in deadline._watched:
                _WATCHDOG.forget(key)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, dbapi_conn: psycopg.Connection[Any]) -> None:
        self._watched.append(_WATCHDOG.watch(self, dbapi_conn))

    def describe(self, doing: str = "") -> str:
        during = f" ({doing})" if doing else ""
        return (f"the store did not answer within {self.seconds:g} s{during} on the {self.lane} lane: "
                "it is hung, overloaded or unreachable")


class _Watchdog:
    """One thread for the process: cuts the connections whose deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._watched: dict[int, tuple[Deadline, Any]] = {}
        self._keys = itertools.count(1)
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline, dbapi_conn: psycopg.Connection[Any]) -> int:
        with self._cond:
            key = next(self._keys)
            self._watched[key] = (deadline, dbapi_conn)
            heapq.heappush(self._heap, (deadline.at, key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="govcon-store-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == key:
                self._cond.notify()
        return key

    def forget(self, key: int) -> None:
        with self._cond:
            self._watched.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._watched:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                at, key = self._heap[0]
                delay = at - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                deadline, dbapi_conn = self._watched.pop(key)
                deadline.expired = True
                _cut(dbapi_conn)  # under the lock: a connection forgotten before this is never cut


def _cut(dbapi_conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down: the thread blocked on it wakes with an error."""
    try:
        fd = dbapi_conn.pgconn.socket
        dup = os.dup(fd)
    except Exception:
        return
    try:
        sock = socket.socket(fileno=dup)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
    except OSError:
        pass


_WATCHDOG = _Watchdog()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextlib.contextmanager
def write_connection(engine: Engine, *, serialise: bool = True) -> Iterator[Connection]:
    """One write transaction: commit on success, roll back on any error.

    ``serialise=False`` is for idempotent bulk inserts (ingest), which need no store-wide order on
    PostgreSQL; SQLite serialises every writer anyway (this process's in arrival order first:
    storage/writer_queue.py).
    """
    queue = _writer_queue(engine)
    with engine.connect() as conn:  # the lane's own connection first: the queue is never held waiting for a pool
        if queue is None:
            with _write_transaction(conn, serialise=serialise) as tx:
                yield tx
            return
        started = time.monotonic()
        if not queue.acquire(BUSY_TIMEOUT_MS / 1000):
            raise StoreUnavailable(f"cannot write to the store {describe_url(engine)}: database is locked (another "
                                   f"writer of this process held it for {BUSY_TIMEOUT_MS / 1000:g} s)")
        try:
            # one budget for the queue and SQLite's busy handler (a writer of another process may hold the file)
            waited_ms = int((time.monotonic() - started) * 1000)
            sqlite_conn = conn.connection.driver_connection if waited_ms else None
            if sqlite_conn is not None:
                sqlite_conn.execute(f"PRAGMA busy_timeout={max(BUSY_TIMEOUT_MS - waited_ms, 0)}")
            try:
                with _write_transaction(conn, serialise=serialise) as tx:
                    yield tx
            finally:
                if sqlite_conn is not None:
                    sqlite_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            queue.release()


def _writer_queue(engine: Engine) -> writer_queue.WriterQueue | None:
    """The in-process queue of a SQLite file's writers (storage/writer_queue.py); None for PostgreSQL and an
    in-memory database."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return writer_queue.for_file(database)


@contextlib.contextmanager
def _write_transaction(conn: Connection, *, serialise: bool) -> Iterator[Connection]:
    engine = conn.engine
    conn = conn.execution_options(govcon_write=True)
    with conn.begin():
        if serialise and engine.dialect.name == "postgresql":
            if engine in _GENERIC_PLAN_LOCK:
                conn.execute(WRITE_LOCK_GENERIC_SQL, {"k": WRITE_LOCK_KEY})
                conn.info[GENERIC_PLANS] = True
            else:
                conn.execute(WRITE_LOCK_SQL, {"k": WRITE_LOCK_KEY})
        try:
            yield conn
        finally:
            conn.info.pop(GENERIC_PLANS, None)


@contextlib.contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def describe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


class ChangeWatch:
    """Whether anything was committed to a SQLite store since a token was taken: ``token()`` is SQLite's
    ``PRAGMA data_version`` on a connection of its own, which changes whenever any *other* connection, of
    this process or another, commits to the database (and never for this connection, which only reads).
    One statement on the driver, no transaction: a few microseconds. Callers take a token *before* they read,
    keep what they read with it, and may use what they read again while ``token()`` still returns it.
    None from ``token()``: the watch is broken (closed, or the file cannot be read): read the store."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                     timeout=BUSY_TIMEOUT_MS / 1000)
        self._cur = self._conn.cursor()
        self._lock = threading.Lock()

    def token(self) -> int | None:
        try:
            with self._lock:
                self._cur.execute("PRAGMA data_version")
                return self._cur.fetchone()[0]
        except Exception:
            return None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def change_watch(engine: Engine) -> ChangeWatch | None:
    """A ChangeWatch over the engine's SQLite file; None for PostgreSQL or an in-memory database (there is no
    such cheap check there: callers read the store)."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    try:
        return ChangeWatch(path)
    except Exception:
        return None
