"""audit_events: an index on (action, object_type, object_id), so that "was this object audited so?"
is one lookup however long the log grows: the API's polling cursor asks it of every unrouted mention
(``mention.dead_lettered``, service.dead_mentions), the conversation page of its replies
(``reply.posted_twice``/``reply.copy_deleted``, service.duplicates).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_action_object', ['action', 'object_type', 'object_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_action_object')
