"""listener: deletions of posts not stored yet, applied when their creation arrives late

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import models.base

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'pending_deletions',
        sa.Column('platform', sa.String(length=32), nullable=False),
        sa.Column('external_id', sa.String(length=100), nullable=False),
        sa.Column('remove_content', sa.Boolean(), nullable=False),
        sa.Column('deleted_at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('platform', 'external_id', name=op.f('pk_pending_deletions')),
    )
    op.create_index(op.f('ix_pending_deletions_deleted_at'), 'pending_deletions', ['deleted_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_pending_deletions_deleted_at'), table_name='pending_deletions')
    op.drop_table('pending_deletions')
