"""escalation: secure links, customer sessions, SLA breaches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa
import models.base

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('secure_links',
    sa.Column('case_id', ID, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('issued_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('expires_at', TS, nullable=False),
    sa.Column('used_at', TS, nullable=True),
    sa.Column('revoked_at', TS, nullable=True),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_secure_links_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_secure_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_secure_links_token_hash'))
    )
    with op.batch_alter_table('secure_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secure_links_case_id'), ['case_id'], unique=False)

    op.create_table('customer_sessions',
    sa.Column('case_id', ID, nullable=False),
    sa.Column('link_id', ID, nullable=False),
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('expires_at', TS, nullable=False),
    sa.Column('revoked_at', TS, nullable=True),
    sa.Column('customer_id', ID, nullable=True),
    sa.Column('code_hash', sa.String(length=200), nullable=True),
    sa.Column('code_expires_at', TS, nullable=True),
    sa.Column('codes_sent', sa.Integer(), nullable=False),
    sa.Column('last_code_at', TS, nullable=True),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('lockouts', sa.Integer(), nullable=False),
    sa.Column('locked_until', TS, nullable=True),
    sa.Column('verified_at', TS, nullable=True),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_customer_sessions_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['link_id'], ['secure_links.id'], name=op.f('fk_customer_sessions_link_id_secure_links'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_sessions_customer_id_customers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_sessions')),
    sa.UniqueConstraint('link_id', name=op.f('uq_customer_sessions_link_id')),
    sa.UniqueConstraint('session_hash', name=op.f('uq_customer_sessions_session_hash'))
    )
    with op.batch_alter_table('customer_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_sessions_case_id'), ['case_id'], unique=False)

    op.create_table('sla_breaches',
    sa.Column('case_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('due_at', TS, nullable=False),
    sa.Column('detected_at', TS, nullable=False),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_sla_breaches_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_breaches')),
    sa.UniqueConstraint('case_id', 'kind', name=op.f('uq_sla_breaches_case_id_kind'))
    )
    with op.batch_alter_table('sla_breaches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_breaches_case_id'), ['case_id'], unique=False)


def downgrade() -> None:
    for table in ('sla_breaches', 'customer_sessions', 'secure_links'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_case_id'))
        op.drop_table(table)
