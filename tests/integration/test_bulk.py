"""Bulk statements and loads on real databases: the same rows as SQLAlchemy writes."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from notifier.db import migrate
from notifier.db.bulk import ArrayStatement
from notifier.db.database import Database, json_text, json_value, upsert
from notifier.db.models import AuditEvent, DeliveryStateRow, Token, UtcDateTime

_tokens = Token.__table__
_events = AuditEvent.__table__
_state = DeliveryStateRow.__table__
MOMENT = datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)


def token_row(token_id: str, **fields: Any) -> dict[str, Any]:
    """A full tokens row, as an import inserts it."""
    row: dict[str, Any] = {
        "id": token_id,
        "name": f"name of {token_id}",
        "role": None,
        "permissions": [],
        "owner": None,
        "labels": {},
        "description": None,
        "secret_hash": None,
        "created_at": MOMENT,
        "expires_at": MOMENT + timedelta(days=3),
        "revoked_at": None,
        "last_used_at": None,
        "rotated_from": None,
        "superseded_by": None,
    }
    row.update(fields)
    return row


def stored(database: Database, table: Any, order: Any) -> list[dict[str, Any]]:
    with database.read() as connection:
        rows = connection.execute(select(table).order_by(order)).mappings().all()
    return [dict(row) for row in rows]


class TestBulkStatement:
    def test_writes_what_executemany_writes(self, database: Database) -> None:
        """Times, JSON, text and None come back the same as through SQLAlchemy's executemany."""
        variants: list[dict[str, Any]] = [
            {"permissions": ["tokens:read", "*"], "labels": {"team": "ops", "env": "prod"}},
            {"role": "admin", "owner": "ops@example.com", "description": "with\ttab"},
            {"expires_at": None, "revoked_at": MOMENT - timedelta(hours=1)},
            {"expires_at": datetime(2027, 1, 1, 12, tzinfo=UTC), "last_used_at": MOMENT},
        ]
        bulk = database.bulk(_tokens.insert(), tuple(token_row("x")))
        with database.write() as connection:
            bulk.execute(
                connection,
                [token_row(f"b{i}", name=f"n{i}", **v) for i, v in enumerate(variants)],
            )
            connection.execute(
                _tokens.insert(),
                [token_row(f"s{i}", name=f"n{i}", **v) for i, v in enumerate(variants)],
            )
        rows = stored(database, _tokens, _tokens.c.id)
        by_bulk = [{**row, "id": row["id"][1:]} for row in rows if row["id"][0] == "b"]
        by_sqlalchemy = [{**row, "id": row["id"][1:]} for row in rows if row["id"][0] == "s"]
        assert len(by_bulk) == len(variants)
        assert by_bulk == by_sqlalchemy
        assert by_bulk[0]["labels"] == {"team": "ops", "env": "prod"}
        assert by_bulk[3]["expires_at"] == datetime(2027, 1, 1, 12, tzinfo=UTC)

    def test_none_in_a_json_column_is_json_null_as_sqlalchemy_writes_it(
        self, database: Database
    ) -> None:
        """A JSON column's processor sees None too: both paths store the same thing."""
        constants = {"at": MOMENT, "actor": "test", "action": "import"}
        bulk = database.bulk(_events.insert().values(**constants), ("token_id", "details"))
        with database.write() as connection:
            bulk.execute(connection, [{"token_id": "bulk", "details": None}])
            connection.execute(
                _events.insert(), [{**constants, "token_id": "plain", "details": None}]
            )
            rows = connection.exec_driver_sql("SELECT token_id, details FROM audit_events")
            raw = {row[0]: row[1] for row in rows}
        assert raw["bulk"] == raw["plain"]

    def test_constants_are_bound_once_for_every_row(self, database: Database) -> None:
        """Values given to .values() reach every row, converted by their column type."""
        bulk = database.bulk(
            _events.insert().values(at=MOMENT, actor="importer", action="import", details={"a": 1}),
            ("token_id", "token_name"),
        )
        rows = [{"token_id": f"t{i}", "token_name": f"n{i}"} for i in range(3)]
        with database.write() as connection:
            assert bulk.execute(connection, rows) == len(rows)
        events = stored(database, _events, _events.c.id)
        assert [(e["token_id"], e["at"], e["actor"], e["details"]) for e in events] == [
            (f"t{i}", MOMENT, "importer", {"a": 1}) for i in range(3)
        ]

    def test_returns_the_rows_a_conditional_upsert_changed(self, database: Database) -> None:
        """The count is what a claim relies on: rows the WHERE refused are not counted."""
        insert = upsert(database.dialect, _state).values(attempts=literal_column("0", Integer()))
        claim = insert.on_conflict_do_update(
            index_elements=[_state.c.source, _state.c.token_id, _state.c.sink],
            set_={"version": _state.c.version + literal_column("1", Integer())},
            where=_state.c.version == insert.excluded.version,
        )
        keys = ("source", "token_id", "sink", "notices_sent", "version")
        bulk = database.bulk(claim, keys)
        rows = [
            {"source": "store", "token_id": t, "sink": "log", "notices_sent": 0, "version": 0}
            for t in ("a", "b", "c")
        ]
        with database.write() as connection:
            assert bulk.execute(connection, rows) == 3  # all inserted
        with database.write() as connection:
            # a and b at version 0 still: updated; c claims a version it does not have
            rows[2]["version"] = 7
            assert bulk.execute(connection, rows) == 2
        with database.write() as connection:
            assert bulk.execute(connection, []) == 0

    def test_update_by_named_parameters(self, database: Database) -> None:
        """An UPDATE keyed by bindparams writes each row's values to its own row."""
        with database.write() as connection:
            connection.execute(_tokens.insert(), [token_row("u1"), token_row("u2")])
        statement = (
            update(_tokens)
            .where(_tokens.c.id == bindparam("k_id"))
            .values(name=bindparam("v_name"), revoked_at=bindparam("v_revoked_at"))
        )
        bulk = database.bulk(statement, ("k_id", "v_name", "v_revoked_at"))
        with database.write() as connection:
            changed = bulk.execute(
                connection,
                [
                    {"k_id": "u1", "v_name": "one", "v_revoked_at": MOMENT},
                    {"k_id": "u2", "v_name": "two", "v_revoked_at": None},
                ],
            )
        assert changed == 2
        rows = stored(database, _tokens, _tokens.c.id)
        assert [(r["name"], r["revoked_at"]) for r in rows] == [("one", MOMENT), ("two", None)]

    @pytest.mark.postgres
    def test_postgresql_runs_one_statement_over_arrays(self, postgres_url: URL) -> None:
        """On PostgreSQL the rows travel as arrays of one statement, not one statement each."""
        database = Database(postgres_url)
        migrate.upgrade(database)
        seen: list[tuple[str, bool]] = []

        def remember(*args: Any) -> None:
            seen.append((str(args[2]), bool(args[5])))

        bulk = database.bulk(_tokens.insert(), tuple(token_row("x")))
        event.listen(database.engine, "before_cursor_execute", remember)
        with database.write() as connection:
            bulk.execute(connection, [token_row(f"a{n}") for n in range(300)])
        event.remove(database.engine, "before_cursor_execute", remember)
        count = len(stored(database, _tokens, _tokens.c.id))
        database.dispose()
        assert isinstance(bulk, ArrayStatement)
        writes = [(sql, many) for sql, many in seen if sql.startswith("INSERT")]
        assert len(writes) == 1
        assert "unnest(" in writes[0][0]
        assert not writes[0][1]  # not an executemany
        assert count == 300

    def test_integers_of_every_width_and_none_in_one_column(self, database: Database) -> None:
        """A column's values travel together (a binary array on PostgreSQL), of any size."""
        state = DeliveryStateRow.__table__
        # What a text array would have to quote: quotes, a comma, braces, a backslash.
        quoted = 'a "b", {c}\\'
        values = [None, 1, 40_000, 2_000_000_000, -5]
        keys: tuple[str, ...] = ("source", "token_id", "sink", "last_threshold_s")
        keys += ("notices_sent", "last_kind", "attempts", "version")
        bulk = database.bulk(state.insert(), keys)
        rows = [
            {
                "source": "store",
                "token_id": f"t{index}",
                "sink": "log",
                "last_threshold_s": value,
                "notices_sent": index,
                "last_kind": None if value is None else quoted,
                "attempts": 0,
                "version": 0,
            }
            for index, value in enumerate(values)
        ]
        with database.write() as connection:
            bulk.execute(connection, rows)
        stored_rows = stored(database, state, state.c.token_id)
        assert [row["last_threshold_s"] for row in stored_rows] == values
        assert [row["notices_sent"] for row in stored_rows] == list(range(len(values)))
        assert [row["last_kind"] for row in stored_rows] == [None, *[quoted] * 4]

    def test_refuses_keys_the_statement_does_not_use(self, database: Database) -> None:
        """A key the statement has no parameter for is a programming error, said at once."""
        with pytest.raises(ValueError, match=r"does not use \['colour'\]"):
            database.bulk(_tokens.insert(), (*token_row("x"), "colour"))

    def test_refuses_rows_that_lack_a_required_parameter(self, database: Database) -> None:
        """A parameter the rows do not carry is refused when the statement is built."""
        statement = update(_tokens).where(_tokens.c.id == bindparam("k_id")).values(name="x")
        with pytest.raises(ValueError, match="needs 'k_id'"):
            database.bulk(statement, ())


