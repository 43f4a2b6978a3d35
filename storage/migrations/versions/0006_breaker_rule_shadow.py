"""breaker_rules.shadow: one rule in shadow (recording what it would have done) while the others enforce

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("breaker_rules") as batch_op:
        batch_op.add_column(sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("breaker_rules") as batch_op:
        batch_op.drop_column("shadow")
