"""The store: one database (SQLite file or PostgreSQL), migrated on open, read and written in
transactions. Repositories are the modules beside this one; each takes a Connection.

Every read and write goes through a *lane* (storage/db.py ``Lane``): ``default`` for ordinary work,
``safety`` for the gate, the kill switch, revert and /health, ``ingest`` for stored events. Each lane has
a pool of its own, so a flood of reads can never take the connections a safety path needs. A caller
names the lane (``store.read(lane="safety")``), or runs inside ``use_lane("safety")``, which makes that
lane the default for every store call of the context (the HTTP API's safety routes do).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage import db, migrate
from storage.checkpoint import CHECKPOINTER
from storage.db import (
    Deadline,
    StoreUnavailable,
    create_db_engine,
    describe_url,
    lane_named,
    read_connection,
    write_connection,
)

_LANE: contextvars.ContextVar[str] = contextvars.ContextVar("govcon_store_lane", default="default")


@contextlib.contextmanager
def use_lane(name: str) -> Iterator[None]:
    """Store calls in this context that name no lane use ``name``."""
    lane_named(name)
    token = _LANE.set(name)
    try:
        yield
    finally:
        _LANE.reset(token)


def current_lane() -> str:
    return _LANE.get()


class Store:
    def __init__(self, url: str, *, apply_migrations: bool = True) -> None:
        if db.LANE_SETTING_ERROR is not None:
            raise StoreUnavailable(f"cannot open the store: {db.LANE_SETTING_ERROR}")
        self.url = url
        self.engine = create_db_engine(url)
        self._lane_engines: dict[str, Engine] = {"default": self.engine}
        self._lanes_lock = threading.Lock()
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        #: the SQLite file whose log the process's checkpointer watches while this store is open
        self._checkpointed = database if database and database != ":memory:" else None
        if self._checkpointed:
            CHECKPOINTER.watch(self._checkpointed)
        #: the SQLite file's (device, inode) once it exists: a file replaced (a restore renamed over it) or
        #: removed under this process is not read or written through connections to the old one (``replaced``)
        self._file = self._checkpointed
        self._file_identity: tuple[int, int] | None = None
        if apply_migrations:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return describe_url(self.engine)

    def engine_for(self, lane: str | None = None) -> Engine:
        """The engine (and so the pool) of a lane; created on first use."""
        name = lane or _LANE.get()
        engine = self._lane_engines.get(name)
        if engine is None:
            spec = lane_named(name)
            with self._lanes_lock:
                engine = self._lane_engines.get(name)
                if engine is None:
                    engine = self._lane_engines[name] = create_db_engine(self.url, lane=spec)
        return engine

    def migrate(self) -> tuple[str | None, str]:
        self._check_file()
        try:
            return migrate.upgrade(self.engine)
        except (OperationalError, DatabaseError) as exc:
            raise StoreUnavailable(f"cannot open the store {self.display_url}: {exc.orig}") from exc

    def replaced(self) -> str | None:
        """Why this process must not use its connections any more, or None: the SQLite file was replaced or
        removed since it was first seen. The pools keep the old file open, so reads would show a store nobody
        else sees and writes would go where nobody looks (a kill switch engaged there holds no gate of another
        process). One ``stat``; PostgreSQL and in-memory stores: always None."""
        if self._file is None:
            return None
        try:
            st = os.stat(self._file)
        except FileNotFoundError:
            if self._file_identity is None:
                return None  # not created yet (the first connection creates it)
            return (f"the store file was removed after this process opened it ({self._file}): failing closed "
                    "(restore it, or restart govcon on the store's new file)")
        except OSError as exc:
            return f"cannot check the store file {self._file}: {exc.strerror}"
        identity = (st.st_dev, st.st_ino)
        if self._file_identity is None:
            self._file_identity = identity
        elif identity != self._file_identity:
            return (f"the store file was replaced after this process opened it ({self._file}; a restore?): "
                    "failing closed until govcon is restarted on the new file")
        return None

    def _check_file(self) -> None:
        why = self.replaced() if self._file is not None else None
        if why is not None:
            raise StoreUnavailable(why)

    @contextlib.contextmanager
    def read(self, *, lane: str | None = None) -> Iterator[Connection]:
        """One read transaction on ``lane`` (default: the context's lane, see ``use_lane``)."""
        self._check_file()
        name = lane or _LANE.get()
        engine = self.engine_for(name)
        with Deadline.scope(lane_named(name).deadline, name) as deadline:
            try:
                with read_connection(engine) as conn:
                    yield conn
            except DatabaseError as exc:
                # unreachable or locked (OperationalError), or corrupt: SQLite's "file is not a database" and
                # "database disk image is malformed" are plain DatabaseErrors; other subclasses (integrity,
                # programming errors) are ours to see, not a store that went away
                if not isinstance(exc, OperationalError) and type(exc) is not DatabaseError:
                    raise
                raise StoreUnavailable(_why(deadline, f"cannot read the store {self.display_url}", exc)) from exc
            except PoolTimeout as exc:
                raise StoreUnavailable(_busy(name, engine)) from exc

    @contextlib.contextmanager
    def write(self, *, serialise: bool = True, lane: str | None = None) -> Iterator[Connection]:
        """One transaction: everything inside commits together or not at all."""
        self._check_file()
        name = lane or _LANE.get()
        engine = self.engine_for(name)
        with Deadline.scope(lane_named(name).deadline, name) as deadline:
            try:
                with write_connection(engine, serialise=serialise) as conn:
                    yield conn
            except DBAPIError as exc:
                if not _cannot_write(exc):
                    raise
                raise StoreUnavailable(_why(deadline, f"cannot write to the store {self.display_url}", exc)
                                       ) from exc
            except PoolTimeout as exc:
                raise StoreUnavailable(_busy(name, engine)) from exc

    def ping(self, *, lane: str | None = None) -> bool:
        try:
            with self.read(lane=lane) as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        with self._lanes_lock:
            for engine in self._lane_engines.values():
                engine.dispose()
            self._lane_engines = {"default": self.engine}
            if self._checkpointed:
                CHECKPOINTER.forget(self._checkpointed)
                self._checkpointed = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


def _why(deadline: Deadline | None, what: str, exc: DBAPIError) -> str:
    if deadline is not None and deadline.expired:
        return f"{what}: {deadline.describe()}"
    return f"{what}: {exc.orig}"


def _busy(lane: str, engine: Engine) -> str:
    spec = lane_named(lane)
    return (f"every connection of the store's {lane} lane is busy ({spec.pool_size}+{spec.max_overflow}, "
            f"waited {spec.pool_timeout:g} s): the store is slow or hung")


def _cannot_write(exc: DBAPIError) -> bool:
    """The store refuses writes as a whole: unreachable, locked, full, or read-only (SQLSTATE 25006)."""
    return isinstance(exc, OperationalError) or getattr(exc.orig, "sqlstate", None) == "25006"
