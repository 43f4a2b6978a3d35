"""A migrated store per test without running the migrations per test.

Running every Alembic migration costs ~0.15 s of CPU per store (more wall time on a loaded machine), and
most tests want a store at HEAD, not the migrations. So each pytest process (each xdist worker) migrates
one template per dialect, once, and every test gets a copy of it:

- SQLite: the template file, closed (its WAL checkpointed into the file), copied byte for byte;
- PostgreSQL: the statements the migration sent to the server, recorded while migrating a template schema,
  replayed in the test's fresh, empty schema. A migration is a deterministic function of the database it
  starts from (its Python decides on what its reads return, and an empty schema answers as the template's
  did), so the replay builds exactly the schema and rows the migration built.

tests/integration/test_store_template.py compares a copy with a store migrated from scratch (tables,
columns, indexes, constraints, sequences, rows) on both dialects; tests/integration/test_migrations.py
(marked ``migrate_from_scratch``) still runs the real migrations on a fresh store. Set
GOVCON_TEST_STORE_TEMPLATE=0 to migrate every test's store from scratch.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from storage.store import Store

ENABLED = os.environ.get("GOVCON_TEST_STORE_TEMPLATE", "1") != "0"

# statements that only read: replaying them changes nothing, so they are left out (a function call in a
# SELECT could write, so only plain catalog and version reads are skipped)
_READ_PREFIXES = ("select ", "show ")
_WRITING_CALLS = ("nextval", "setval", "pg_advisory", "set_config")


def _is_plain_read(statement: str) -> bool:
    text = statement.lstrip().lower()
    return text.startswith(_READ_PREFIXES) and not any(call in text for call in _WRITING_CALLS)


class StoreTemplate:
    """One process's templates, made on first use (under a lock: a test may open stores from threads)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._sqlite: Path | None = None
        self._postgres: str | None = None

    # SQLite -------------------------------------------------------------------------------------------

    def sqlite_file(self) -> Path:
        with self._lock:
            if self._sqlite is None:
                path = self.directory / f"template-{uuid.uuid4().hex[:8]}.db"
                Store(str(path)).dispose()  # the last connection's close checkpoints the WAL into the file
                for suffix in ("-wal", "-shm", "-journal"):
                    side = Path(f"{path}{suffix}")
                    if side.exists() and side.stat().st_size:
                        raise RuntimeError(f"the SQLite template left {side} behind: a copy would be incomplete")
                self._sqlite = path
            return self._sqlite

    def fill_sqlite(self, path: str | Path) -> None:
        """Make ``path`` (which must not exist yet) a migrated SQLite store."""
        if Path(path).exists():
            raise FileExistsError(f"{path} exists: the template only fills a new store")
        shutil.copyfile(self.sqlite_file(), path)

    # PostgreSQL ---------------------------------------------------------------------------------------

    def postgres_script(self, admin_url: str, schema_url: Callable[[str], str]) -> str:
        """The writing statements of a migration from an empty schema, recorded once per process and
        bound client-side into one script (sent in one round trip: on a loaded machine each round trip
        between the test and the server waits for both to be scheduled)."""
        with self._lock:
            if self._postgres is None:
                self._postgres = self._record_postgres(admin_url, schema_url)
            return self._postgres

    @staticmethod
    def _record_postgres(admin_url: str, schema_url: Callable[[str], str]) -> str:
        schema = "tpl_" + uuid.uuid4().hex[:12]
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        recorded: list[tuple[str, Any, bool]] = []
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            store = Store(schema_url(schema), apply_migrations=False)
            try:
                def record(conn, cursor, statement, parameters, context, executemany):
                    recorded.append((statement, parameters, executemany))
                event.listen(store.engine, "before_cursor_execute", record)
                store.migrate()
                with store.engine.connect() as conn:
                    bind = psycopg.ClientCursor(conn.connection.driver_connection).mogrify
                    script = []
                    for statement, parameters, many in recorded:
                        if _is_plain_read(statement):
                            continue
                        for params in (parameters if many else [parameters]):
                            script.append(bind(statement, params) if params else statement)
            finally:
                store.dispose()
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        finally:
            admin.dispose()
        # a statement may name the template's schema (migration 0023 moves a sequence found by
        # pg_get_serial_sequence, which answers schema-qualified): the replay's objects are the test schema's,
        # reached through its search_path
        text = ";\n".join(script) + ";"
        return text.replace(f'"{schema}".', "").replace(f"{schema}.", "")

    def fill_postgres(self, admin_url: str, schema_url: Callable[[str], str], url: str) -> None:
        """Replay the migration's statements in the (new, empty) schema that ``url`` names."""
        script = self.postgres_script(admin_url, schema_url)
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                existing = conn.execute(sa.text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()")).scalar()
                if existing:
                    raise RuntimeError("the template only fills an empty schema")
                conn.connection.driver_connection.execute(script)  # no parameters: one simple-protocol query
        finally:
            engine.dispose()
