"""community: each moderation action counts its attempts (``send_attempt``), raised as an executor
claims it and as a person settles an ``unknown`` one with "Try again", so that the answer of a call
given up for dead (its claim swept, the action put back in the queue and performed again, or tried
again by a person) can never be recorded over a newer attempt's claim or outcome: it is recorded only
while the row is still at that attempt (community.moderation.execute), and a stale answer is logged
and audited instead (``moderation.stale_result``). Existing rows start at 0; a process of the version
before (a rolling upgrade) neither raises nor checks the count, and records its answers as it did.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-15
"""

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('moderation_actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_attempt', sa.Integer(), server_default=sa.text('0'), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('moderation_actions', schema=None) as batch_op:
        batch_op.drop_column('send_attempt')
