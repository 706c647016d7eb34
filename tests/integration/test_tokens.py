"""The token lifecycle on real databases: rotate, verify, delete, audit, import, export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from structlog.testing import capture_logs

from notifier.audit import list_events
from notifier.core.clock import FixedClock
from notifier.db.database import Database
from notifier.db.models import Token
from notifier.delivery.checker import Checker
from notifier.sinks.ui import UiSink
from notifier.testing import RecordingSink, make_policy
from notifier.tokens.fields import TokenInputError
from notifier.tokens.importer import read_records
from notifier.tokens.lifecycle import TokenNotFoundError, TokenStateError, TokenStore

DAY = timedelta(days=1)
POLICY = make_policy()


def store(database: Database, clock: FixedClock, pepper: str | None = None) -> TokenStore:
    return TokenStore(database, clock, POLICY, prefix="ntf_", pepper=pepper)


def dump(database: Database) -> str:
    """Every value in every table, as text."""
    tables = ["tokens", "audit_events", "delivery_state", "notifications", "meta"]
    parts: list[str] = []
    with database.read() as connection:
        for name in tables:
            for row in connection.execute(text(f"SELECT * FROM {name}")):
                parts.extend(str(value) for value in row)
    return "\n".join(parts)


class TestCreate:
    def test_all_fields(self, database: Database, clock: FixedClock) -> None:
        """Name, role, permissions, owner, labels and description are kept; the audit says so."""
        created = store(database, clock).create(
            name="deploy",
            expires_at=clock.now() + DAY * 30,
            role="ci",
            permissions=["tokens:read", "*", "tokens:read"],
            owner="ops@example.com",
            labels={"team": "platform", "env": "prod"},
            description="the deploy pipeline",
            actor="user:alice",
        )
        assert created.permissions == ["tokens:read", "*"]
        assert created.labels == {"team": "platform", "env": "prod"}
        assert created.owner == "ops@example.com"
        (event,) = list_events(database)
        assert (event.actor, event.action, event.token_id) == ("user:alice", "create", created.id)

    def test_never_expiring(self, database: Database, clock: FixedClock) -> None:
        """A token without expiry lists as never expiring and gets no notices."""
        created = store(database, clock).create(name="forever", expires_at=None)
        assert created.expires_at is None
        assert created.days_left is None
        assert created.status == "active"

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("permissions", ["has space"], "permissions"),
            ("labels", {"bad key!": "x"}, "labels"),
            ("labels", {"k": "line\nbreak"}, "control"),
            ("owner", "x" * 201, "owner: longer"),
        ],
    )
    def test_bad_fields(
        self, database: Database, clock: FixedClock, field: str, value: object, message: str
    ) -> None:
        """Bad fields are refused by name, and nothing is stored."""
        with pytest.raises(TokenInputError, match=message):
            store(database, clock).create(name="x", expires_at=None, **{field: value})  # type: ignore[arg-type]
        assert store(database, clock).list(include_revoked=True) == []


class TestVerify:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(pepper=st.one_of(st.none(), st.text(min_size=1, max_size=20)))
    def test_generate_hash_verify(
        self, database: Database, clock: FixedClock, pepper: str | None
    ) -> None:
        """Any created secret verifies as its token; with another pepper it does not."""
        tokens = store(database, clock, pepper)
        created = tokens.create(name="p", expires_at=clock.now() + DAY)
        result = tokens.verify(created.token)
        assert result.valid
        assert result.id == created.id
        other = store(database, clock, (pepper or "") + "x")
        assert not other.verify(created.token).valid

    def test_invalid_expired_revoked(self, database: Database, clock: FixedClock) -> None:
        """Verify says why a secret is refused."""
        tokens = store(database, clock)
        expiring = tokens.create(name="e", expires_at=clock.now() + DAY)
        revoked = tokens.create(name="r", expires_at=clock.now() + DAY * 10)
        tokens.revoke(revoked.id)
        assert tokens.verify("ntf_" + "0" * 48).reason == "invalid"  # bad checksum
        assert tokens.verify("something-else").reason == "invalid"
        assert tokens.verify(revoked.token).reason == "revoked"
        clock.advance(DAY)
        result = tokens.verify(expiring.token)
        assert (result.reason, result.id) == ("expired", expiring.id)

    def test_typo_is_refused_by_checksum(self, database: Database, clock: FixedClock) -> None:
        """A mistyped token fails on its checksum, logged by fingerprint, never the secret."""
        created = store(database, clock).create(name="t", expires_at=None)
        typo = created.token[:-1] + ("0" if created.token[-1] != "0" else "1")
        with capture_logs() as events:
            assert store(database, clock).verify(typo).reason == "invalid"
        (event,) = events
        assert event["reason"] == "checksum"
        assert str(event["fingerprint"]).startswith("sha256:")
        assert typo not in repr(events)
        assert typo[4:20] not in repr(events)

    def test_lookup_uses_the_hash_index(self, sqlite_url: object, clock: FixedClock) -> None:
        """Verification is a lookup through the unique index on the hash, not a scan."""
        from sqlalchemy.engine import URL  # noqa: PLC0415

        from notifier.db import migrate  # noqa: PLC0415

        assert isinstance(sqlite_url, URL)
        database = Database(sqlite_url)
        migrate.upgrade(database)
        tokens_table = Token.__table__
        query = select(tokens_table).where(tokens_table.c.secret_hash == "0" * 64)
        compiled = query.compile(database.engine)
        with database.read() as connection:
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())
            ).all()
        database.dispose()
        assert any(
            "USING INDEX" in str(row[-1]) and "secret_hash=?" in str(row[-1]) for row in plan
        )


class TestRotate:
    def test_without_grace(self, database: Database, clock: FixedClock) -> None:
        """The new secret works at once; the old one is revoked at once."""
        tokens = store(database, clock)
        old = tokens.create(
            name="ci",
            expires_at=clock.now() + DAY * 2,
            role="r",
            permissions=["a"],
            owner="o@x",
            labels={"k": "v"},
        )
        new = tokens.rotate(old.id)
        assert (new.name, new.role, new.permissions, new.owner, new.labels) == (
            "ci",
            "r",
            ["a"],
            "o@x",
            {"k": "v"},
        )
        assert new.rotated_from == old.id
        assert new.expires_at == clock.now() + DAY * 2  # the old lifetime, from now
        assert tokens.verify(new.token).valid
        assert tokens.verify(old.token).reason == "revoked"
        assert tokens.get(old.id).superseded_by == new.id

    def test_with_grace(self, database: Database, clock: FixedClock) -> None:
        """During the grace both secrets work; afterwards only the new one."""
        tokens = store(database, clock)
        old = tokens.create(name="ci", expires_at=clock.now() + DAY * 3)
        new = tokens.rotate(old.id, grace=timedelta(hours=2), ttl=DAY * 90)
        assert tokens.verify(old.token).valid
        assert tokens.get(old.id).status == "superseded"
        assert new.expires_at == clock.now() + DAY * 90
        clock.advance(timedelta(hours=2))
        assert tokens.verify(old.token).reason == "revoked"
        assert tokens.verify(new.token).valid

    def test_superseded_token_gets_no_notices(self, database: Database, clock: FixedClock) -> None:
        """A token in its rotation grace is not warned about; its successor may be."""
        tokens = store(database, clock)
        old = tokens.create(name="ci", expires_at=clock.now() + DAY * 2)
        tokens.rotate(old.id, grace=DAY, ttl=DAY * 3)
        sink = RecordingSink()
        checker = Checker(
            database=database,
            sinks=[sink],
            policy=POLICY,
            clock=clock,
            lease=timedelta(minutes=5),
        )
        report = checker.run()
        assert old.id not in {n.token_id for n in sink.received}
        assert report.in_window == 1  # only the new token

    def test_refusals(self, database: Database, clock: FixedClock) -> None:
        """A revoked or already rotated token cannot be rotated; an unknown id is named."""
        tokens = store(database, clock)
        revoked = tokens.create(name="r", expires_at=None)
        tokens.revoke(revoked.id)
        with pytest.raises(TokenStateError, match="revoked"):
            tokens.rotate(revoked.id)
        rotated = tokens.create(name="x", expires_at=None)
        tokens.rotate(rotated.id, grace=DAY)
        with pytest.raises(TokenStateError, match="already rotated"):
            tokens.rotate(rotated.id)
        with pytest.raises(TokenNotFoundError):
            tokens.rotate("nope")


class TestLimits:
    """One century for every token; NOTIFIER_TOKEN_MAX_LIFETIME below it, for create and rotate."""

    def test_a_stored_year_9999_token(self, database: Database, clock: FixedClock) -> None:
        """A token an older import left at year 9999 reads fine; rotating it needs a ttl."""
        with database.write() as connection:
            connection.execute(
                Token.__table__.insert().values(
                    id="legacy",
                    name="legacy",
                    permissions=[],
                    labels={},
                    created_at=clock.now() - DAY,
                    expires_at=datetime.max.replace(tzinfo=UTC),
                )
            )
        tokens = store(database, clock)
        assert tokens.get("legacy").status == "active"
        assert [t.id for t in tokens.list(expiring_within=timedelta(days=36525))] == []
        with pytest.raises(TokenInputError, match="expires_at: the token's own lifetime is more"):
            tokens.rotate("legacy")
        assert tokens.get("legacy").superseded_by is None  # the refusal wrote nothing
        assert tokens.rotate("legacy", ttl=DAY * 30).expires_at == clock.now() + DAY * 30

    @pytest.mark.parametrize(
        ("ttl", "message"),
        [
            (timedelta(days=36526), "ttl: must be positive and at most 100 years"),
            (timedelta(days=10**8 // 2), "ttl: must be positive and at most 100 years"),
        ],
    )
    def test_rotate_ttl_beyond_a_century(
        self, database: Database, clock: FixedClock, ttl: timedelta, message: str
    ) -> None:
        """A ttl past a century is refused by name rather than overflowing."""
        tokens = store(database, clock)
        token = tokens.create(name="t", expires_at=clock.now() + DAY)
        with pytest.raises(TokenInputError, match=message):
            tokens.rotate(token.id, ttl=ttl)

    def test_max_lifetime_for_create_and_rotate(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Below the century, the configured limit holds for creates and rotations."""
        unbounded = store(database, clock)
        long_lived = unbounded.create(name="old", expires_at=clock.now() + DAY * 200)
        tokens = TokenStore(
            database, clock, POLICY, prefix="ntf_", pepper=None, max_lifetime=DAY * 90
        )
        with pytest.raises(TokenInputError, match=r"more than 90d away \(NOTIFIER_TOKEN_MAX"):
            tokens.create(name="x", expires_at=clock.now() + DAY * 91)
        with pytest.raises(TokenInputError, match="expires_at: is required"):
            tokens.create(name="x", expires_at=None)
        with pytest.raises(TokenInputError, match="more than 90d away"):
            tokens.rotate(long_lived.id)  # its own 200 days would be carried over
        assert tokens.rotate(long_lived.id, ttl=DAY * 90).expires_at == clock.now() + DAY * 90