_scratch = Table(
    "scratch",
    MetaData(),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("name", String(20), nullable=False),
    Column("at", UtcDateTime()),
    Column("tags", JSON, server_default=text("'[]'")),
    Column("seen", Boolean),
    prefixes=["TEMPORARY"],
)


class TestBulkLoad:
    def test_rows_of_each_shape_are_stored_as_sqlalchemy_stores_them(
        self, database: Database
    ) -> None:
        """Rows carrying different columns load (a COPY on PostgreSQL) as an INSERT writes them."""
        variants: list[dict[str, Any]] = [
            {},
            {"permissions": ["tokens:read", "*"], "labels": {"team": "ops"}},
            {"expires_at": None, "revoked_at": MOMENT - timedelta(hours=1), "role": "ci"},
            {"description": "with\ttab and 'quotes'", "created_at": MOMENT - timedelta(days=2)},
            {},  # the first shape again, after others
        ]
        defaults = {"permissions": [], "labels": {}, "created_at": MOMENT}
        load = database.load(_tokens, defaults=defaults)
        rows = [
            {"id": f"b{i}", "name": f"n{i}", "expires_at": MOMENT, **variant}
            for i, variant in enumerate(variants)
        ]
        with database.write() as connection:
            with load.writing(connection) as append:
                assert append(rows[:3]) == 3
                assert append(rows[3:]) == 2
            connection.execute(
                _tokens.insert(),
                [{**token_row(f"s{i}"), **row, "id": f"s{i}"} for i, row in enumerate(rows)],
            )
        stored_rows = stored(database, _tokens, _tokens.c.id)
        by_load = [{**row, "id": row["id"][1:]} for row in stored_rows if row["id"][0] == "b"]
        by_sqlalchemy = [{**row, "id": row["id"][1:]} for row in stored_rows if row["id"][0] == "s"]
        assert len(by_load) == len(variants)
        assert by_load == by_sqlalchemy
        assert by_load[0]["permissions"] == []
        assert by_load[1]["labels"] == {"team": "ops"}
        assert by_load[3]["created_at"] == MOMENT - timedelta(days=2)

    def test_columns_a_row_leaves_out_take_the_table_defaults(self, database: Database) -> None:
        """Without a load default, a column the row does not carry is NULL or its server default."""
        with (
            database.held() as connection,
            database.temporary(connection, _scratch),
            database.transaction(connection, write=False),
        ):
            with database.load(_scratch).writing(connection) as append:
                append([{"position": 1, "name": "bare"}])
                append([{"position": 2, "name": "full", "at": MOMENT, "tags": ["x"]}])
            rows = connection.execute(select(_scratch).order_by(_scratch.c.position)).all()
        assert [tuple(row) for row in rows] == [
            (1, "bare", None, [], None),
            (2, "full", MOMENT, ["x"], None),
        ]

    def test_the_drivers_errors_come_as_sqlalchemys(self, database: Database) -> None:
        """A row the database refuses raises SQLAlchemy's IntegrityError, COPY or not."""
        load = database.load(_tokens, defaults={"permissions": [], "labels": {}})
        with (
            pytest.raises(IntegrityError),
            database.write() as connection,
            load.writing(connection) as append,
        ):
            append([{"id": "x", "name": "no creation time", "expires_at": MOMENT}])
        assert stored(database, _tokens, _tokens.c.id) == []


