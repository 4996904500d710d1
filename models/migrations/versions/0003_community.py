"""community: accepted community answers, incident timeline

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import models.base

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = models.base.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('community_answers',
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=False),
    sa.Column('answer_mention_id', ID, nullable=True),
    sa.Column('question_mention_id', ID, nullable=True),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=True),
    sa.Column('source', sa.String(length=30), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['answer_mention_id'], ['mentions.id'],
                            name=op.f('fk_community_answers_answer_mention_id_mentions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['question_mention_id'], ['mentions.id'],
                            name=op.f('fk_community_answers_question_mention_id_mentions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_community_answers')),
    sa.UniqueConstraint('platform', 'external_id', name=op.f('uq_community_answers_platform_external_id'))
    )
    with op.batch_alter_table('community_answers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_community_answers_question_mention_id'), ['question_mention_id'],
                              unique=False)

    op.create_table('incident_updates',
    sa.Column('incident_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('details', JSON, nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'],
                            name=op.f('fk_incident_updates_incident_id_incidents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_updates'))
    )
    with op.batch_alter_table('incident_updates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incident_updates_incident_id'), ['incident_id'], unique=False)


def downgrade() -> None:
    op.drop_table('incident_updates')
    op.drop_table('community_answers')
