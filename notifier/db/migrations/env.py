"""Alembic environment: runs on the connection (and inside the lock) that migrate.py holds."""

from alembic import context

from notifier.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
