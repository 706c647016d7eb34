"""Reading import files: each format, and each kind of bad row with its line and field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from notifier.tokens.importer import ImportDataError, RowError, read_records

JSONL = "\n".join(
    [
        json.dumps(
            {
                "id": "k1",
                "name": "deploy",
                "role": "ci",
                "permissions": ["tokens:read"],
                "owner": "ops@example.com",
                "labels": {"team": "platform"},
                "description": "d",
                "created_at": "2026-01-01T00:00:00Z",
                "expires_at": "2026-02-01T00:00:00+01:00",
                "revoked_at": None,
                "last_used_at": None,
                "rotated_from": None,
                "superseded_by": None,
            }
        ),
        "",
        json.dumps({"id": "k2", "name": "forever", "expires_at": None}),
    ]
)
CSV = (
    "id,name,permissions,labels,expires_at,owner\n"
    "k1,deploy,tokens:read tokens:write,team=platform;env=prod,2026-02-01T00:00:00Z,ops@x\n"
    'k2,"name, with comma",,,never,\n'
)
API_KEYS = """{
  "keys": [
    {"id": "k1", "name": "CI", "hash": "sha256:%s", "permissions": ["read"],
     "createdAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-03-01T00:00:00Z"},
    {"id": "k2", "name": "dash", "expiresAt": null}
  ]
}""" % ("ab" * 32)


def errors(text: str, file_format: str) -> list[RowError]:
    with pytest.raises(ImportDataError) as caught:
        read_records(text, file_format)
    return caught.value.errors


class TestFormats:
    def test_jsonl(self) -> None:
        """JSONL rows carry every exported field; blank lines are skipped."""
        first, second = read_records(JSONL, "jsonl")
        assert first.line == 1
        assert second.line == 3
        assert first.values["expires_at"] == datetime(2026, 1, 31, 23, tzinfo=UTC)
        assert first.values["labels"] == {"team": "platform"}
        assert second.values == {"id": "k2", "name": "forever", "expires_at": None}

    def test_csv(self) -> None:
        """CSV splits permissions and labels, reads 'never', and keeps quoted commas."""
        first, second = read_records(CSV, "csv")
        assert first.values["permissions"] == ["tokens:read", "tokens:write"]
        assert first.values["labels"] == {"team": "platform", "env": "prod"}
        assert second.values["name"] == "name, with comma"
        assert second.values["expires_at"] is None
        assert second.values["owner"] is None
        assert second.line == 3

    def test_api_keys_json(self) -> None:
        """api-keys.json maps camelCase and keeps the hash, with line numbers."""
        first, second = read_records(API_KEYS, "api-keys")
        assert first.values["secret_hash"] == "ab" * 32
        assert first.values["expires_at"] == datetime(2026, 3, 1, tzinfo=UTC)
        assert first.line == 3
        assert second.line == 5
        assert second.values["expires_at"] is None

    def test_bare_array(self) -> None:
        """api-keys.json may also be a bare array of keys."""
        (record,) = read_records('[{"id": "a", "name": "n", "expiresAt": null}]', "api-keys")
        assert record.values["id"] == "a"

    def test_no_creation_time_is_the_field_left_out(self) -> None:
        """A creation time of JSON null, an empty CSV cell or api-keys null is not carried."""
        (jsonl,) = read_records(
            '{"id": "a", "name": "x", "expires_at": null, "created_at": null}\n', "jsonl"
        )
        (csv,) = read_records("id,name,expires_at,created_at\na,x,never,\n", "csv")
        (keys,) = read_records(
            '[{"id": "a", "name": "x", "expiresAt": null, "createdAt": null}]', "api-keys"
        )
        assert [sorted(r.values) for r in (jsonl, csv, keys)] == [["expires_at", "id", "name"]] * 3


class TestBadRows:
    @pytest.mark.parametrize(
        ("row", "field", "words"),
        [
            ({"name": "x", "expires_at": None}, "id", "required"),
            ({"id": "a", "name": "x"}, "expires_at", "required"),
            ({"id": "a", "expires_at": None}, "name", "required"),
            (
                {"id": "a", "name": "x", "expires_at": "2026-01-01T00:00:00"},
                "expires_at",
                "timezone",
            ),
            ({"id": "a", "name": "x", "expires_at": "soon"}, "expires_at", "ISO 8601"),
            ({"id": "a b", "name": "x", "expires_at": None}, "id", "letters"),
            ({"id": "a", "name": "x", "expires_at": None, "expiry": 1}, "expiry", "unknown"),
            (
                {"id": "a", "name": "x", "expires_at": None, "permissions": "all"},
                "permissions",
                "list",
            ),
            (
                {"id": "a", "name": "x", "expires_at": None, "secret_hash": "xyz"},
                "secret_hash",
                "64 hex",
            ),
        ],
    )
    def test_jsonl_row_errors(self, row: dict[str, object], field: str, words: str) -> None:
        """Each bad row is reported with its line and the field at fault."""
        good = json.dumps({"id": "ok", "name": "ok", "expires_at": None})
        (error,) = errors(good + "\n" + json.dumps(row), "jsonl")
        assert error.line == 2
        assert error.field == field
        assert words in error.message
        assert str(error).startswith(f"line 2, field {field}:")

    def test_duplicate_ids(self) -> None:
        """A repeated id names the line it repeats."""
        row = json.dumps({"id": "same", "name": "x", "expires_at": None})
        (error,) = errors(f"{row}\n{row}\n", "jsonl")
        assert (error.line, error.field) == (2, "id")
        assert "repeats line 1" in error.message

    def test_not_json(self) -> None:
        """A line that is not JSON is named."""
        (error,) = errors('{"id": "a", "name": "x", "expires_at": null}\n{oops\n', "jsonl")
        assert error.line == 2
        assert "not JSON" in error.message

    def test_csv_without_expiry_column(self) -> None:
        """A CSV without an expires_at column is refused before any row is read."""
        (error,) = errors("id,name\nk1,x\n", "csv")
        assert (error.line, error.message) == (1, "missing column expires_at")

    def test_csv_empty_expiry_cell(self) -> None:
        """An empty expires_at cell is an error; 'never' says no expiry on purpose."""
        (error,) = errors("id,name,expires_at\nk1,x,\n", "csv")
        assert (error.line, error.field) == (2, "expires_at")

    def test_api_keys_unknown_field(self) -> None:
        """A misspelt api-keys.json field is named with its line."""
        text = (
            '{"keys": [\n'
            '  {"id": "a", "name": "x", "expiresAt": null},\n'
            '  {"id": "b", "name": "y", "expires": null}\n'
            "]}"
        )
        (error,) = errors(text, "api-keys")
        assert (error.line, error.field) == (3, "expires")

    def test_every_bad_row_is_listed(self) -> None:
        """All bad rows are reported at once, not just the first."""
        rows = [json.dumps({"id": f"k{i}", "name": "x"}) for i in range(3)]
        assert [e.line for e in errors("\n".join(rows), "jsonl")] == [1, 2, 3]


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def limit_errors(
    row: Mapping[str, object], max_lifetime: timedelta | None = None
) -> list[RowError]:
    with pytest.raises(ImportDataError) as caught:
        read_records(json.dumps(row), "jsonl", now=NOW, max_lifetime=max_lifetime)
    return caught.value.errors


class TestLimits:
    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            # the year-9999 expiry whose UTC conversion overflows
            ("expires_at", "9999-12-31T23:59:59-23:59", "is more than 100 years from now"),
            ("expires_at", "2126-01-03T00:00:00Z", "is more than 100 years from now"),
            ("expires_at", "1969-12-31T23:59:59Z", "is before 1970"),
            ("created_at", "0001-01-01T00:00:00+23:59", "is before 1970"),
            ("revoked_at", "9999-12-31T23:59:59Z", "is more than 100 years from now"),
            ("last_used_at", "9999-12-31T23:59:59-23:59", "is more than 100 years from now"),
        ],
    )
    def test_times_beyond_the_limits(self, field: str, value: str, message: str) -> None:
        """Times before 1970 or past a century from now are bad rows, named by field."""
        row = {"id": "a", "name": "x", "expires_at": None, field: value}
        (error,) = limit_errors(row)
        assert (error.line, error.field) == (1, field)
        assert error.message == f"{datetime.fromisoformat(value).isoformat()} {message}"

    def test_a_past_expiry_and_a_century_are_fine(self) -> None:
        """An expired token imports as expired; exactly 100 years ahead is still allowed."""
        text = "\n".join(
            json.dumps({"id": token_id, "name": "x", "expires_at": expires_at})
            for token_id, expires_at in [
                ("old", "2001-01-01T00:00:00Z"),
                ("far", "2125-12-31T00:00:00Z"),
            ]
        )
        assert [r.values["id"] for r in read_records(text, "jsonl", now=NOW)] == ["old", "far"]

    def test_max_lifetime(self) -> None:
        """With NOTIFIER_TOKEN_MAX_LIFETIME, later expiries and no expiry at all are refused."""
        limit = timedelta(days=90)
        (far,) = limit_errors({"id": "a", "name": "x", "expires_at": "2026-04-02T00:00:00Z"}, limit)
        assert (far.field, far.message) == (
            "expires_at",
            "2026-04-02T00:00:00+00:00 is more than 90d from now (NOTIFIER_TOKEN_MAX_LIFETIME)",
        )
        (never,) = limit_errors({"id": "a", "name": "x", "expires_at": None}, limit)
        assert never.field == "expires_at"
        assert never.message.startswith("a token that never expires is refused")
        fits = {"id": "a", "name": "x", "expires_at": "2026-04-01T00:00:00Z"}
        assert len(read_records(json.dumps(fits), "jsonl", now=NOW, max_lifetime=limit)) == 1
