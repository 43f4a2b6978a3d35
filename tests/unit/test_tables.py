"""storage/tables.py (the runtime's Core tables) is generated from storage/models.py (the SQLModel schema):
the committed file is what the generator renders, both describe the same schema, and the runtime never
imports SQLModel, pydantic or the SQLAlchemy ORM."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from storage import models, tables
from storage.types import UTCDateTime

ROOT = Path(__file__).resolve().parents[2]
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


def _generator():
    spec = importlib.util.spec_from_file_location("generate_tables", ROOT / "tools" / "generate_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_tables_are_what_the_generator_renders():
    committed = (ROOT / "storage" / "tables.py").read_text()
    assert _generator().render() == committed, (
        "storage/tables.py is out of date with storage/models.py: run `.venv/bin/python tools/generate_tables.py`")


def test_the_generator_is_stable_across_interpreters():
    """Set and dict orders that hashing could shuffle must not reach the text: two fresh interpreters
    with different hash seeds render the same file."""
    import os
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('g', {str(ROOT / 'tools' / 'generate_tables.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "sys.stdout.write(m.render())\n")
    texts = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                            env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "4242")}
    assert len(texts) == 1 and "sa.Table(" in texts.pop()


def test_same_tables():
    assert sorted(tables.metadata.tables) == sorted(models.ALL_TABLES.tables)
    assert tables.ALL_TABLES is tables.metadata


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("name", sorted(models.ALL_TABLES.tables))
def test_same_ddl(name, dialect):
    tables.partial_indexes()  # added to their tables on the first call (not at import: see its docstring)
    model, core = models.ALL_TABLES.tables[name], tables.metadata.tables[name]
    d = DIALECTS[dialect]
    assert str(CreateTable(core).compile(dialect=d)) == str(CreateTable(model).compile(dialect=d))

    def indexes(table):
        return sorted(str(CreateIndex(ix).compile(dialect=d)) for ix in table.indexes)
    assert indexes(core) == indexes(model)


def _default_value(column: sa.Column):
    default = column.default
    if default is None:
        return None
    if default.is_callable:
        return ("callable", default.arg(None))
    assert default.is_scalar, f"{column.table.name}.{column.name}: {default!r}"
    return ("scalar", default.arg)


@pytest.mark.parametrize("name", sorted(models.ALL_TABLES.tables))
def test_same_columns(name):
    model, core = models.ALL_TABLES.tables[name], tables.metadata.tables[name]
    assert list(core.columns.keys()) == list(model.columns.keys())
    for mc, cc in zip(model.columns, core.columns, strict=False):
        where = f"{name}.{mc.name}"
        assert (cc.primary_key, cc.nullable, cc.autoincrement) == (mc.primary_key, mc.nullable, mc.autoincrement), where
        assert _default_value(cc) == _default_value(mc), where
        if cc.default is not None and cc.default.is_callable:  # a fresh value each time, never a shared one
            assert cc.default.arg(None) is not cc.default.arg(None), where
        assert (cc.server_default is None) == (mc.server_default is None), where
        assert sorted(fk.target_fullname for fk in cc.foreign_keys) == \
            sorted(fk.target_fullname for fk in mc.foreign_keys), where
        assert _kind(cc.type) == _kind(mc.type), where  # the DDL does not tell UTCDateTime from DateTime


def _kind(t: sa.types.TypeEngine) -> tuple:
    """UTCDateTime as such; sqlmodel's AutoString as the String it decorates."""
    if isinstance(t, UTCDateTime):
        return ("UTCDateTime", t.impl_instance.timezone)
    if isinstance(t, sa.types.TypeDecorator):
        t = t.impl_instance
    return (type(t).__name__, getattr(t, "length", None))


def test_utc_datetime_is_one_type():
    assert models.UTCDateTime is UTCDateTime  # the migrations spell it storage.models.UTCDateTime


def _runtime_modules() -> list[str]:
    """Every module of engine/, storage/, screens/ and console/ but the schema's source and Alembic's."""
    names = []
    for package in ("engine", "storage", "screens", "console"):
        for path in sorted((ROOT / package).glob("*.py")):
            name = f"{package}.{path.stem}" if path.stem != "__init__" else package
            if name not in {"storage.models", "console.__main__"}:
                names.append(name)
    return names


