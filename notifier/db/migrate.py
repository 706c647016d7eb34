"""Bring the schema to the current revision, under a database lock so replicas do not race.

On PostgreSQL the lock is a transaction-level advisory lock (released at commit, so it also
works behind PgBouncer in transaction mode); on SQLite it is the write lock of
``BEGIN IMMEDIATE``. Either way the second replica waits, then finds the schema current.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, inspect, select, text

from notifier.db.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision; a test checks it against the scripts, so start-up can compare one row
# instead of loading Alembic.
HEAD = "0006"
_LOCK_KEY = 0x6E6F7469  # "noti": the advisory lock all replicas agree on
_SCRIPTS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migration scripts."""
    # Alembic is imported only when a migration runs: most commands find the schema current.
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def script_head() -> str | None:
    """The head revision according to the scripts themselves."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None for an empty database."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_current(database: Database) -> bool:
    """Say whether the schema is at :data:`HEAD` (raises if the database does not answer)."""
    with database.read() as connection:
        return current_revision(connection) == HEAD


def upgrade(database: Database) -> bool:
    """Migrate to :data:`HEAD`; return True when something was applied."""
    if is_current(database):
        return False
    with database.write() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
        if current_revision(connection) == HEAD:
            return False  # another replica did it while we waited for the lock
        from alembic import command  # noqa: PLC0415

        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return True
