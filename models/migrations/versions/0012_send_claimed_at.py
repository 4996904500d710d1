"""service: when a reply or a moderation action was claimed for its platform call (``claimed_at``),
so that one left ``sending`` by a killed process is found and marked ``unknown`` (service.dispatch's
sweep) and stops counting against its channel's pace; the rows ``sending`` at the upgrade count as
claimed then (swept one bound later, not at once: an older process may still be sending them)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-11
"""

import sqlalchemy as sa
from alembic import op

import models.base

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TABLES = ('replies', 'moderation_actions')


def upgrade() -> None:
    now = models.base.utcnow()
    for name in TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column('claimed_at', models.base.UTCDateTime(timezone=True), nullable=True))
        table = sa.table(name, sa.column('status', sa.String()),
                         sa.column('claimed_at', models.base.UTCDateTime(timezone=True)))
        op.execute(table.update().where(table.c.status == 'sending').values(claimed_at=now))


def downgrade() -> None:
    for name in reversed(TABLES):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_column('claimed_at')
