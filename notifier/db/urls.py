"""The database URLs notifier accepts: its own state's (SQLite, PostgreSQL) and the sql source's.

Which databases and drivers there are is this package's knowledge; the settings and the
sql source's options ask here, and turn a ValueError into their own error naming the
variable or option. Messages never repeat a URL: it may carry a password.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from notifier.db.database import prepare_threshold

_PORT_END = 65536  # one past the largest TCP port


# The databases notifier keeps its own state in, each with the one driver it ships.
_STATE_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
_SUPPORTED_DATABASES = "supported: sqlite, postgresql"


def state_database_url(value: object) -> object:
    """A URL of a database notifier keeps its own state in, with its driver normalised."""
    # Messages never repeat the URL: secrets.describe() shows it once, with its password redacted.
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected a database URL")
    text = value.strip()
    if not text:
        raise ValueError("empty; leave it unset for the embedded SQLite default")
    try:
        url = make_url(text)
    except ArgumentError:
        raise ValueError(
            f"not a database URL ({_SUPPORTED_DATABASES}; e.g. "
            "sqlite:////var/lib/notifier/notifier.db or postgresql://user@host/db)"
        ) from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise ValueError(
            f"not a database URL: the port after the host must be a number ({_SUPPORTED_DATABASES})"
        ) from None
    url = normalise_database_url(url)
    _check_state_database(url)
    if url.port is not None and not 0 < url.port < _PORT_END:
        raise ValueError(f"port {url.port} is out of range (1-65535)")
    if url.get_backend_name() == "sqlite" and not url.database:
        raise ValueError("a SQLite URL needs a file path (in-memory databases are not shared)")
    if "prepare_threshold" in url.query:
        if url.get_backend_name() != "postgresql":
            raise ValueError("prepare_threshold is an option of PostgreSQL URLs (psycopg)")
        prepare_threshold(url.query["prepare_threshold"])  # raises ValueError naming it
    return url.render_as_string(hide_password=False)


def _check_state_database(url: URL) -> None:
    """Refuse a database or driver other than the two notifier keeps its own state in."""
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"unknown database driver {url.drivername!r} ({_SUPPORTED_DATABASES})"
        ) from None
    backend = url.get_backend_name()
    if backend not in _STATE_DRIVERS:
        raise ValueError(
            f"unsupported database {backend!r} for notifier's own state ({_SUPPORTED_DATABASES}); "
            "to read tokens from such a database, use the sql source and its own URL "
            "(NOTIFIER_SQL_URL)"
        )
    driver = url.get_driver_name()
    if driver != _STATE_DRIVERS[backend]:
        raise ValueError(
            f"driver {driver!r} is not supported: write {backend}:// for the "
            f"{_STATE_DRIVERS[backend]} driver notifier ships ({_SUPPORTED_DATABASES})"
        )


def normalise_database_url(url: URL) -> URL:
    """Map the URL spellings operators use onto the drivers we ship (psycopg 3)."""
    if url.drivername in {"postgres", "postgresql"}:
        return url.set(drivername="postgresql+psycopg")
    return url


def external_database_url(text: str) -> URL:
    """The URL of a database the sql source reads, with its driver normalised and installed."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise ValueError("not a database URL") from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise ValueError("not a database URL: the port after the host must be a number") from None
    if url.port is not None and not 0 < url.port < _PORT_END:
        raise ValueError(f"port {url.port} is out of range (1-65535)")
    if url.drivername in {"postgres", "postgresql"}:
        url = url.set(drivername="postgresql+psycopg")
    elif url.drivername in {"mysql", "mariadb"}:
        url = url.set(drivername=f"{url.drivername}+pymysql")
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"unknown database driver {url.drivername!r}") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        extra = (
            " (pip install pymysql, in notifier's environment)"
            if url.get_backend_name() == "mysql"
            else ""
        )
        raise ValueError(
            f"the driver for {url.drivername!r} is not installed: {error}{extra}"
        ) from None
    return url
