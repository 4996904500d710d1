"""Alembic environment: runs on the connection ``models.db.Database`` hands over."""

from alembic import context

from models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always run through models.db.Database
    raise RuntimeError("run migrations with `socialcare db upgrade` (models.db.Database.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
