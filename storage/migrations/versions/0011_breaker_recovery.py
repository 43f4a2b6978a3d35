"""half-open recovery of paused command types

Revision ID: 0011
Revises: 0010
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage import models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("breaker_rules") as batch_op:
        batch_op.add_column(sa.Column("recovery", sa.String(length=20), nullable=False,
                                      server_default="half_open"))
        batch_op.add_column(sa.Column("cooldown", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("probes", sa.Integer(), nullable=False, server_default="3"))
    op.create_table(
        "half_open",
        sa.Column("command_type", sa.String(length=200), primary_key=True),
        sa.Column("since", models.UTCDateTime(), nullable=False),
        sa.Column("probes_left", sa.Integer(), nullable=False),
        sa.Column("probe_grant_id", sa.String(length=40), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("rule_name", sa.String(length=200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("half_open")
    with op.batch_alter_table("breaker_rules") as batch_op:
        batch_op.drop_column("probes")
        batch_op.drop_column("cooldown")
        batch_op.drop_column("recovery")
