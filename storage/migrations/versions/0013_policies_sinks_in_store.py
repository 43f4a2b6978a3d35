"""placeholder for issue 13 pt2 (policies, alert sinks and routing in the store);
an empty revision is harmless until the change lands

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