class TestHeldConnection:
    def test_a_temporary_table_is_dropped_after_its_block(self, database: Database) -> None:
        """The same temporary table can be made again on a pooled connection."""
        for attempt in range(2):
            with (
                database.held() as connection,
                database.temporary(connection, _scratch),
                database.transaction(connection, write=False),
            ):
                connection.execute(_scratch.insert(), [{"position": attempt, "name": "n"}])
                count = connection.execute(select(func.count()).select_from(_scratch)).scalar()
                assert count == 1

    def test_staging_leaves_the_file_to_other_writers(self, sqlite_database: Database) -> None:
        """While a transaction writes only temporary tables, another process may write."""
        with (
            sqlite_database.held() as connection,
            sqlite_database.temporary(connection, _scratch),
            sqlite_database.transaction(connection, write=False),
        ):
            connection.execute(_scratch.insert(), [{"position": 1, "name": "staged"}])
            other = sqlite3.connect(str(sqlite_database.url.database), timeout=0)
            with other:  # no busy timeout: a lock held would fail this at once
                other.execute("INSERT INTO meta (key, value) VALUES ('elsewhere', 'x')")
            other.close()

    def test_a_write_transaction_on_it_takes_the_lock_at_once(
        self, sqlite_database: Database
    ) -> None:
        """write=True begins IMMEDIATE on SQLite: another writer is refused until it ends."""
        with (
            sqlite_database.held() as connection,
            sqlite_database.transaction(connection, write=True),
        ):
            other = sqlite3.connect(str(sqlite_database.url.database), timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()


@pytest.mark.parametrize(
    "value",
    [
        [],  # most tokens: no scopes
        {},  # and no labels
        ["tokens:read"],
        {"team": "ops"},
        {"nested": {"x": [1, 2]}},
        "text",
        0,
        None,
    ],
)
def test_json_text_is_json_dumps(value: Any) -> None:
    """The JSON column's serializer writes exactly what json.dumps writes."""
    assert json_text(value) == json.dumps(value)


@pytest.mark.parametrize("text", ["[]", "{}", '["tokens:read"]', '{"team": "ops"}', "null", "0"])
def test_json_value_is_json_loads(text: str) -> None:
    assert json_value(text) == json.loads(text)


def test_json_value_never_shares_an_empty_value() -> None:
    """Each row gets its own list or dict: a change to one token's labels stays its own."""
    first, second = json_value("{}"), json_value("{}")
    first["team"] = "ops"
    assert second == {}
    assert json_value("[]") is not json_value("[]")


def test_fetch_all_reads_what_sqlalchemy_reads(database: Database) -> None:
    """Plain tuples, each value converted as SQLAlchemy's own result converts it."""
    rows = [
        token_row("f1", labels={"team": "ops"}, permissions=["*"], owner="ops@example.com"),
        token_row("f2", expires_at=None, revoked_at=MOMENT),
        token_row("f3"),
    ]
    with database.write() as connection:
        connection.execute(_tokens.insert(), rows)
    query = select(_tokens).order_by(_tokens.c.id)
    with database.read() as connection:
        plain = database.fetch_all(connection, query)
        theirs = [tuple(row) for row in connection.execute(query).all()]
    assert plain == theirs
    assert plain[0][_tokens.c.keys().index("labels")] == {"team": "ops"}
    assert plain[1][_tokens.c.keys().index("revoked_at")] == MOMENT