def _imported_after(modules: list[str]) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(out.stdout))


def _orm_or_sqlmodel(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.split(".")[0] == "sqlmodel" or m == "sqlalchemy.orm"
                  or m.startswith("sqlalchemy.orm.") or m == "storage.models")


def test_runtime_imports_neither_sqlmodel_nor_pydantic_nor_the_orm():
    """Every runtime module, the lazily imported ones included; only the HTTP API (FastAPI) brings pydantic."""
    http = {m for m in _runtime_modules() if m.startswith(("console.api", "console.cli_serve", "console.evaluator",
                                                          "console.front_door", "console.limits",
                                                          "console.prometheus"))}
    rest = [m for m in _runtime_modules() if m not in http]
    mods = _imported_after(rest)
    assert {"engine.governance", "engine.jobs", "engine.outbox", "screens.reports", "storage.tables"} <= mods
    assert _orm_or_sqlmodel(mods) == []
    assert sorted(m for m in mods if m.split(".")[0] in {"pydantic", "pydantic_core"}) == []
    assert _orm_or_sqlmodel(_imported_after(sorted(http))) == []


# --- the generator refuses what it does not render -------------------------------------------------


def _render_one(*items) -> str:
    meta = sa.MetaData()
    sa.Table("things", meta, sa.Column("id", sa.Integer(), primary_key=True), *items)
    return _generator().render(meta)


def test_the_generator_renders_a_plain_table():
    text = _render_one(sa.Column("name", sa.String(20), unique=True, index=True, default="x"),
                       sa.Column("tags", sa.JSON(), nullable=False, default=list),
                       sa.Column("note", sa.String(), server_default="n/a"))
    assert 'sa.Column("name", sa.String(length=20), nullable=True, default="x"),' in text
    assert 'sa.Column("tags", sa.JSON(), nullable=False, default=list),' in text
    assert 'sa.Column("note", sa.String(), nullable=True, server_default="n/a"),' in text
    assert 'sa.Index("ix_things_name", "name", unique=True),' in text
    namespace: dict = {}
    exec(compile(text, "tables.py", "exec"), namespace)
    things = namespace["things"]
    assert [ix.unique for ix in things.indexes] == [True]


@pytest.mark.parametrize("item, message", [
    (sa.Column("n", sa.Numeric()), "table 'things', column 'n': unsupported column type"),
    (sa.Column("at", UTCDateTime(), default=datetime.now), "table 'things', column 'at': callable default"),
    (sa.Column("s", sa.String(), server_default=sa.func.now()), "table 'things', column 's': server default"),
    (sa.Column("c", sa.Integer(), onupdate=1), "table 'things', column 'c': onupdate"),
    (sa.CheckConstraint("id > 0", name="ck_things"), "table 'things', constraint ck_things: CheckConstraint"),
])
def test_the_generator_refuses_what_it_cannot_render(item, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _render_one(item)


def test_the_generator_renders_a_partial_index():
    text = _render_one(sa.Column("status", sa.String(10)), sa.Column("at", sa.Integer()),
                       sa.Index("ix_things_open", "at", postgresql_where=sa.text("status = 'open'"),
                                sqlite_where=sa.text("status = 'open'")))
    assert ('sa.Index(\n            "ix_things_open",\n            things.c["at"],\n'
            '            postgresql_where=sa.text("status = \'open\'"),' in text)
    namespace: dict = {}
    exec(compile(text, "tables.py", "exec"), namespace)
    assert not namespace["things"].indexes  # built on the first call of partial_indexes(), not at import
    assert namespace["partial_indexes"]() is namespace["partial_indexes"]()  # once
    index = next(iter(namespace["things"].indexes))
    for dialect in ("postgresql", "sqlite"):
        ddl = str(CreateIndex(index).compile(dialect=DIALECTS[dialect]))
        assert ddl.endswith("WHERE status = 'open'"), ddl


@pytest.mark.parametrize("option", [{"postgresql_where": sa.column("status") == "open"},
                                    {"postgresql_using": "gin"}])
def test_the_generator_refuses_a_partial_index_it_cannot_render(option):
    with pytest.raises(ValueError, match="table 'things', index ix_things_odd: "):
        _render_one(sa.Column("status", sa.String(10)), sa.Index("ix_things_odd", "status", **option))