class TestDelete:
    def test_record_goes_audit_stays(self, database: Database, clock: FixedClock) -> None:
        """Delete removes the token, its state and notification; the audit keeps it."""
        tokens = store(database, clock)
        created = tokens.create(name="gone", expires_at=clock.now() + DAY)
        sink = RecordingSink()
        Checker(
            database=database,
            sinks=[sink, UiSink("ui", database, clock, "day")],
            policy=POLICY,
            clock=clock,
            lease=timedelta(minutes=5),
        ).run()
        tokens.delete(created.id, actor="user:bob")
        with pytest.raises(TokenNotFoundError):
            tokens.get(created.id)
        actions = [(e.action, e.actor) for e in list_events(database, token_id=created.id)]
        assert actions == [("delete", "user:bob"), ("create", "system")]
        with database.read() as connection:
            for table in ("tokens", "delivery_state", "notifications"):
                count = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                assert count == 0, table


class TestSecrecy:
    def test_plaintext_never_stored_logged_or_listed(
        self, database: Database, clock: FixedClock
    ) -> None:
        """The secret is in create's answer and nowhere else: not the DB, logs, list, export."""
        tokens = store(database, clock)
        with capture_logs() as events:
            created = tokens.create(name="s", expires_at=clock.now() + DAY)
            rotated = tokens.rotate(created.id, grace=DAY)
            tokens.verify(created.token + "x")
            listed = [t.model_dump_json() for t in tokens.list(include_revoked=True)]
            got = tokens.get(created.id).model_dump_json()
            exported = json.dumps(list(tokens.export()))
        haystack = "\n".join([dump(database), repr(events), *listed, got, exported])
        for secret in (created.token, rotated.token):
            assert secret not in haystack
            assert secret.removeprefix("ntf_")[:16] not in haystack


