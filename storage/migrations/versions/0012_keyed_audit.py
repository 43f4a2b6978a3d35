"""keyed audit chain: each entry's key id and the governance state after it

``audit_log.key_id`` names the HMAC key an entry is keyed with ("" for the plain sha256 entries every store
had before); ``audit_log.state`` is the governance state after the entry (storage/audit.py), so that
`audit verify` finds a state edited without an entry. Entries written before this revision keep both empty.

Revision ID: 0012
Revises: 0011
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("state", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("state")
        batch_op.drop_column("key_id")
