"""governed actions: grants, action requests, the gate's decision log, action reports, modes

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage import models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, models.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("command_type", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("action_class", sa.String(length=200), nullable=True),
        sa.Column("policy", sa.String(length=200), nullable=True),
        _ts("granted_at"), _ts("expires_at"),
        sa.Column("status", sa.String(length=20), nullable=False),
        _ts("outcome_at", nullable=True),
        sa.Column("request_id", sa.String(length=40), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
    )
    op.create_index("ix_grants_type_granted", "grants", ["command_type", "granted_at"])
    op.create_index("ix_grants_service_type_granted", "grants", ["service", "command_type", "granted_at"])
    op.create_index("ix_grants_status_expires", "grants", ["status", "expires_at"])
    op.create_table(
        "action_requests",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("command_type", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("action_class", sa.String(length=200), nullable=True),
        sa.Column("policy", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("notification_level", sa.String(length=20), nullable=False),
        sa.Column("approver_roles", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        _ts("requested_at"), _ts("expires_at"),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        _ts("decided_at", nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("grant_id", sa.String(length=40), nullable=True),
    )
    op.create_index("ix_action_requests_status_expires", "action_requests", ["status", "expires_at"])
    op.create_index("ix_action_requests_requested", "action_requests", ["requested_at"])
    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts("at"),
        sa.Column("command_type", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("action_class", sa.String(length=200), nullable=True),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("policy", sa.String(length=200), nullable=True),
        sa.Column("grant_id", sa.String(length=40), nullable=True),
        sa.Column("request_id", sa.String(length=40), nullable=True),
    )
    op.create_index("ix_gate_decisions_at", "gate_decisions", ["at"])
    with op.batch_alter_table("governance_state") as batch_op:
        batch_op.add_column(sa.Column("mode", sa.String(length=10), nullable=False, server_default="normal"))


def downgrade() -> None:
    with op.batch_alter_table("governance_state") as batch_op:
        batch_op.drop_column("mode")
    op.drop_table("gate_decisions")
    op.drop_table("action_requests")
    op.drop_table("grants")
