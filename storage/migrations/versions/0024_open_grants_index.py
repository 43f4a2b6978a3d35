"""an index of the grants in flight (issue 12 "Speed"): the gate's max_concurrent count reads the open grants of a
type, not every grant of the type intersected with every open one (on PostgreSQL that bitmap AND cost ~2 ms of an
allow with 100k grants stored)

Revision ID: 0024
Revises: 0023
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("status = 'granted'")


def upgrade() -> None:
    op.create_index("ix_grants_open_type_expires", "grants", ["command_type", "expires_at"],
                    postgresql_where=_OPEN, sqlite_where=_OPEN)


def downgrade() -> None:
    op.drop_index("ix_grants_open_type_expires", table_name="grants")
