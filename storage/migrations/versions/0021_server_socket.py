"""placeholder for issue 13 pt 1 (the service as the only writer);
an empty revision is harmless until the change lands

Revision ID: 0021
Revises: 0020
"""
from collections.abc import Sequence

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
