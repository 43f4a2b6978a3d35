"""policies, alert sinks and routing in the store (issue 13 pt 2)

``gate_policies`` (a policy's settings as the config file spells them) and ``alert_sinks`` (a sink's
shown settings and, apart, its secret URL and routing key) replace each caller's config file as the source
the gate and the notifier read; ``governance_state.policies_version`` / ``sinks_version`` are bumped with
every change, so that a process reloads what it cached only when they move (one integer per decision).

Revision ID: 0019
Revises: 0018
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage import models

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column:
    return sa.Column(name, models.UTCDateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "gate_policies",
        sa.Column("name", sa.String(length=200), primary_key=True, nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        _ts("created_at"), sa.Column("created_by", sa.String(length=200), nullable=False),
        _ts("updated_at"), sa.Column("updated_by", sa.String(length=200), nullable=False),
    )
    op.create_table(
        "alert_sinks",
        sa.Column("name", sa.String(length=100), primary_key=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secret", sa.JSON(), nullable=False),
        _ts("created_at"), sa.Column("created_by", sa.String(length=200), nullable=False),
        _ts("updated_at"), sa.Column("updated_by", sa.String(length=200), nullable=False),
    )
    with op.batch_alter_table("governance_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policies_version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("sinks_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("governance_state", schema=None) as batch_op:
        batch_op.drop_column("sinks_version")
        batch_op.drop_column("policies_version")
    op.drop_table("alert_sinks")
    op.drop_table("gate_policies")
