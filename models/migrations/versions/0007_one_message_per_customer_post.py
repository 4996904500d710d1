"""escalation: a customer's post is kept on its case once (concurrent act workers)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

WHERE = "sender = 'customer' AND mention_id IS NOT NULL"


def upgrade() -> None:
    # copies left by an earlier race are the same post's same redacted words: keep the first of each
    op.execute(f"DELETE FROM case_messages WHERE {WHERE} AND id NOT IN (SELECT min(id) FROM case_messages "
               f"WHERE {WHERE} GROUP BY case_id, mention_id)")
    op.create_index('uq_case_messages_customer_post', 'case_messages', ['case_id', 'mention_id'], unique=True,
                    sqlite_where=sa.text(WHERE), postgresql_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index('uq_case_messages_customer_post', table_name='case_messages')
