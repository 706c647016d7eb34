"""Reading import files: each format, and each kind of bad row with its line and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

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
