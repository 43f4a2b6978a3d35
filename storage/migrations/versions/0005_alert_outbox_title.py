"""alert_outbox.title: the alert's title, so that `govcon alerts list` need not parse sink payloads

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch_op:
        batch_op.add_column(sa.Column("title", sa.String(length=300), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch_op:
        batch_op.drop_column("title")
