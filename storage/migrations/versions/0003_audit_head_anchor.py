"""audit head anchor: the newest audit entry's seq and hash, kept in governance_state

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("governance_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_head_seq", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("audit_head_hash", sa.String(length=64), nullable=False, server_default=""))
    # anchor stores that already have a log at their current head
    op.execute("UPDATE governance_state SET audit_head_seq = (SELECT COALESCE(MAX(seq), 0) FROM audit_log), "
               "audit_head_hash = COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), '')")


def downgrade() -> None:
    with op.batch_alter_table("governance_state", schema=None) as batch_op:
        batch_op.drop_column("audit_head_hash")
        batch_op.drop_column("audit_head_seq")