class TestImportExport:
    def test_export_import_round_trip(self, database: Database, clock: FixedClock) -> None:
        """Export then import into the same store changes nothing: idempotent."""
        tokens = store(database, clock)
        tokens.create(name="a", expires_at=clock.now() + DAY, labels={"team": "x"})
        tokens.create(name="b", expires_at=None, permissions=["*"])
        text_lines = "\n".join(json.dumps(record) for record in tokens.export())
        report = tokens.import_records(read_records(text_lines, "jsonl"))
        assert (report.created, report.updated, report.unchanged) == (0, 0, 2)
        assert [e.action for e in list_events(database)].count("import") == 0

    def test_import_upserts_and_audits(self, database: Database, clock: FixedClock) -> None:
        """New ids are created, changed ones updated, each with an audit event."""
        tokens = store(database, clock)
        first = read_records(
            '{"id": "k1", "name": "one", "expires_at": "2026-01-03T00:00:00Z"}\n'
            '{"id": "k2", "name": "two", "expires_at": null}\n',
            "jsonl",
        )
        assert tokens.import_records(first, actor="user:x").created == 2
        second = read_records(
            '{"id": "k1", "name": "one", "expires_at": "2026-01-05T00:00:00Z"}\n'
            '{"id": "k2", "name": "two", "expires_at": null}\n',
            "jsonl",
        )
        report = tokens.import_records(second, actor="user:x")
        assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
        assert tokens.get("k1").expires_at == clock.now() + DAY * 4
        assert tokens.get("k2").expires_at is None
        events = list_events(database, token_id="k1")
        assert [(e.action, e.details) for e in events] == [
            ("import", {"changed": ["expires_at"]}),
            ("import", {"created": True}),
        ]

    def test_imported_hash_verifies(self, database: Database, clock: FixedClock) -> None:
        """An api-keys.json hash makes the imported key verifiable by its plaintext."""
        import hashlib  # noqa: PLC0415

        plaintext = "legacy-key-123456"
        digest = hashlib.sha256(plaintext.encode()).hexdigest()
        document = json.dumps(
            {
                "keys": [
                    {
                        "id": "legacy",
                        "name": "old app",
                        "hash": f"sha256:{digest}",
                        "expiresAt": "2026-06-01T00:00:00Z",
                        "permissions": ["read"],
                    }
                ]
            }
        )
        tokens = store(database, clock)
        tokens.import_records(read_records(document, "api-keys"))
        result = tokens.verify(plaintext)
        assert (result.valid, result.id, result.permissions) == (True, "legacy", ["read"])
