"""Engines for databases notifier only reads (the ``sql`` source): pooled, and read-only.

Each database is asked to refuse writes on every connection of the pool, in its own words;
one without such a setting (none known) is read with SELECTs alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

CONNECT_TIMEOUT_S = 5
_READ_ONLY = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}
_TIMEOUT_ARGUMENT = {"postgresql", "mysql"}  # drivers that take connect_timeout


def read_only_engine(url: URL) -> Engine:
    """A pool for *url* whose connections refuse writes where the database allows it."""
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend in _TIMEOUT_ARGUMENT:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True, hide_parameters=True)
    statement = _READ_ONLY.get(backend)
    if statement is None:
        return engine
    commits = backend == "postgresql"  # the setting holds once its transaction commits

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        if commits:
            dbapi_connection.commit()

    return engine
