"""The store on real databases: a SQLite file and PostgreSQL at 127.0.0.1:5432."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.schema import CreateIndex

from notifier.audit import list_events
from notifier.core.clock import FixedClock
from notifier.db import migrate
from notifier.db.database import Database, DatabaseUnavailableError, db_now
from notifier.db.models import OPEN_LOOP_SQL, Base, DeliveryStateRow, Token, is_modelled
from notifier.testing import make_policy
from notifier.tokens.fields import TokenInputError
from notifier.tokens.lifecycle import TokenNotFoundError, TokenStore
from notifier.tokens.secrets import hash_secret

POLICY = make_policy()


def store(database: Database, clock: FixedClock, pepper: str | None = None) -> TokenStore:
    return TokenStore(database, clock, POLICY, prefix="ntf_", pepper=pepper)


class TestSchema:
    # SQLAlchemy cannot reflect the search's expression indexes, says so, and skips them.
    @pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based")
    def test_migrations_match_the_models(self, database: Database) -> None:
        """The migration scripts build exactly the tables the models describe."""
        with database.read() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_name": lambda name, *_: is_modelled(name)}
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == []

    def test_the_open_loops_index_is_partial(self, database: Database) -> None:
        """The models' open-loops index says its condition to each database's DDL."""
        (index,) = (
            index
            for index in DeliveryStateRow.__table__.indexes
            if index.name == "ix_delivery_state_open"
        )
        ddl = str(CreateIndex(index).compile(dialect=database.engine.dialect))
        assert ddl.endswith(f"WHERE {OPEN_LOOP_SQL}")

    def test_upgrade_is_idempotent(self, database: Database) -> None:
        """A second upgrade finds the schema current and applies nothing."""
        assert migrate.upgrade(database) is False
        assert migrate.is_current(database)

    def test_head_constant_matches_the_scripts(self) -> None:
        """The HEAD start-up compares against is the scripts' head."""
        assert migrate.script_head() == migrate.HEAD

    def test_times_round_trip_in_utc(self, database: Database, clock: FixedClock) -> None:
        """A time with any offset is stored in UTC and read back aware, to the microsecond."""
        moment = datetime(2026, 5, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
        created = store(database, clock).create(name="tz", expires_at=moment)
        assert created.expires_at == moment
        assert created.expires_at.tzinfo == UTC

    def test_database_clock(self, database: Database) -> None:
        """The database's clock can be read, and shifted, in SQL."""
        with database.read() as connection:
            now, later = connection.execute(select(db_now(), db_now(600))).one()
        assert now.tzinfo == UTC
        assert abs((later - now) - timedelta(seconds=600)) < timedelta(seconds=1)
        assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)


