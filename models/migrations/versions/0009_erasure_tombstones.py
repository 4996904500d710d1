"""privacy: erasure tombstones (keyed hashes of erased accounts, and the erasures' counting row)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

import models.base

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'erasure_tombstones',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('erased_at', models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('erasures', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_erasure_tombstones')),
    )
    # the gate exists before any erasure, so ingest always has a row to wait on (service.tombstones)
    op.bulk_insert(table, [{'key': '*', 'erased_at': None, 'erasures': 0}])


def downgrade() -> None:
    op.drop_table('erasure_tombstones')
