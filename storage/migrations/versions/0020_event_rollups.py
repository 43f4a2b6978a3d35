"""hourly rollups of command events (issue 16): the table, built from the events already stored

Revision ID: 0020
Revises: 0019
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild_sql(dialect: str) -> list[str]:
    """A frozen copy of storage.rollups.rebuild_sql as of this revision (set-based: one pass per kind of
    row, the chains of each command's events by a window function)."""
    if dialect == "sqlite":
        h, order = "(CAST(strftime('%s', at) AS INTEGER) / 3600)", "at, status"
    else:
        h, order = "CAST(floor(extract(epoch from at) / 3600) AS bigint)", 'at, status COLLATE "C"'
    ev = (f"SELECT command_id, command_type, status, at, {h} AS h, "
          "CASE WHEN autonomous THEN 1 ELSE 0 END AS a FROM command_events")
    chains = (
        "SELECT h, command_type, a, "
        f"COALESCE(LAG(h) OVER (PARTITION BY command_id ORDER BY {order}), -1) AS p_all, "
        f"COALESCE(LAG(h) OVER (PARTITION BY command_id, a ORDER BY {order}), -1) AS p_auto, "
        f"COALESCE(LAG(h) OVER (PARTITION BY command_id, command_type ORDER BY {order}), -1) AS p_type "
        f"FROM ({ev}) ev")
    ins = "INSERT INTO command_rollups (command_type, hour, autonomous, status, prev_hour, n) "
    return [
        ins + f"SELECT command_type, h, a, status, -1, count(*) FROM ({ev}) ev GROUP BY command_type, h, a, status",
        ins + f"SELECT '', h, a, status, -1, count(*) FROM ({ev}) ev GROUP BY h, a, status",
        ins + f"SELECT '', h, -1, '*', p_all, count(*) FROM ({chains}) c GROUP BY h, p_all",
        ins + f"SELECT '', h, a, '*', p_auto, count(*) FROM ({chains}) c GROUP BY h, a, p_auto",
        ins + f"SELECT command_type, h, -1, '*', p_type, count(*) FROM ({chains}) c GROUP BY command_type, h, p_type",
    ]


def upgrade() -> None:
    op.create_table(
        "command_rollups",
        sa.Column("command_type", sa.String(length=200), nullable=False),
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("autonomous", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("prev_hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("command_type", "hour", "autonomous", "status", "prev_hour"),
    )
    bind = op.get_bind()
    for sql in _rebuild_sql(bind.dialect.name):
        bind.exec_driver_sql(sql)


def downgrade() -> None:
    op.drop_table("command_rollups")
