"""command_events partitioned by month on PostgreSQL (issue 16): retention drops whole months

The table of an existing store is converted with every row (ids kept, the id sequence carried over):
one partition per month that holds events, the current month and the next two, and a DEFAULT partition
for every other month. The primary key becomes (id, at); (command_id, status) is unique per partition
(the insert leaves out stored keys itself: storage/partitions.py). SQLite: nothing changes. The rollups
are untouched (the same rows). storage/partitions.py keeps the months made and drops old ones.

Revision ID: 0023
Revises: 0022
"""
from collections.abc import Sequence
from datetime import UTC, datetime

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {  # as storage/tables.py names them
    "ix_command_events_arrivals": "judged_on_arrival, ingested_at, at",
    "ix_command_events_at_status": "at, status, command_id",
    "ix_command_events_type_at": "command_type, at, autonomous, status, command_id",
}
AHEAD = 2


def _month_name(year: int, month: int) -> str:
    return f"command_events_p{year:04d}_{month:02d}"


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    ex = bind.exec_driver_sql
    if ex("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('command_events'))"
          ).scalar():
        return
    seq = ex("SELECT pg_get_serial_sequence('command_events', 'id')").scalar()
    months = {(int(y), int(m)) for y, m in ex(
        "SELECT DISTINCT extract(year FROM at), extract(month FROM at) FROM command_events")}
    now = datetime.now(UTC)
    y, m = now.year, now.month
    for _ in range(AHEAD + 1):
        months.add((y, m))
        y, m = _next(y, m)
    ex("CREATE TABLE command_events_new (LIKE command_events INCLUDING DEFAULTS) PARTITION BY RANGE (at)")
    names = []
    for y, m in sorted(months):
        name = _month_name(y, m)
        ny, nm = _next(y, m)
        ex(f"CREATE TABLE {name} PARTITION OF command_events_new "
           f"FOR VALUES FROM ('{y:04d}-{m:02d}-01') TO ('{ny:04d}-{nm:02d}-01')")
        names.append(name)
    ex("CREATE TABLE command_events_default PARTITION OF command_events_new DEFAULT")
    names.append("command_events_default")
    ex("INSERT INTO command_events_new SELECT * FROM command_events")
    if seq:
        ex(f"ALTER SEQUENCE {seq} OWNED BY command_events_new.id")
    ex("DROP TABLE command_events")
    ex("ALTER TABLE command_events_new RENAME TO command_events")
    ex("ALTER TABLE command_events ADD CONSTRAINT command_events_pkey PRIMARY KEY (id, at)")
    for index, cols in _INDEXES.items():
        ex(f"CREATE INDEX {index} ON command_events ({cols})")
    for name in names:
        ex(f"CREATE UNIQUE INDEX uq_{name} ON {name} (command_id, status)")
    ex("ANALYZE command_events")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    ex = bind.exec_driver_sql
    if not ex("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('command_events'))"
              ).scalar():
        return
    seq = ex("SELECT pg_get_serial_sequence('command_events', 'id')").scalar()
    ex("CREATE TABLE command_events_flat (LIKE command_events INCLUDING DEFAULTS)")
    ex("INSERT INTO command_events_flat SELECT * FROM command_events")
    if seq:
        ex(f"ALTER SEQUENCE {seq} OWNED BY command_events_flat.id")
    ex("DROP TABLE command_events")  # and its partitions
    ex("ALTER TABLE command_events_flat RENAME TO command_events")
    ex("ALTER TABLE command_events ADD CONSTRAINT command_events_pkey PRIMARY KEY (id)")
    ex("ALTER TABLE command_events ADD CONSTRAINT uq_command_events_id_status UNIQUE (command_id, status)")
    for index, cols in _INDEXES.items():
        ex(f"CREATE INDEX {index} ON command_events ({cols})")
