"""console: outgoing webhook subscriptions and deliveries, digest schedules

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import models.base

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = models.base.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('webhook_subscriptions',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('events', JSON, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_subscriptions'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('subscription_id', ID, nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('event_type', sa.String(length=50), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', TS, nullable=False),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('delivered_at', TS, nullable=True),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscriptions.id'],
                            name=op.f('fk_webhook_deliveries_subscription_id_webhook_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('subscription_id', 'event_id', name=op.f('uq_webhook_deliveries_subscription_id'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_subscription_id'), ['subscription_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_next_attempt_at'), ['next_attempt_at'], unique=False)

    op.create_table('digest_schedules',
    sa.Column('period', sa.String(length=10), nullable=False),
    sa.Column('send_at', sa.String(length=5), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('recipients', JSON, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('last_sent_key', sa.String(length=40), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_by', sa.String(length=100), nullable=True),
    sa.Column('updated_at', TS, nullable=False),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_digest_schedules')),
    sa.UniqueConstraint('period', name=op.f('uq_digest_schedules_period'))
    )


def downgrade() -> None:
    for table in ('digest_schedules', 'webhook_deliveries', 'webhook_subscriptions'):
        op.drop_table(table)
