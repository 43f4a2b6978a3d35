"""Engine and connection setup: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL (psycopg 3).

Write transactions are serialised store-wide, so that every state change sees the state it changes and
the audit chain has one order: on SQLite with ``BEGIN IMMEDIATE``, on PostgreSQL with a transaction-level
advisory lock. Reads never take that lock.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

#: advisory lock key for store-wide write serialisation on PostgreSQL ("govcon" in ASCII, truncated)
WRITE_LOCK_KEY = 0x676F76636F6E
BUSY_TIMEOUT_MS = 10_000


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or read; callers that decide safety fail closed on this."""


def normalise_url(url: str) -> str:
    """Accept plain paths and ``postgresql://`` URLs; pick psycopg 3 for PostgreSQL."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            echo=echo,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _install_sqlite_hooks(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # application_name lets a DBA tell govcon's sessions apart in pg_stat_activity
        return sa.create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                connect_args={"application_name": "govcon"})
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
                     "use a SQLite path or a postgresql+psycopg:// URL")


def _install_sqlite_hooks(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        if conn.get_execution_options().get("govcon_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextlib.contextmanager
def write_connection(engine: Engine, *, serialise: bool = True) -> Iterator[Connection]:
    """One write transaction: commit on success, roll back on any error.

    ``serialise=False`` is for idempotent bulk inserts (ingest), which need no store-wide order on
    PostgreSQL; SQLite serialises every writer anyway.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(govcon_write=True)
        with conn.begin():
            if serialise and engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
            yield conn


@contextlib.contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def describe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
