"""agents and their leases (heartbeats)

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage import models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, models.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("name", sa.String(length=200), primary_key=True),
        _ts("first_seen_at"), _ts("last_beat_at"), _ts("lease_expires_at"),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("beats", sa.Integer(), nullable=False),
        sa.Column("last_operator", sa.String(length=200), nullable=False),
        sa.Column("last_token_id", sa.String(length=32), nullable=True),
        _ts("lapse_alerted_for", nullable=True),
    )
    op.create_index("ix_agents_lease_expires", "agents", ["lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_agents_lease_expires", table_name="agents")
    op.drop_table("agents")
