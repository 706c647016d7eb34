"""The token lifecycle and token sources through the installed command, end to end."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from .conftest import cli

# What an older release's import could store: an expiry at the very end of year 9999, which
# today's limits refuse but which must still list, show, export and rotate (with --ttl).
LEGACY_ROW = (
    "INSERT INTO tokens (id, name, permissions, labels, created_at, expires_at) VALUES "
    "('legacy', 'legacy', '[]', '{}', '2020-01-01 00:00:00.000000', "
    "'9999-12-31 23:59:59.999999')"
)

WARN = re.compile(r"Warn: API Token (?P<name>.+) \(ID (?P<id>[^)]+)\) will expire in less than")


def create(env: dict[str, str], *args: str) -> dict[str, object]:
    result = cli("tokens", "create", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    created: dict[str, object] = json.loads(result.stdout)
    return created


class TestLifecycle:
    def test_create_with_every_field(self, env: dict[str, str]) -> None:
        """Repeatable --permission and --label, owner and description are kept and shown."""
        token = create(
            env,
            "--name",
            "deploy",
            "--role",
            "ci",
            "--permission",
            "tokens:read",
            "--permission",
            "*",
            "--owner",
            "ops@example.com",
            "--label",
            "team=platform",
            "--label",
            "env=prod",
            "--description",
            "pipeline",
            "--ttl",
            "30d",
        )
        got = cli("tokens", "get", str(token["id"]), env=env)
        assert got.returncode == 0
        assert "tokens:read *" in got.stdout
        assert "team=platform, env=prod" in got.stdout
        shown = json.loads(cli("tokens", "get", str(token["id"]), "--json", env=env).stdout)
        assert shown["labels"] == {"team": "platform", "env": "prod"}
        assert "token" not in shown

    def test_no_expiry_only_when_asked(self, env: dict[str, str]) -> None:
        """--no-expiry makes a token that never expires; the list says so."""
        create(env, "--name", "forever", "--no-expiry")
        table = cli("tokens", "list", env=env).stdout
        assert "never" in table
        assert (
            cli("tokens", "create", "--name", "x", "--no-expiry", "--ttl", "1d", env=env).returncode
            == 2
        )

    def test_verify_from_stdin_and_environment(self, env: dict[str, str]) -> None:
        """Verify reads stdin or NOTIFIER_TOKEN, never argv, and says valid or why not."""
        token = create(env, "--name", "ci", "--permission", "read", "--ttl", "2d")
        secret = str(token["token"])
        ok = cli("tokens", "verify", env=env, stdin=secret + "\n")
        assert ok.returncode == 0
        assert ok.stdout.startswith(f"valid: token {token['id']} (ci), permissions read, expires ")
        from_env = cli("tokens", "verify", "--json", env={**env, "NOTIFIER_TOKEN": secret})
        assert json.loads(from_env.stdout)["valid"] is True
        bad = cli("tokens", "verify", env=env, stdin="ntf_" + "0" * 48 + "\n")
        assert (bad.returncode, bad.stdout) == (1, "invalid: no such token\n")
        assert "token.verify_failed" in bad.stderr
        assert "0" * 48 not in bad.stderr
        argv = cli("tokens", "verify", secret, env=env)
        assert argv.returncode == 2  # no argument can carry a secret
        assert secret not in argv.stderr
        empty = cli("tokens", "verify", env=env, stdin="")
        assert empty.returncode == 2

    def test_rotate_without_and_with_grace(self, env: dict[str, str]) -> None:
        """Rotation revokes the old secret at once, or after the grace; the new one works."""
        first = create(env, "--name", "ci", "--owner", "o@x", "--ttl", "10d")
        rotated = json.loads(cli("tokens", "rotate", str(first["id"]), "--json", env=env).stdout)
        assert rotated["name"] == "ci"
        assert rotated["owner"] == "o@x"
        assert rotated["rotated_from"] == first["id"]
        assert cli("tokens", "verify", env=env, stdin=str(first["token"])).stdout.startswith(
            "revoked"
        )
        assert cli("tokens", "verify", env=env, stdin=str(rotated["token"])).returncode == 0
        graced = json.loads(
            cli("tokens", "rotate", str(rotated["id"]), "--grace", "1h", "--json", env=env).stdout
        )
        assert cli("tokens", "verify", env=env, stdin=str(rotated["token"])).returncode == 0
        assert cli("tokens", "verify", env=env, stdin=str(graced["token"])).returncode == 0
        listed = {
            t["id"]: t["status"]
            for t in json.loads(cli("tokens", "list", "--json", env=env).stdout)
        }
        assert listed[str(rotated["id"])] == "superseded"
        again = cli("tokens", "rotate", str(rotated["id"]), env=env)
        assert again.returncode == 1
        assert "already rotated" in again.stderr

    def test_list_filters(self, env: dict[str, str]) -> None:
        """--expiring-within, --revoked and --all select what the list shows."""
        soon = create(env, "--name", "soon", "--ttl", "1d")
        create(env, "--name", "later", "--ttl", "30d")
        gone = create(env, "--name", "gone", "--ttl", "30d")
        cli("tokens", "revoke", str(gone["id"]), env=env)

        def names(*args: str) -> list[str]:
            return [
                t["name"]
                for t in json.loads(cli("tokens", "list", "--json", *args, env=env).stdout)
            ]

        assert names("--expiring-within", "48h") == ["soon"]
        assert names("--revoked") == ["gone"]
        assert sorted(names("--all")) == ["gone", "later", "soon"]
        assert sorted(names()) == ["later", "soon"]
        assert soon["status"] == "expiring"

    def test_delete_and_audit(self, env: dict[str, str]) -> None:
        """Delete removes the record; `audit list` still shows that it existed, and who."""
        token = create(env, "--name", "tmp", "--ttl", "1d")
        assert cli("tokens", "delete", str(token["id"]), env=env).returncode == 0
        assert cli("tokens", "get", str(token["id"]), env=env).returncode == 1
        events = json.loads(cli("audit", "list", "--json", env=env).stdout)
        assert [e["action"] for e in events] == ["delete", "create"]
        assert all(e["token_id"] == token["id"] for e in events)
        assert all(e["actor"].startswith(("user:", "uid:")) for e in events)
        table = cli("audit", "list", "--token", str(token["id"]), env=env).stdout
        assert "delete" in table
        assert "tmp" in table


def database_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "notifier" / "notifier.db"


def usage_line(stderr: str) -> str:
    """The one line argparse (or the command, in its style) ends a usage error with."""
    assert "Traceback" not in stderr
    return stderr.splitlines()[-1]


class TestLimits:
    @pytest.mark.parametrize(
        ("command", "args", "line"),
        [
            (
                "create",
                ["--ttl", "100000000d"],
                (
                    "notifier tokens create: error: argument --ttl: '100000000d' is longer than "
                    "100 years"
                ),
            ),
            (
                "create",
                ["--ttl", "36526d"],
                "notifier tokens create: error: argument --ttl: '36526d' is longer than 100 years",
            ),
            (
                "create",
                ["--expires-at", "9999-12-31T23:59:59-23:59"],
                (
                    "notifier tokens create: error: argument --expires-at: "
                    "9999-12-31T23:59:59-23:59 is more than 100 years away"
                ),
            ),
            (
                "list",
                ["--expiring-within", "100000000d"],
                (
                    "notifier tokens list: error: argument --expiring-within: '100000000d' is "
                    "longer than 100 years"
                ),
            ),
        ],
    )
    def test_out_of_range_arguments_are_usage_errors(
        self, env: dict[str, str], command: str, args: list[str], line: str
    ) -> None:
        """A lifetime past 100 years, or a time past year 9999, is refused by name: exit 2."""
        name = ["--name", "x"] if command == "create" else []
        result = cli("tokens", command, *name, *args, env=env)
        assert (result.returncode, usage_line(result.stderr)) == (2, line)
        assert json.loads(cli("tokens", "list", "--all", "--json", env=env).stdout) == []

    def test_other_fields_name_their_option(self, env: dict[str, str]) -> None:
        """A refused field is named by the option that set it, argparse's way."""
        result = cli("tokens", "create", "--name", "x", "--owner", "a\tb", "--ttl", "1d", env=env)
        assert result.returncode == 2
        assert usage_line(result.stderr) == (
            "notifier tokens create: error: argument --owner: must not contain control or "
            "format characters"
        )

    def test_a_legacy_year_9999_token(self, env: dict[str, str]) -> None:
        """A stored year-9999 token lists, shows and exports; rotating it needs --ttl."""
        assert cli("db", "upgrade", env=env).returncode == 0
        with sqlite3.connect(database_file(env)) as connection:
            connection.execute(LEGACY_ROW)
        listed = cli("tokens", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert "9999-12-31T23:59:59Z" in listed.stdout
        shown = cli("tokens", "get", "legacy", "--json", env=env)
        assert json.loads(shown.stdout)["expires_at"] == "9999-12-31T23:59:59.999999Z"
        assert (
            '"expires_at": "9999-12-31T23:59:59.999999Z"' in cli("tokens", "export", env=env).stdout
        )
        within = cli("tokens", "list", "--expiring-within", "36525d", "--json", env=env)
        assert (within.returncode, json.loads(within.stdout)) == (0, [])
        assert cli("check", env=env).returncode == 0

        carried = cli("tokens", "rotate", "legacy", env=env)
        assert carried.returncode == 2
        assert usage_line(carried.stderr) == (
            "notifier tokens rotate: error: the new token needs --ttl or --expires-at: the "
            "token's own lifetime is more than 100 years, too long to carry over to the new one"
        )
        graced = cli("tokens", "rotate", "legacy", "--ttl", "30d", "--grace", "100000000d", env=env)
        assert graced.returncode == 2
        assert usage_line(graced.stderr) == (
            "notifier tokens rotate: error: argument --grace: '100000000d' is longer than 100 years"
        )
        far = cli(
            "tokens", "rotate", "legacy", "--expires-at", "9999-12-31T23:59:59-23:59", env=env
        )
        assert far.returncode == 2
        assert "argument --expires-at: 9999-12-31T23:59:59-23:59 is more than 100 years away" in (
            usage_line(far.stderr)
        )
        rotated = cli("tokens", "rotate", "legacy", "--ttl", "30d", "--json", env=env)
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["rotated_from"] == "legacy"

    def test_import_refuses_times_out_of_range(self, env: dict[str, str], tmp_path: Path) -> None:
        """Import rows past the limits are named by line and field, exit 65, nothing written."""
        path = tmp_path / "far.jsonl"
        path.write_text(
            '{"id": "ok", "name": "fine", "expires_at": "2030-01-01T00:00:00Z"}\n'
            '{"id": "a", "name": "a", "expires_at": "9999-12-31T23:59:59-23:59"}\n'
            '{"id": "b", "name": "b", "expires_at": "9999-12-31T23:59:59Z"}\n'
            '{"id": "c", "name": "c", "expires_at": null, '
            '"created_at": "0001-01-01T00:00:00+23:59"}\n'
            '{"id": "d", "name": "d", "expires_at": null, '
            '"revoked_at": "9999-12-31T23:59:59-23:59"}\n'
        )
        result = cli("tokens", "import", str(path), env=env)
        assert result.returncode == 65
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines() == [
            (
                f"notifier: {path}: line 2, field expires_at: 9999-12-31T23:59:59-23:59 is more "
                "than 100 years from now"
            ),
            (
                f"notifier: {path}: line 3, field expires_at: 9999-12-31T23:59:59+00:00 is more "
                "than 100 years from now"
            ),
            f"notifier: {path}: line 4, field created_at: 0001-01-01T00:00:00+23:59 is before 1970",
            (
                f"notifier: {path}: line 5, field revoked_at: 9999-12-31T23:59:59-23:59 is more "
                "than 100 years from now"
            ),
            "notifier: nothing imported: 4 bad row(s)",
        ]
        assert json.loads(cli("tokens", "list", "--all", "--json", env=env).stdout) == []


class TestMaxLifetime:
    """NOTIFIER_TOKEN_MAX_LIFETIME bounds the CLI's creates, rotates and imports too."""

    @pytest.fixture
    def bounded(self, env: dict[str, str]) -> dict[str, str]:
        return {
            **env,
            "NOTIFIER_TOKEN_MAX_LIFETIME": "90d",
            "NOTIFIER_TOKEN_DEFAULT_TTL": "30d",
        }

    @pytest.mark.parametrize(
        ("args", "line"),
        [
            (
                ["--ttl", "91d"],
                "argument --ttl: 91d is longer than NOTIFIER_TOKEN_MAX_LIFETIME (90d)",
            ),
            (
                ["--expires-at", "2099-01-01T00:00:00Z"],
                (
                    "argument --expires-at: 2099-01-01T00:00:00+00:00 is more than 90d away "
                    "(NOTIFIER_TOKEN_MAX_LIFETIME)"
                ),
            ),
            (
                ["--no-expiry"],
                "argument --no-expiry: tokens live at most 90d (NOTIFIER_TOKEN_MAX_LIFETIME)",
            ),
        ],
    )
    def test_create(self, bounded: dict[str, str], args: list[str], line: str) -> None:
        """A create beyond the limit is a usage error naming the option."""
        result = cli("tokens", "create", "--name", "x", *args, env=bounded)
        assert result.returncode == 2
        assert usage_line(result.stderr) == f"notifier tokens create: error: {line}"
        assert cli("tokens", "create", "--name", "x", "--ttl", "90d", env=bounded).returncode == 0

    def test_the_default_ttl_beyond_the_limit(self, env: dict[str, str]) -> None:
        """The one-year default cannot serve under a 90-day limit: configuration error, 78."""
        result = cli(
            "tokens", "create", "--name", "x", env={**env, "NOTIFIER_TOKEN_MAX_LIFETIME": "90d"}
        )
        assert result.returncode == 78
        assert usage_line(result.stderr) == (
            "notifier: configuration error: NOTIFIER_TOKEN_MAX_LIFETIME='90d': shorter than "
            "NOTIFIER_TOKEN_DEFAULT_TTL (365d), the lifetime of a token created without one; "
            "lower that as well"
        )

    def test_rotate(self, env: dict[str, str], bounded: dict[str, str]) -> None:
        """A rotation may not carry over, nor ask for, a lifetime beyond the limit."""
        token = create(env, "--name", "ci", "--ttl", "200d")
        asked = cli("tokens", "rotate", str(token["id"]), "--ttl", "91d", env=bounded)
        assert asked.returncode == 2
        assert usage_line(asked.stderr) == (
            "notifier tokens rotate: error: argument --ttl: 91d is longer than "
            "NOTIFIER_TOKEN_MAX_LIFETIME (90d)"
        )
        carried = cli("tokens", "rotate", str(token["id"]), env=bounded)
        assert carried.returncode == 2
        assert usage_line(carried.stderr).startswith(
            "notifier tokens rotate: error: the new token needs --ttl or --expires-at: "
        )
        assert usage_line(carried.stderr).endswith(
            "is more than 90d away (NOTIFIER_TOKEN_MAX_LIFETIME)"
        )
        ok = cli("tokens", "rotate", str(token["id"]), "--ttl", "30d", env=bounded)
        assert ok.returncode == 0, ok.stderr

    def test_import(self, bounded: dict[str, str], tmp_path: Path) -> None:
        """Imported expiries beyond the limit, and tokens that never expire, are bad rows."""
        path = tmp_path / "t.csv"
        path.write_text(
            "id,name,expires_at\nok,ok,2000-01-01T00:00:00Z\nfar,far,2099-01-01T00:00:00Z\n"
            "never,never,never\n"
        )
        result = cli("tokens", "import", str(path), env=bounded)
        assert result.returncode == 65
        assert result.stderr.splitlines() == [
            (
                f"notifier: {path}: line 3, field expires_at: 2099-01-01T00:00:00+00:00 is more "
                "than 90d from now (NOTIFIER_TOKEN_MAX_LIFETIME)"
            ),
            (
                f"notifier: {path}: line 4, field expires_at: a token that never expires is "
                "refused; tokens live at most 90d (NOTIFIER_TOKEN_MAX_LIFETIME)"
            ),
            "notifier: nothing imported: 2 bad row(s)",
        ]


class TestRevokeTwice:
    def test_second_revoke_says_when(self, env: dict[str, str]) -> None:
        """Revoking a revoked token says it already was, and since when; exit 0, no new event."""
        token = create(env, "--name", "ci", "--ttl", "1d")
        first = cli("tokens", "revoke", str(token["id"]), env=env)
        assert first.stdout == f"Revoked token {token['id']} (ci).\n"
        revoked_at = json.loads(cli("tokens", "get", str(token["id"]), "--json", env=env).stdout)[
            "revoked_at"
        ]
        second = cli("tokens", "revoke", str(token["id"]), env=env)
        assert second.returncode == 0
        assert second.stdout == (
            f"Token {token['id']} (ci) was already revoked at {revoked_at[:19]}Z.\n"
        )
        as_json = cli("tokens", "revoke", str(token["id"]), "--json", env=env)
        assert as_json.returncode == 0
        assert json.loads(as_json.stdout)["revoked_at"] == revoked_at
        actions = [e["action"] for e in json.loads(cli("audit", "list", "--json", env=env).stdout)]
        assert actions == ["revoke", "create"]


class TestImportExport:
    def test_round_trip_into_another_store(self, env: dict[str, str], tmp_path: Path) -> None:
        """Export from one store, import into another: the same tokens, no secrets moved."""
        create(env, "--name", "a", "--label", "k=v", "--ttl", "5d")
        create(env, "--name", "b", "--no-expiry", "--permission", "*")
        exported = cli("tokens", "export", env=env).stdout
        assert "ntf_" not in exported
        path = tmp_path / "tokens.jsonl"
        path.write_text(exported)
        other = {**env, "XDG_STATE_HOME": str(tmp_path / "other")}
        first = cli("tokens", "import", str(path), env=other)
        assert first.returncode == 0
        assert "2 created, 0 updated, 0 unchanged" in first.stdout
        again = cli("tokens", "import", str(path), env=other)
        assert "0 created, 0 updated, 2 unchanged" in again.stdout

        def listing(environment: dict[str, str]) -> list[dict[str, object]]:
            listed: list[dict[str, object]] = json.loads(
                cli("tokens", "list", "--json", env=environment).stdout
            )
            return listed

        assert [t["id"] for t in listing(env)] == [t["id"] for t in listing(other)]

    @pytest.mark.parametrize(
        ("name", "content"),
        [
            ("keys.csv", "id,name,expires_at,labels\nc1,csv token,2030-01-01T00:00:00Z,team=a\n"),
            ("api-keys.json", '{"keys": [{"id": "c1", "name": "json token", "expiresAt": null}]}'),
        ],
    )
    def test_other_formats(
        self, env: dict[str, str], tmp_path: Path, name: str, content: str
    ) -> None:
        """CSV and api-keys.json import by extension."""
        path = tmp_path / name
        path.write_text(content)
        result = cli("tokens", "import", str(path), env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(cli("tokens", "get", "c1", "--json", env=env).stdout)["id"] == "c1"

    def test_bad_rows_exit_65_and_import_nothing(self, env: dict[str, str], tmp_path: Path) -> None:
        """Bad rows are listed with line and field; nothing is imported; exit 65."""
        path = tmp_path / "t.jsonl"
        path.write_text(
            '{"id": "ok", "name": "fine", "expires_at": null}\n'
            '{"id": "k2", "name": "no expiry field"}\n'
            '{"id": "ok", "name": "dup", "expires_at": null}\n'
        )
        result = cli("tokens", "import", str(path), env=env)
        assert result.returncode == 65
        assert "line 2, field expires_at: is required" in result.stderr
        assert "line 3, field id: 'ok' repeats line 1" in result.stderr
        assert json.loads(cli("tokens", "list", "--json", env=env).stdout) == []

    def test_unreadable_file_exits_66(self, env: dict[str, str], tmp_path: Path) -> None:
        """A file that cannot be read is exit 66."""
        result = cli("tokens", "import", str(tmp_path / "missing.jsonl"), env=env)
        assert result.returncode == 66
        assert "cannot read" in result.stderr

    def test_stdin_needs_a_format(self, env: dict[str, str]) -> None:
        """`-` reads stdin when --format says what it is."""
        row = '{"id": "s1", "name": "piped", "expires_at": null}\n'
        assert cli("tokens", "import", "-", env=env, stdin=row).returncode == 2
        assert cli("tokens", "import", "-", "--format", "jsonl", env=env, stdin=row).returncode == 0

    def test_hundred_thousand_rows(self, env: dict[str, str], tmp_path: Path) -> None:
        """100k rows import in one transaction, and importing them again changes nothing."""
        path = tmp_path / "big.jsonl"
        with path.open("w") as handle:
            for index in range(100_000):
                handle.write(
                    json.dumps(
                        {
                            "id": f"k{index}",
                            "name": f"token {index}",
                            "expires_at": f"2030-01-{index % 28 + 1:02d}T00:00:00Z",
                        }
                    )
                    + "\n"
                )
        first = cli("tokens", "import", str(path), env=env)
        assert first.returncode == 0, first.stderr
        assert "100000 created" in first.stdout
        again = cli("tokens", "import", str(path), env=env)
        assert "100000 unchanged" in again.stdout
        database = Path(env["XDG_STATE_HOME"]) / "notifier" / "notifier.db"
        with sqlite3.connect(database) as connection:
            assert connection.execute("SELECT count(*) FROM tokens").fetchone() == (100_000,)


class TestSourcesEndToEnd:
    def test_file_source_warn_lines(self, env: dict[str, str], tmp_path: Path) -> None:
        """Tokens of a file source get the warn line, beside the store's own."""
        path = tmp_path / "partners.yaml"
        path.write_text(
            "- id: partner-1\n  name: acme upload key\n  expires_at: 2099-01-01T00:00:00Z\n"
        )
        soon = tmp_path / "soon.json"
        soon.write_text(json.dumps([{"id": "p-2", "name": "acme sync", "expires_at": _in_days(2)}]))
        create(env, "--name", "ours", "--ttl", "3d")
        sources = {
            **env,
            "NOTIFIER_SOURCES": "store,file:partners,file:soon",
            "NOTIFIER_FILE_PARTNERS_PATH": str(path),
            "NOTIFIER_FILE_SOON_PATH": str(soon),
        }
        result = cli("check", env=sources)
        assert result.returncode == 0, result.stderr
        names = sorted(m["name"] for line in result.stderr.splitlines() if (m := WARN.search(line)))
        assert names == ["acme sync", "ours"]
        assert "(ID p-2) will expire in less than 2 days." in result.stderr

    def test_sql_source_from_a_config_file(self, env: dict[str, str], tmp_path: Path) -> None:
        """A table in another SQLite database, described in the TOML file, is watched."""
        other = tmp_path / "billing.db"
        with sqlite3.connect(other) as connection:
            connection.execute("CREATE TABLE keys (key_id TEXT, label TEXT, valid_until TIMESTAMP)")
            connection.execute(
                "INSERT INTO keys VALUES ('b-1', 'billing export', ?)", (_in_days(1, naive=True),)
            )
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sources."sql:billing"]\n'
            f'url = "sqlite:///{other}"\n'
            'table = "keys"\n'
            'columns = { id = "key_id", name = "label", expires_at = "valid_until" }\n'
        )
        result = cli("check", env={**env, "NOTIFIER_CONFIG_FILE": str(config)})
        assert result.returncode == 0, result.stderr
        assert (
            "Warn: API Token billing export (ID b-1) will expire in less than 1 day."
            in result.stderr
        )

    def test_broken_source_exits_75_and_the_rest_goes_on(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """A source that cannot be read is logged by name; the store is still checked; exit 75."""
        create(env, "--name", "ours", "--ttl", "2d")
        broken = {
            **env,
            "NOTIFIER_SOURCES": "store,file",
            "NOTIFIER_FILE_PATH": str(tmp_path / "none.json"),
        }
        result = cli("check", env=broken)
        assert result.returncode == 75
        assert "source.failed source=file" in result.stderr
        assert "Warn: API Token ours" in result.stderr


def _in_days(days: int, *, naive: bool = False) -> str:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    moment = datetime.now(UTC) + timedelta(days=days) - timedelta(minutes=1)
    if naive:
        return moment.replace(tzinfo=None).isoformat(sep=" ")
    return moment.isoformat()
