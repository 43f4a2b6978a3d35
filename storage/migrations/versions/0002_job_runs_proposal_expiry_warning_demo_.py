"""job runs, proposal expiry warning, demo four-eyes flag

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 21:11:19.383553
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import storage.models

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('slot', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('started_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('finished_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'slot', name='uq_job_runs_slot')
    )
    with op.batch_alter_table('governance_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('four_eyes_relaxed', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))

    with op.batch_alter_table('proposals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiry_warned_at', storage.models.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('proposals', schema=None) as batch_op:
        batch_op.drop_column('expiry_warned_at')

    with op.batch_alter_table('governance_state', schema=None) as batch_op:
        batch_op.drop_column('four_eyes_relaxed')

    op.drop_table('job_runs')
