"""console: the post an outgoing webhook delivery is about (``mention_id``, indexed), so that the
deliveries of a post whose content its platform's terms require removed are found without reading
every payload (listener.deletions); filled in for the deliveries already stored

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
# the payload's ``data.mention_id``, where it is a whole number (the scanner writes no other)
FILL = {
    'postgresql': "UPDATE webhook_deliveries SET mention_id = (payload #>> '{data,mention_id}')::bigint "
                  "WHERE jsonb_typeof(payload #> '{data,mention_id}') = 'number' "
                  "AND payload #>> '{data,mention_id}' ~ '^-?[0-9]{1,18}$'",  # a whole number, as SQLite's test
    'sqlite': "UPDATE webhook_deliveries SET mention_id = json_extract(payload, '$.data.mention_id') "
              "WHERE json_type(payload, '$.data.mention_id') = 'integer'",
}


def upgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mention_id', ID, nullable=True))
    op.execute(FILL[op.get_bind().dialect.name])  # before the index: one pass, no index upkeep
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_mention_id'), ['mention_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_mention_id'))
        batch_op.drop_column('mention_id')
