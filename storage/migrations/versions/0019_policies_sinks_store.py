"""placeholder for issue 13 pt 2 (policies, alert sinks and routing in the store);
an empty revision is harmless until the change lands

Revision ID: 0019
Revises: 0018
"""
from collections.abc import Sequence

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
