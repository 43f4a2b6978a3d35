"""placeholder for issue 13 pt1 (server mode);
an empty revision is harmless until the change lands

Revision ID: 0016
Revises: 0015
"""
from collections.abc import Sequence

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
