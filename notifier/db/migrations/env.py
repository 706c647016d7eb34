"""Alembic environment: runs on the connection (and inside the lock) that migrate.py holds."""

from alembic import context

from notifier.db.models import Base, is_modelled

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=lambda name, *_: is_modelled(name),
)
with context.begin_transaction():
    context.run_migrations()
