"""widen ix_command_events_type_at to cover the gate's rate-limit counts

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_command_events_type_at", table_name="command_events")
    op.create_index("ix_command_events_type_at", "command_events",
                    ["command_type", "at", "autonomous", "status", "command_id"])


def downgrade() -> None:
    op.drop_index("ix_command_events_type_at", table_name="command_events")
    op.create_index("ix_command_events_type_at", "command_events", ["command_type", "at"])
