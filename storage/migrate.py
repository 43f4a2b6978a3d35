"""Apply Alembic migrations programmatically (on start and by `govcon db migrate`).

Opening a store that is already at ``HEAD`` costs one query: Alembic (and the scanning of the migration
scripts) is loaded only when there is something to migrate. ``tests/integration/test_migrations.py``
checks that ``HEAD`` names the newest script.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.partitions import is_partitioned, partition_names

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
#: the newest revision in storage/migrations/versions (update it with every new migration)
HEAD = "0025"


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts in {MIGRATIONS / 'versions'}")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the store to the newest schema; returns (before, after) revisions."""
    before = current_revision(engine)
    if before == HEAD:
        return before, HEAD
    from alembic import command
    head = head_revision()
    if before != head:
        cfg = alembic_config()
        with engine.connect() as conn:
            conn = conn.execution_options(govcon_write=True)
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    return before, head


def partition_aware(conn: sa.engine.Connection) -> Callable[..., bool]:
    """An Alembic ``include_object`` for comparing a store's schema with the models: on PostgreSQL the
    partitions of command_events are tables the models do not list, and the parent cannot hold the
    models' unique (command_id, status) (each partition holds it: storage/partitions.py)."""
    parts = partition_names(conn)
    partitioned = is_partitioned(conn)

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and name in parts:
            return False
        if partitioned and type_ == "unique_constraint" and name == "uq_command_events_id_status":
            return False
        return True
    return include
