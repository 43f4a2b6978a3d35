"""command_events.service and incidents.service: the service an action or incident concerns;
``judged_on_arrival`` on the events breakers judge (stored late within the late horizon, or stamped
ahead), with indexes that seek those arrived in a window

Revision ID: 0008
Revises: 0007
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JUDGED = ("command_events", "incidents", "safety_events")


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN on SQLite (a nullable column, or a constant default): no table copy.
    # Events stored before this revision are not judged on arrival: they are judged by their own time, as before.
    for table in ("command_events", "incidents"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("service", sa.String(length=200), nullable=True))
    for table in _JUDGED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("judged_on_arrival", sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
        op.create_index(f"ix_{table}_arrivals", table, ["judged_on_arrival", "ingested_at", "at"])


def downgrade() -> None:
    for table in _JUDGED:
        op.drop_index(f"ix_{table}_arrivals", table_name=table)
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("judged_on_arrival")
    for table in ("command_events", "incidents"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("service")
