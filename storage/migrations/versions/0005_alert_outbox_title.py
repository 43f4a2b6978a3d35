"""alert_outbox.title: the alert's title, so that `govcon alerts list` need not parse sink payloads

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch_op:
        batch_op.add_column(sa.Column("title", sa.String(length=300), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch_op:
        batch_op.drop_column("title")
