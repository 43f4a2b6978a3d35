"""Render the SQLModel schema (storage/models.py) as plain SQLAlchemy Core source: storage/tables.py.

The runtime (engine/, storage/, console/, screens/) imports only Core tables, so that it never imports
SQLModel, pydantic and the SQLAlchemy ORM (~130 ms of the console's launch). The SQLModel classes stay the
schema's source of truth (Alembic autogenerates from them); this script derives the Core copy from their
metadata, and tests/unit/test_tables.py checks that the committed file is what it renders and that both
describe the same schema.

    .venv/bin/python tools/generate_tables.py      # rewrites storage/tables.py

Only what the schema uses is supported; anything else (another column type, a server default that is not
plain text, a check constraint, a composite foreign key...) raises, naming the table and column, so that the
generator is extended on purpose rather than dropping a feature silently.
"""

from __future__ import annotations

import keyword
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.sql.base import _NONE_NAME  # noqa: E402
from sqlalchemy.sql.schema import CallableColumnDefault, DefaultClause, ScalarElementColumnDefault  # noqa: E402

TARGET = ROOT / "storage" / "tables.py"
MAX_LINE = 120
INDENT = "    "

HEADER = '''\
"""Core tables of the govcon schema. GENERATED from storage/models.py by tools/generate_tables.py: do not edit.

The runtime (engine/, storage/, console/, screens/) imports these plain SQLAlchemy Core tables only: SQLModel's
ORM and pydantic cost ~130 ms at import, and the runtime never uses more than ``sa.select``, inserts and updates
on tables. storage/models.py stays the schema's source of truth (Alembic migrates from it); after changing it,
run ``python tools/generate_tables.py``. tests/unit/test_tables.py checks that this file is what the generator
renders and that both describe the same schema.
"""

import sqlalchemy as sa

from storage.types import UTCDateTime

metadata = sa.MetaData()
'''

#: module-level names of storage/tables.py that a table may not take
_RESERVED = {"sa", "functools", "metadata", "UTCDateTime", "ALL_TABLES", "partial_indexes"}
#: callables allowed as Python-side column defaults, by ``__name__``
_CALLABLE_DEFAULTS = {"list", "dict"}


class UnsupportedSchema(ValueError):
    """The models use a feature the generator does not render."""


def _str(value: str) -> str:
    """A Python string literal, with double quotes when that needs no escaping."""
    text = repr(str(value))
    if text.startswith("'") and '"' not in value and "'" not in value:
        text = '"' + text[1:-1] + '"'
    return text


def _literal(value: Any, where: str) -> str:
    if type(value) is str:
        return _str(value)
    if value is None or type(value) in (bool, int) or (type(value) is float and math.isfinite(value)):
        return repr(value)
    raise UnsupportedSchema(f"{where}: cannot render value {value!r} ({type(value).__name__})")


def _call(func: str, args: Iterable[str], indent: str, trailer: str = "") -> str:
    """``func(arg, arg)`` on one line when it fits, else one argument a line."""
    args = list(args)
    one = f"{indent}{func}({', '.join(args)}){trailer}"
    if len(one) <= MAX_LINE:
        return one
    inner = indent + INDENT
    lines = [f"{indent}{func}("]
    for arg in args:
        line = f"{inner}{arg},"
        if len(line) > MAX_LINE:
            raise UnsupportedSchema(f"line longer than {MAX_LINE} characters: {line.strip()!r}")
        lines.append(line)
    lines.append(f"{indent}){trailer}")
    return "\n".join(lines)


def _name(name: Any) -> str | None:
    if name is None or name is _NONE_NAME:
        return None
    return str(name)


# --- columns ---------------------------------------------------------------------------------


def _type(column: sa.Column, where: str) -> str:
    from sqlmodel.sql.sqltypes import AutoString

    from storage.types import UTCDateTime

    t = column.type
    kind = type(t)
    if kind is UTCDateTime:
        if t.impl.timezone:
            raise UnsupportedSchema(f"{where}: UTCDateTime(timezone=True)")
        return "UTCDateTime()"
    if kind in (AutoString, sa.String):
        if t.collation is not None:
            raise UnsupportedSchema(f"{where}: string collation {t.collation!r}")
        return f"sa.String(length={t.length!r})" if t.length is not None else "sa.String()"
    if kind is sa.Integer:
        return "sa.Integer()"
    if kind is sa.Boolean:
        if t.create_constraint or t.name is not None:
            raise UnsupportedSchema(f"{where}: Boolean with a constraint")
        return "sa.Boolean()"
    if kind is sa.Float:
        if t.precision is not None or t.asdecimal or t.decimal_return_scale is not None:
            raise UnsupportedSchema(f"{where}: Float with precision or decimal options")
        return "sa.Float()"
    if kind is sa.JSON:
        if t.none_as_null:
            raise UnsupportedSchema(f"{where}: JSON(none_as_null=True)")
        return "sa.JSON()"
    raise UnsupportedSchema(f"{where}: unsupported column type {t!r} ({kind.__module__}.{kind.__qualname__})")


