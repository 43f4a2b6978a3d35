"""the arrivals indexes hold only the rows judged on arrival (issue 16: ingest with the rollups <= 2.5x the raw
baseline): almost every event is on time or backfill, and the full (judged_on_arrival, ingested_at, at) index
cost each insert an entry that no query reads. On PostgreSQL the command_events index is made on the
partitioned table (each month's partition gets its own).

Revision ID: 0025
Revises: 0024
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("command_events", "incidents", "safety_events")


def upgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_arrivals", table_name=table)
        op.create_index(f"ix_{table}_arrivals", table, ["ingested_at", "at"],
                        postgresql_where=sa.text("judged_on_arrival IS TRUE"),
                        sqlite_where=sa.text("judged_on_arrival IS 1"))


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_arrivals", table_name=table)
        op.create_index(f"ix_{table}_arrivals", table, ["judged_on_arrival", "ingested_at", "at"])
