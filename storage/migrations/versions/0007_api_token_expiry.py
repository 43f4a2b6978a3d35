"""api_tokens: optional expiry and the agent a token is bound to (the agent role needs no schema)

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage import models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable columns: a plain ALTER TABLE ADD COLUMN on SQLite too; tokens made before never expire
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("expires_at", models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("agent", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("agent")
        batch_op.drop_column("expires_at")
