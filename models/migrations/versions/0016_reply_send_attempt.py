"""service: each reply counts its send attempts (``send_attempt``), raised as a sender claims it and
as a person settles an ``unknown`` reply with "send it again", so that the answer of an attempt given
up for dead (swept ``unknown``, then sent again) can never be recorded over a newer attempt's: it is
recorded only while the row is still at that attempt (service.stranded.record_reply_outcome), and a
late "posted" from an older attempt is audited instead (``reply.stale_posted``/``reply.posted_twice``,
the reply may be out twice). Existing rows start at 0; a process of the version before (a rolling
upgrade) neither raises nor checks the count, and records its answers as it did.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-14
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('replies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_attempt', sa.Integer(), server_default=sa.text('0'), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('replies', schema=None) as batch_op:
        batch_op.drop_column('send_attempt')
