"""escalation: identities linked with a platform user id are keyed by it ("id:<user id>"), no longer
by the handle, which a stranger can take once it is given up and would inherit the customer record
with (links made by verification before this release). A handle link superseded by the account's id
link, or by a newer handle link of the same account, goes: ingest looks the id up first anyway.
Downgrade keeps the keys (earlier releases look "id:" keys up too).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_BY_HANDLE = "platform_user_id IS NOT NULL AND handle_key NOT LIKE 'id:%'"


def upgrade() -> None:
    op.execute(f"""
        DELETE FROM social_identities WHERE {_BY_HANDLE} AND (
            EXISTS (SELECT 1 FROM social_identities t WHERE t.platform = social_identities.platform
                    AND t.handle_key = 'id:' || social_identities.platform_user_id)
            OR EXISTS (SELECT 1 FROM social_identities t WHERE t.platform = social_identities.platform
                       AND t.platform_user_id = social_identities.platform_user_id
                       AND t.handle_key NOT LIKE 'id:%' AND t.id > social_identities.id))
    """)
    op.execute(f"UPDATE social_identities SET handle_key = 'id:' || platform_user_id WHERE {_BY_HANDLE}")


def downgrade() -> None:
    pass
