"""The command line end to end, each command in a process of its own."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from .conftest import cli, notifier_command

WARN = re.compile(
    r"Warn: API Token (?P<name>.+) \(ID (?P<id>\w+)\) will expire in less than (?P<x>\d+) days?\."
)
COMMANDS = [
    [],
    ["run"],
    ["check"],
    ["config"],
    ["config", "show"],
    ["config", "example"],
    ["db"],
    ["db", "upgrade"],
    ["notifications"],
    ["notifications", "list"],
    ["tokens"],
    ["tokens", "create"],
    ["tokens", "list"],
    ["tokens", "revoke"],
]


def warn_lines(stderr: str) -> list[re.Match[str]]:
    return [match for line in stderr.splitlines() if (match := WARN.search(line))]


class TestCheckEndToEnd:
    def test_each_warn_line_is_printed_once(self, env: dict[str, str]) -> None:
        """Tokens created by the CLI; `check` twice: each warn line once, then backoff."""
        soon = json.loads(
            cli("tokens", "create", "--name", "ci-deploy", "--ttl", "3d", "--json", env=env).stdout
        )
        week = json.loads(
            cli("tokens", "create", "--name", "nightly", "--ttl", "6d23h", "--json", env=env).stdout
        )
        cli("tokens", "create", "--name", "far", "--ttl", "30d", env=env)
        first = cli("check", env=env)
        assert first.returncode == 0, first.stderr
        assert first.stdout == ""  # logs on stderr; check has no data to print
        lines = warn_lines(first.stderr)
        assert sorted((m["name"], m["id"], m["x"]) for m in lines) == sorted(
            [("ci-deploy", soon["id"], "3"), ("nightly", week["id"], "7")]
        )
        assert "check.completed in_window=2 sent=4 failed=0 skipped_backoff=0" in first.stderr
        second = cli("check", env=env)
        assert second.returncode == 0
        assert warn_lines(second.stderr) == []
        assert "skipped_backoff=4" in second.stderr

    def test_dry_run_prints_and_records_nothing(self, env: dict[str, str]) -> None:
        """--dry-run prints what each sink would get on stdout; the real pass still sends."""
        cli("tokens", "create", "--name", "ci", "--ttl", "2d", env=env)
        dry = cli("check", "--dry-run", env=env)
        assert dry.returncode == 0
        assert [line.split("\t")[0] for line in dry.stdout.splitlines()] == ["log", "ui"]
        assert warn_lines(dry.stdout)
        assert warn_lines(dry.stderr) == []
        real = cli("check", env=env)
        assert len(warn_lines(real.stderr)) == 1

    def test_json_log_format(self, env: dict[str, str]) -> None:
        """With NOTIFIER_LOG_FORMAT=json every stderr line is a JSON object."""
        cli("tokens", "create", "--name", "ci", "--ttl", "1d", env=env)
        result = cli("check", env={**env, "NOTIFIER_LOG_FORMAT": "json"})
        records = [json.loads(line) for line in result.stderr.splitlines()]
        (notice,) = [r for r in records if r["event"] == "notice.expiring"]
        assert WARN.fullmatch(notice["message"])
        assert notice["days_left"] == 1
        assert [r["event"] for r in records][-1] == "check.completed"

    def test_unreachable_database_exits_69(self, env: dict[str, str]) -> None:
        """A database that does not answer is exit 69, with the password kept out of sight."""
        url = "postgresql://notifier:hunter2@127.0.0.1:1/notifier"
        result = cli("check", env={**env, "NOTIFIER_DATABASE_URL": url})
        assert result.returncode == 69
        assert "db.unavailable" in result.stderr
        assert "hunter2" not in result.stderr

    def test_sqlite_path_that_cannot_be_created_exits_69(self, env: dict[str, str]) -> None:
        """A SQLite file in a directory that cannot be made is unavailable too: exit 69."""
        url = "sqlite:////proc/notifier/notifier.db"
        result = cli("check", env={**env, "NOTIFIER_DATABASE_URL": url})
        assert result.returncode == 69
        assert "cannot create the directory" in result.stderr

    def test_failed_delivery_exits_75_and_spares_the_other_sink(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """When one sink fails the pass exits 75; the other sink still delivered."""
        cli("tokens", "create", "--name", "ci", "--ttl", "2d", env=env)
        database = tmp_path / "state" / "notifier" / "notifier.db"
        with sqlite3.connect(database) as connection:
            connection.execute("DROP TABLE notifications")  # the ui sink can no longer write
        result = cli("check", env=env)
        assert result.returncode == 75
        assert len(warn_lines(result.stderr)) == 1
        assert "sink.crashed" in result.stderr
        assert "sent_by_sink.log=1 failed_by_sink.ui=1" in result.stderr
        again = cli("check", env=env)  # the log sink is in backoff; the ui sink retries
        assert again.returncode == 75
        assert warn_lines(again.stderr) == []

    def test_bad_config_exits_78(self, env: dict[str, str]) -> None:
        """A bad value is one line naming the variable, and exit 78."""
        result = cli("check", env={**env, "ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION": "100ms"})
        assert result.returncode == 78
        assert result.stderr.strip() == (
            "notifier: configuration error: "
            "ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION='100ms': must be at least 1s"
        )

    @pytest.mark.postgres
    def test_against_postgresql(self, env: dict[str, str], postgres_url: URL) -> None:
        """The same commands work on PostgreSQL."""
        pg = {**env, "NOTIFIER_DATABASE_URL": postgres_url.render_as_string(hide_password=False)}
        assert cli("tokens", "create", "--name", "pg", "--ttl", "2d", env=pg).returncode == 0
        assert len(warn_lines(cli("check", env=pg).stderr)) == 1
        assert warn_lines(cli("check", env=pg).stderr) == []


class TestTokens:
    def test_create_json_and_list(self, env: dict[str, str], tmp_path: Path) -> None:
        """The secret is shown once by create --json; list and the database never hold it."""
        created = cli("tokens", "create", "--name", "deploy", "--role", "ci", "--json", env=env)
        assert created.returncode == 0
        token = json.loads(created.stdout)
        assert {"id", "name", "expires_at", "token"} <= token.keys()
        assert token["token"].startswith("ntf_")
        assert token["expires_at"].endswith("Z")
        listed = cli("tokens", "list", "--json", env=env)
        (item,) = json.loads(listed.stdout)
        assert item["id"] == token["id"]
        assert item["days_left"] == 365  # 8760h less a moment: "less than 365 days"
        assert "token" not in item
        assert token["token"] not in listed.stdout + listed.stderr + created.stderr
        database = tmp_path / "state" / "notifier" / "notifier.db"
        with sqlite3.connect(database) as connection:
            dump = "\n".join(connection.iterdump())
        assert token["token"] not in dump
        assert token["token"][4:] not in dump

    def test_table_output(self, env: dict[str, str]) -> None:
        """The table shows days left and status."""
        cli("tokens", "create", "--name", "x", "--expires-at", "2099-01-01T00:00:00+02:00", env=env)
        out = cli("tokens", "list", env=env).stdout.splitlines()
        assert out[0].split() == [
            "ID",
            "NAME",
            "ROLE",
            "OWNER",
            "EXPIRES",
            "DAYS",
            "LEFT",
            "STATUS",
        ]
        assert "2098-12-31T22:00:00Z" in out[1]
        assert out[1].split()[-1] == "active"

    def test_revoke(self, env: dict[str, str]) -> None:
        """A revoked token leaves the list, and gets no warning."""
        token = json.loads(
            cli("tokens", "create", "--name", "x", "--ttl", "1d", "--json", env=env).stdout
        )
        revoked = cli("tokens", "revoke", token["id"], env=env)
        assert revoked.returncode == 0
        assert json.loads(cli("tokens", "list", "--json", env=env).stdout) == []
        (item,) = json.loads(cli("tokens", "list", "--all", "--json", env=env).stdout)
        assert item["status"] == "revoked"
        assert warn_lines(cli("check", env=env).stderr) == []

    def test_unknown_id(self, env: dict[str, str]) -> None:
        """Revoking an unknown id says so and exits 1."""
        result = cli("tokens", "revoke", "nope", env=env)
        assert result.returncode == 1
        assert "no token with id 'nope'" in result.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--ttl", "3 days"], "not a duration"),
            (["--ttl=-1h"], "greater than zero"),
            (["--expires-at", "2030-01-01T00:00:00"], "no timezone"),
            (["--expires-at", "next tuesday"], "not an ISO 8601 time"),
            (["--expires-at", "2001-01-01T00:00:00Z"], "not in the future"),
            (["--ttl", "1d", "--expires-at", "2030-01-01T00:00:00Z"], "not allowed with"),
        ],
    )
    def test_bad_expiry(self, env: dict[str, str], args: list[str], message: str) -> None:
        """A malformed --ttl or a time without a zone is refused with usage exit 2."""
        result = cli("tokens", "create", "--name", "x", *args, env=env)
        assert result.returncode == 2
        assert message in result.stderr
        assert json.loads(cli("tokens", "list", "--json", env=env).stdout) == []


class TestOtherCommands:
    def test_notifications_list(self, env: dict[str, str]) -> None:
        """After a pass the UI notification is listed, in JSON too."""
        cli("tokens", "create", "--name", "ci", "--ttl", "2d", env=env)
        cli("check", env=env)
        (item,) = json.loads(cli("notifications", "list", "--json", env=env).stdout)
        assert WARN.fullmatch(item["message"])
        assert item["occurrences"] == 1
        assert item["level"] == "warning"
        assert item["first_seen"].endswith("Z")

    def test_db_upgrade(self, env: dict[str, str]) -> None:
        """`db upgrade` migrates an empty database, then finds it current."""
        first = cli("db", "upgrade", env=env)
        assert first.returncode == 0
        assert "db.migrated" in first.stderr
        assert "db.current" in cli("db", "upgrade", env=env).stderr

    def test_config_example_is_the_committed_file(self, env: dict[str, str]) -> None:
        """`config example` prints config.example.env."""
        repo = Path(__file__).resolve().parents[2]
        assert cli("config", "example", env=env).stdout == (repo / "config.example.env").read_text()

    @pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "notifier")
    def test_help_everywhere(self, env: dict[str, str], command: list[str]) -> None:
        """Every command answers --help with a usage line and exit 0."""
        result = cli(*command, "--help", env=env)
        assert result.returncode == 0
        assert result.stdout.startswith("usage: notifier")

    def test_version(self, env: dict[str, str]) -> None:
        """--version prints the version."""
        assert re.fullmatch(r"notifier \d+\.\d+\.\d+\n", cli("--version", env=env).stdout)

    def test_no_command_is_usage(self, env: dict[str, str]) -> None:
        """No command prints help and exits 2."""
        assert cli(env=env).returncode == 2

    def test_a_reader_that_goes_away_gets_no_traceback(self, env: dict[str, str]) -> None:
        """`notifier config show | head -1`: the closed pipe ends the command quietly, exit 1."""
        process = subprocess.Popen(
            [*notifier_command(), "config", "show"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        process.stdout.close()  # before it writes: its first write finds no reader
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 1
        assert "Traceback" not in stderr
        assert "BrokenPipe" not in stderr
