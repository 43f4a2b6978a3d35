"""command_events.service and incidents.service: the service an action or incident concerns; indexes on
ingested_at, so breakers can judge what arrived in a window as well as what happened in it

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ARRIVAL_INDEXES = (("ix_command_events_ingested_at", "command_events"),
                    ("ix_incidents_ingested_at", "incidents"),
                    ("ix_safety_events_ingested_at", "safety_events"))


def upgrade() -> None:
    # a nullable column without a default: SQLite's ALTER TABLE ADD COLUMN, no copy of a large table
    for table in ("command_events", "incidents"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("service", sa.String(length=200), nullable=True))
    for name, table in _ARRIVAL_INDEXES:
        op.create_index(name, table, ["ingested_at", "at"])


def downgrade() -> None:
    for name, table in _ARRIVAL_INDEXES:
        op.drop_index(name, table_name=table)
    for table in ("command_events", "incidents"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("service")
