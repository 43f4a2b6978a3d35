"""The per-worker store template (tests/store_template.py) gives exactly what migrating from scratch gives:
the same tables, columns, indexes, constraints, sequences and rows, on both dialects."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.migrate import current_revision, head_revision
from storage.store import Store
from tests.conftest import PG_URL, _postgres_schema_url, postgres_schema
from tests.store_template import StoreTemplate, _is_plain_read


def _rows(conn: sa.Connection, table: str) -> list[tuple]:
    return sorted(tuple(map(repr, row)) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')))


def _plain_index(index: dict) -> dict:
    """A reflected index with its dialect options as text: a partial index's predicate is reflected as a
    TextClause, which compares by identity."""
    return {**index, "dialect_options": {k: str(v) for k, v in index.get("dialect_options", {}).items()}}


def fingerprint(engine: sa.Engine) -> dict:
    """Everything a migration makes, with the schema's own name left out (it differs by construction)."""
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        doc: dict = {}
        for table in sorted(insp.get_table_names()):
            doc[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], str(c.get("default")),
                             c.get("autoincrement"), str(c.get("identity"))) for c in insp.get_columns(table)],
                "pk": insp.get_pk_constraint(table),
                "fks": insp.get_foreign_keys(table),
                "indexes": sorted(map(_plain_index, insp.get_indexes(table)), key=lambda i: i["name"] or ""),
                "unique": sorted(insp.get_unique_constraints(table), key=lambda u: u["name"] or ""),
                "checks": sorted(insp.get_check_constraints(table), key=lambda c: c["name"] or ""),
                "rows": _rows(conn, table),
            }
        if engine.dialect.name == "sqlite":
            doc["sqlite_master"] = conn.execute(sa.text(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")).all()
            doc["pragmas"] = [conn.execute(sa.text(f"PRAGMA {p}")).scalar()
                              for p in ("user_version", "journal_mode", "auto_vacuum", "page_size", "encoding")]
        else:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
            own = {"s": schema}
            doc["pg_indexes"] = [tuple(r) for r in conn.execute(sa.text(
                "SELECT tablename, indexname, replace(indexdef, :s || '.', '') FROM pg_indexes "
                "WHERE schemaname = :s ORDER BY 1, 2"), own)]
            doc["pg_constraints"] = [tuple(r) for r in conn.execute(sa.text(
                "SELECT cl.relname, co.conname, co.contype, replace(pg_get_constraintdef(co.oid), :s || '.', '') "
                "FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid "
                "JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = :s ORDER BY 1, 2"), own)]
            doc["pg_sequences"] = [tuple(r) for r in conn.execute(sa.text(
                "SELECT sequencename, data_type::text, start_value, increment_by, last_value FROM pg_sequences "
                "WHERE schemaname = :s ORDER BY 1"), own)]
            doc["pg_relations"] = [tuple(r) for r in conn.execute(sa.text(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s ORDER BY 1"), own)]
            doc["pg_triggers"] = [tuple(r) for r in conn.execute(sa.text(
                "SELECT c.relname, t.tgname, replace(pg_get_triggerdef(t.oid), :s || '.', '') FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND NOT t.tgisinternal ORDER BY 1, 2"), own)]
            doc["pg_functions"] = [tuple(r) for r in conn.execute(sa.text(
                "SELECT p.proname, replace(pg_get_functiondef(p.oid), :s || '.', '') FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s ORDER BY 1"), own)]
        return doc


@pytest.fixture
def second_url(request, tmp_path):
    """Another empty store of the same dialect as ``store_url``."""
    if "postgres" not in request.node.callspec.id:
        yield str(tmp_path / "second.db")
        return
    with postgres_schema() as url:
        yield url


def test_a_copy_of_the_template_is_the_migrated_schema(store_url, second_url, store_template):
    migrated = Store(store_url)  # the real migrations, from an empty store
    if store_url.startswith("postgresql"):
        store_template.fill_postgres(PG_URL, _postgres_schema_url, second_url)
    else:
        store_template.fill_sqlite(second_url)
    copied = Store(second_url, apply_migrations=False)
    try:
        assert current_revision(copied.engine) == head_revision()
        expected, got = fingerprint(migrated.engine), fingerprint(copied.engine)
        assert set(got) == set(expected)
        for key in expected:
            assert got[key] == expected[key], key
        assert len(expected) > 20
    finally:
        migrated.dispose()
        copied.dispose()


def test_the_template_refuses_to_overwrite_a_store(store, store_url, store_template):
    with pytest.raises((FileExistsError, RuntimeError)):
        if store_url.startswith("postgresql"):
            store_template.fill_postgres(PG_URL, _postgres_schema_url, store_url)
        else:
            store_template.fill_sqlite(store_url)


def test_a_templated_store_is_at_head_and_opening_it_migrates_nothing(store):
    assert current_revision(store.engine) == head_revision()
    assert store.migrate() == (head_revision(), head_revision())


@pytest.mark.parametrize(("statement", "skipped"), [
    ("SELECT version_num FROM alembic_version", True),
    ("  select current_schema()", True),
    ("show standard_conforming_strings", True),
    ("SELECT setval('x_id_seq', 3)", False),
    ("SELECT pg_advisory_xact_lock(1)", False),
    ("CREATE TABLE x (id int)", False),
    ("INSERT INTO x VALUES (1)", False),
])
def test_only_plain_reads_are_left_out_of_the_replay(statement, skipped):
    assert _is_plain_read(statement) is skipped


def test_the_template_is_made_once_per_process(tmp_path):
    template = StoreTemplate(tmp_path)
    assert template.sqlite_file() == template.sqlite_file()
