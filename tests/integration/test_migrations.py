"""Alembic migrations on both stores: a fresh store reaches head on open, migrating is idempotent, and the
migrated schema is exactly the models' (autogenerate finds nothing to add)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage.migrate import alembic_config, current_revision, head_revision, partition_aware
from storage.models import ALL_TABLES
from storage.partitions import partition_names
from storage.store import Store
from tests.conftest import migrated_to

# these tests are about the migrations themselves: their stores are migrated from scratch, not copied from
# the per-worker template (tests/store_template.py)
pytestmark = pytest.mark.migrate_from_scratch


def schema_diff(store: Store) -> list:
    """What autogenerate would add or drop; on PostgreSQL it is told about command_events' partitions."""
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "include_object": partition_aware(conn)})
        return compare_metadata(ctx, ALL_TABLES)


def table_names(store: Store) -> set[str]:
    """The store's tables, without the partitions of command_events (PostgreSQL)."""
    with store.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names()) - partition_names(conn)


def test_a_fresh_store_reaches_head_on_open(store):
    assert current_revision(store.engine) == head_revision()
    assert table_names(store) == set(ALL_TABLES.tables) | {"alembic_version"}


def test_migrating_is_idempotent(store_url):
    store = Store(store_url, apply_migrations=False)
    try:
        assert current_revision(store.engine) is None
        assert store.migrate() == (None, head_revision())
        assert store.migrate() == (head_revision(), head_revision())
        assert Store(store_url).migrate() == (head_revision(), head_revision())
    finally:
        store.dispose()


def test_autogenerate_finds_no_difference_between_migrations_and_models(store):
    assert schema_diff(store) == []


def test_a_model_change_without_a_migration_would_be_found(store):
    """The check above can fail: a column the migrations lack shows up as a difference."""
    meta = sa.MetaData()
    for table in ALL_TABLES.tables.values():
        table.to_metadata(meta)
    meta.tables["incidents"].append_column(sa.Column("extra_note", sa.String(50), nullable=True))
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True,
                                                                       "include_object": partition_aware(conn)}), meta)
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "extra_note")]


def test_downgrade_to_base_and_upgrade_again(store):
    cfg = alembic_config()
    with store.engine.connect() as conn:
        conn = conn.execution_options(govcon_write=True)
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
    assert table_names(store) <= {"alembic_version"}
    assert current_revision(store.engine) is None
    assert store.migrate() == (None, head_revision())
    assert schema_diff(store) == []


def test_the_alembic_environment_also_runs_from_a_url(store_url):
    """`alembic upgrade head` with the store's URL (the path Alembic's own CLI takes)."""
    command.upgrade(alembic_config(store_url), "head")
    store = Store(store_url, apply_migrations=False)
    try:
        assert current_revision(store.engine) == head_revision()
        assert schema_diff(store) == []
    finally:
        store.dispose()


def test_db_migrate_from_the_cli_on_a_fresh_store(cli):
    first, second = cli("db", "migrate"), cli("db", "migrate")
    assert first.code == 0 and second.code == 0, first.err + second.err
    assert first.out.startswith(f"schema at revision {head_revision()}")
    assert second.out == f"schema at revision {head_revision()}\n"
    status = cli("status")
    assert status.code == 1 and "govcon db init" in status.err  # migrated, but not initialised


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "oracle://h/db"])
def test_unsupported_urls_are_refused(url):
    with pytest.raises(ValueError, match="unsupported database URL"):
        Store(url)


def test_upgrading_from_the_first_revision_keeps_the_rows(store_url):
    """A store created by an older govcon keeps its data through every later migration."""
    from alembic.script import ScriptDirectory

    first = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())[-1].revision
    store = Store(store_url, apply_migrations=False)
    try:
        with migrated_to(store, first) as conn:
            conn.execute(sa.text(
                "INSERT INTO command_events (command_id, command_type, status, autonomous, at, ingested_at) "
                "VALUES ('c1', 'restart', 'succeeded', true, '2026-11-20 10:00:00', '2026-11-20 10:00:00')"))
        assert current_revision(store.engine) == first
        assert store.migrate() == (first, head_revision())
        with store.read() as conn:
            assert conn.execute(sa.text("SELECT command_id, status FROM command_events")).all() == [
                ("c1", "succeeded")]
        assert schema_diff(store) == []
    finally:
        store.dispose()
