"""escalation: at most one unresolved case per author (concurrent act workers)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

WHERE = "status != 'resolved' AND author_id IS NOT NULL"


def upgrade() -> None:
    doubles = op.get_bind().execute(sa.text(
        f"SELECT author_id, count(*) FROM cases WHERE {WHERE} GROUP BY author_id HAVING count(*) > 1")).all()
    if doubles:  # an operator decides which case stays open; the migration never merges cases itself
        raise RuntimeError("authors with more than one unresolved case (resolve all but one, then migrate "
                           f"again): {[(a, n) for a, n in doubles][:20]}")
    op.create_index('uq_cases_unresolved_author', 'cases', ['author_id'], unique=True,
                    sqlite_where=sa.text(WHERE), postgresql_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index('uq_cases_unresolved_author', table_name='cases')
