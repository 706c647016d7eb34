"""The token lifecycle and token sources through the installed command, end to end."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from .conftest import cli

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