def _default(column: sa.Column, where: str) -> str | None:
    default = column.default
    if default is None:
        return None
    if isinstance(default, ScalarElementColumnDefault):
        return _literal(default.arg, where + " default")
    if isinstance(default, CallableColumnDefault):
        name = getattr(default.arg, "__name__", None)
        if name in _CALLABLE_DEFAULTS:
            return name
        raise UnsupportedSchema(f"{where}: callable default {default.arg!r} (only {sorted(_CALLABLE_DEFAULTS)})")
    raise UnsupportedSchema(f"{where}: unsupported default {default!r}")


def _server_default(column: sa.Column, where: str) -> str | None:
    sd = column.server_default
    if sd is None:
        return None
    if type(sd) is not DefaultClause or sd.for_update:
        raise UnsupportedSchema(f"{where}: unsupported server default {sd!r}")
    arg = sd.arg
    if isinstance(arg, str):
        return _str(arg)
    if type(arg) is sa.sql.elements.TextClause and not arg._bindparams:
        return f"sa.text({_str(arg.text)})"
    raise UnsupportedSchema(f"{where}: server default is not plain text: {arg!r}")


def _foreign_key(fk: sa.ForeignKey, where: str) -> str:
    if fk.deferrable is not None or fk.initially is not None or fk.use_alter or fk.match is not None \
            or fk.link_to_name or fk.comment is not None or fk.info or fk.dialect_kwargs:
        raise UnsupportedSchema(f"{where}: foreign key {fk.target_fullname} has unsupported options")
    args = [_str(fk.target_fullname)]
    if _name(fk.name) is not None:
        args.append(f"name={_str(_name(fk.name))}")
    if fk.ondelete is not None:
        args.append(f"ondelete={_str(fk.ondelete)}")
    if fk.onupdate is not None:
        args.append(f"onupdate={_str(fk.onupdate)}")
    return f"sa.ForeignKey({', '.join(args)})"


def _column(column: sa.Column, table: sa.Table) -> list[str]:
    where = f"table {table.name!r}, column {column.name!r}"
    if column.key != column.name:
        raise UnsupportedSchema(f"{where}: key {column.key!r} differs from the name")
    for attr in ("onupdate", "server_onupdate", "comment", "computed", "identity"):
        if getattr(column, attr, None) is not None:
            raise UnsupportedSchema(f"{where}: {attr} is not supported")
    if column.dialect_kwargs or column.info or column.system or getattr(column.name, "quote", None) is not None:
        raise UnsupportedSchema(f"{where}: dialect options, info, system or quote are not supported")
    args = [_str(column.name), _type(column, where)]
    args += [_foreign_key(fk, where) for fk in sorted(column.foreign_keys, key=lambda fk: fk.target_fullname)]
    if column.primary_key:
        args.append("primary_key=True")
    args.append(f"nullable={column.nullable!r}")
    if column.autoincrement != "auto":
        args.append(f"autoincrement={column.autoincrement!r}")
    default = _default(column, where)
    if default is not None:
        args.append(f"default={default}")
    server_default = _server_default(column, where)
    if server_default is not None:
        args.append(f"server_default={server_default}")
    return args


# --- table-level constraints and indexes ---------------------------------------------------------


def _column_names(cols: Iterable[Any], where: str) -> list[str]:
    names = []
    for col in cols:
        if not isinstance(col, sa.Column):
            raise UnsupportedSchema(f"{where}: expression {col!r} is not supported, only columns")
        names.append(_str(col.name))
    return names


def _check_plain(obj: Any, where: str, *, allowed: Iterable[str] = ()) -> None:
    for attr in ("deferrable", "initially", "comment"):
        if getattr(obj, attr, None) is not None:
            raise UnsupportedSchema(f"{where}: {attr} is not supported")
    if obj.info or set(obj.dialect_kwargs) - set(allowed):
        raise UnsupportedSchema(f"{where}: info or dialect options are not supported")


#: a partial index's predicate, per dialect, as plain SQL text
PARTIAL_OPTIONS = ("postgresql_where", "sqlite_where")


def _partial(index: sa.Index, where: str) -> dict[str, str]:
    """The index's ``postgresql_where`` / ``sqlite_where`` predicates (``sa.text`` only), by option name."""
    found = {}
    for option in PARTIAL_OPTIONS:
        value = index.dialect_kwargs.get(option)
        if value is None:
            continue
        if not isinstance(value, sa.TextClause):
            raise UnsupportedSchema(f"{where}: {option} must be sa.text(...), not {type(value).__name__}")
        found[option] = value.text
    return found


