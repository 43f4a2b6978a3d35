"""The store: one database (SQLite file or PostgreSQL), migrated on open, read and written in
transactions. Repositories are the modules beside this one; each takes a Connection."""

from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError, DBAPIError, OperationalError

from storage import migrate
from storage.db import (StoreUnavailable, create_db_engine, describe_url, read_connection,
                        write_connection)


class Store:
    def __init__(self, url: str, *, apply_migrations: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        if apply_migrations:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return describe_url(self.engine)

    def migrate(self) -> tuple[str | None, str]:
        try:
            return migrate.upgrade(self.engine)
        except (OperationalError, DatabaseError) as exc:
            raise StoreUnavailable(f"cannot open the store {self.display_url}: {exc.orig}") from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with read_connection(self.engine) as conn:
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable(f"cannot read the store {self.display_url}: {exc.orig}") from exc

    @contextlib.contextmanager
    def write(self, *, serialise: bool = True) -> Iterator[Connection]:
        """One transaction: everything inside commits together or not at all."""
        try:
            with write_connection(self.engine, serialise=serialise) as conn:
                yield conn
        except DBAPIError as exc:
            if not _cannot_write(exc):
                raise
            raise StoreUnavailable(f"cannot write to the store {self.display_url}: {exc.orig}") from exc

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.dispose()


def _cannot_write(exc: DBAPIError) -> bool:
    """The store refuses writes as a whole: unreachable, locked, full, or read-only (SQLSTATE 25006)."""
    return isinstance(exc, OperationalError) or getattr(exc.orig, "sqlstate", None) == "25006"