class TestTokens:
    def test_create_stores_only_the_hash(self, database: Database, clock: FixedClock) -> None:
        """The secret is returned once; the database holds its SHA-256 and never the secret."""
        created = store(database, clock).create(name="ci", expires_at=clock.now() + timedelta(3))
        assert created.token.startswith("ntf_")
        assert len(created.token) == len("ntf_") + 48
        with database.read() as connection:
            row = connection.execute(select(Token.__table__)).one()
            dump = " ".join(str(value) for value in row)
        assert created.token not in dump
        assert row.secret_hash == hash_secret(created.token, None)

    def test_pepper_makes_an_hmac(self, database: Database, clock: FixedClock) -> None:
        """With a pepper the stored hash is HMAC-SHA-256, not the bare SHA-256."""
        created = store(database, clock, pepper="p").create(name="x", expires_at=None)
        with database.read() as connection:
            stored = connection.execute(select(Token.__table__.c.secret_hash)).scalar_one()
        assert stored == hash_secret(created.token, "p")
        assert stored != hash_secret(created.token, None)

    def test_list_status_and_days_left(self, database: Database, clock: FixedClock) -> None:
        """List orders by expiry and says status and X for each token."""
        tokens = store(database, clock)
        tokens.create(name="later", expires_at=clock.now() + timedelta(days=30))
        tokens.create(name="soon", expires_at=clock.now() + timedelta(days=2))
        tokens.create(name="forever", expires_at=None)
        listed = tokens.list()
        assert [t.name for t in listed] == ["soon", "later", "forever"]
        assert [t.status for t in listed] == ["expiring", "active", "active"]
        assert [t.days_left for t in listed] == [3, 31, None]
        clock.advance(timedelta(days=2))
        assert tokens.get(listed[0].id).status == "expired"

    def test_revoke(self, database: Database, clock: FixedClock) -> None:
        """A revoked token leaves the default list and shows as revoked with --all."""
        tokens = store(database, clock)
        created = tokens.create(name="old", expires_at=clock.now() + timedelta(days=2))
        revoked = tokens.revoke(created.id)
        assert revoked.status == "revoked"
        assert revoked.revoked_at == clock.now()
        assert tokens.list() == []
        assert [t.id for t in tokens.list(include_revoked=True)] == [created.id]
        clock.advance(timedelta(hours=1))
        assert tokens.revoke(created.id).revoked_at == revoked.revoked_at  # idempotent

    def test_revoke_once_says_whether_it_already_was(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A second revocation changes nothing, writes no event, and says it already was."""
        tokens = store(database, clock)
        created = tokens.create(name="t", expires_at=clock.now() + timedelta(days=2))
        first = tokens.revoke_once(created.id, actor="user:a")
        assert (first.already_revoked, first.token.revoked_at) == (False, clock.now())
        revoked_at = clock.now()
        clock.advance(timedelta(hours=1))
        second = tokens.revoke_once(created.id, actor="user:a")
        assert (second.already_revoked, second.token.revoked_at) == (True, revoked_at)
        assert [e.action for e in list_events(database)] == ["revoke", "create"]

    def test_revoke_once_in_a_grace_period_revokes_now(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A rotated token still in its grace period is revoked now, not 'already revoked'."""
        tokens = store(database, clock)
        old = tokens.create(name="t", expires_at=clock.now() + timedelta(days=2))
        tokens.rotate(old.id, grace=timedelta(hours=1))
        revocation = tokens.revoke_once(old.id)
        assert (revocation.already_revoked, revocation.token.revoked_at) == (False, clock.now())

    def test_unknown_id(self, database: Database, clock: FixedClock) -> None:
        """An unknown id is a clear error."""
        with pytest.raises(TokenNotFoundError, match="no token with id 'nope'"):
            store(database, clock).revoke("nope")

    @pytest.mark.parametrize(
        ("name", "expires_in", "message"),
        [
            ("", timedelta(days=1), "name: must not be empty"),
            ("x" * 201, timedelta(days=1), "longer than 200"),
            ("past", timedelta(seconds=-1), "not in the future"),
        ],
    )
    def test_bad_input(
        self,
        database: Database,
        clock: FixedClock,
        name: str,
        expires_in: timedelta,
        message: str,
    ) -> None:
        """Bad fields are refused by name and nothing is written."""
        with pytest.raises(TokenInputError, match=message):
            store(database, clock).create(name=name, expires_at=clock.now() + expires_in)
        assert store(database, clock).list(include_revoked=True) == []


class TestUnavailable:
    def test_postgres_refusing_connections(self) -> None:
        """A server that does not answer is DatabaseUnavailableError, not a crash."""
        from sqlalchemy.engine import make_url  # noqa: PLC0415

        database = Database(make_url("postgresql+psycopg://postgres@127.0.0.1:1/none"))
        with pytest.raises(DatabaseUnavailableError):
            database.ping()

    def test_sqlite_file_that_cannot_be_opened(self) -> None:
        """A SQLite path that cannot be opened is unavailable too."""
        from sqlalchemy.engine import URL  # noqa: PLC0415

        def open_and_query() -> None:
            database = Database(URL.create("sqlite+pysqlite", database="/proc/1/notifier.db"))
            with database.read() as connection:
                connection.execute(text("SELECT 1"))

        # Creating the file may already fail (it is made 0600 up front), or the first use does.
        with pytest.raises(DatabaseUnavailableError):
            open_and_query()