def _constraints(table: sa.Table) -> list[str]:
    """Unique constraints, in the order the models' CREATE TABLE lists them (so that the DDL is identical)."""
    column_fks = {fk for col in table.columns for fk in col.foreign_keys}
    out = []
    for constraint in table._sorted_constraints:  # by creation order: deterministic, the DDL's own order
        where = f"table {table.name!r}, constraint {_name(constraint.name) or '(unnamed)'}"
        if isinstance(constraint, sa.PrimaryKeyConstraint):
            pk_in_order = [c.name for c in table.columns if c.primary_key]
            if _name(constraint.name) is not None or [c.name for c in constraint.columns] != pk_in_order:
                raise UnsupportedSchema(f"{where}: named primary key or one not in column order")
            _check_plain(constraint, where)
            continue
        if isinstance(constraint, sa.ForeignKeyConstraint):
            # column-level ForeignKey objects make these; rendered on their column
            if len(constraint.elements) != 1 or constraint.elements[0] not in column_fks:
                raise UnsupportedSchema(f"{where}: table-level (composite) foreign key is not supported")
            continue
        if type(constraint) is sa.UniqueConstraint:
            _check_plain(constraint, where)
            args = _column_names(constraint.columns, where)
            if _name(constraint.name) is not None:
                args.append(f"name={_str(_name(constraint.name))}")
            out.append(_call("sa.UniqueConstraint", args, INDENT, ","))
            continue
        raise UnsupportedSchema(f"{where}: {type(constraint).__name__} is not supported")
    return out


def _indexes(table: sa.Table) -> tuple[list[str], list[str]]:
    """The table's plain indexes (rendered inside its ``sa.Table``) and its partial ones (rendered in
    ``partial_indexes()``, on the table's columns), in name order."""
    def key(index: sa.Index):
        return (_name(index.name) or "", [c.name for c in index.columns])

    plain, partial_ones = [], []
    for index in sorted(table.indexes, key=key):
        where = f"table {table.name!r}, index {_name(index.name) or '(unnamed)'}"
        partial = _partial(index, where)
        _check_plain(index, where, allowed=set(partial))
        args = [_str(_name(index.name)) if _name(index.name) is not None else "None"]
        columns = _column_names(index.expressions, where)
        if partial:
            args += [f"{table.name}.c[{name}]" for name in columns]
        else:
            args += columns
        if index.unique:
            args.append("unique=True")
        args += [f"{option}=sa.text({_str(text)})" for option, text in partial.items()]
        if partial:
            partial_ones.append(_call("sa.Index", args, INDENT * 2, ","))
        else:
            plain.append(_call("sa.Index", args, INDENT, ","))
    return plain, partial_ones


def _table(table: sa.Table) -> tuple[str, list[str]]:
    """The table's ``sa.Table(...)`` and the ``sa.Index(...)`` lines of its partial indexes."""
    where = f"table {table.name!r}"
    if table.schema is not None or table.comment is not None or table.info or table.dialect_kwargs:
        raise UnsupportedSchema(f"{where}: schema, comment, info or dialect options are not supported")
    lines = [f"{table.name} = sa.Table(", f"{INDENT}{_str(table.name)},", f"{INDENT}metadata,"]
    for column in table.columns:
        lines.append(_call("sa.Column", _column(column, table), INDENT, ","))
    lines += _constraints(table)
    plain, partial = _indexes(table)
    lines += plain
    lines.append(")")
    return "\n".join(lines), partial


PARTIAL_FUNCTION = '''

@functools.cache
def partial_indexes() -> tuple[sa.Index, ...]:
    """The partial indexes (a WHERE clause per dialect), added to their tables on the first call.

    Not built at import: SQLAlchemy checks an index's ``postgresql_where`` by importing its PostgreSQL dialect
    (~20 ms), which a process on a SQLite store never needs otherwise, and the runtime creates no schema from
    these tables (migrations do). tests/unit/test_tables.py builds them to compare the DDL with the models'.
    """
    return (
'''


def render(metadata: sa.MetaData | None = None) -> str:
    """The text of storage/tables.py (for the models' metadata unless another is given)."""
    if metadata is None:
        from storage.models import ALL_TABLES as metadata

    default_convention = sa.MetaData().naming_convention
    if dict(metadata.naming_convention) != dict(default_convention) or metadata.schema is not None:
        raise UnsupportedSchema("the models' MetaData has a naming convention or schema the generator ignores")
    parts = [HEADER]
    partial: list[str] = []
    for name in sorted(metadata.tables):
        if not name.isidentifier() or keyword.iskeyword(name) or name in _RESERVED:
            raise UnsupportedSchema(f"table {name!r}: not usable as a module-level name")
        text, indexes = _table(metadata.tables[name])
        parts.append("\n" + text + "\n")
        partial += indexes
    if partial:
        parts[0] = parts[0].replace("import sqlalchemy as sa\n", "import functools\n\nimport sqlalchemy as sa\n", 1)
        parts.append(PARTIAL_FUNCTION + "\n".join(partial) + "\n    )\n\n")
    parts.append("\nALL_TABLES = metadata\n")
    text = "".join(parts)
    long = [line for line in text.splitlines() if len(line) > MAX_LINE]
    if long:
        raise UnsupportedSchema(f"lines longer than {MAX_LINE} characters: {long}")
    compile(text, str(TARGET), "exec")
    return text


def main() -> int:
    text = render()
    old = TARGET.read_text() if TARGET.exists() else None
    if text == old:
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
