"""listener: a thread's platform state (deleted or recovered as a whole: a Discourse topic) and
which posts its deletion hid

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

import models.base

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform_deleted_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('platform_state_at', models.base.UTCDateTime(timezone=True), nullable=True))
    # a constant default: PostgreSQL adds it without rewriting the table, SQLite in place
    with op.batch_alter_table('mentions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_with_thread', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('mentions', schema=None) as batch_op:
        batch_op.drop_column('deleted_with_thread')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_column('platform_state_at')
        batch_op.drop_column('platform_deleted_at')
