"""The list commands stream: filters as the API's, one JSON array or JSON Lines, quiet pipes.

``tokens list``, ``audit list``, ``notifications list``, ``deliveries list``, ``credentials
list`` and ``tokens export``, each in a process of its own against a real SQLite file (and
PostgreSQL where the backend is the point), at up to 100,000 tokens made by
:func:`notifier.testing.fill_tokens`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from notifier.db.database import Database
from notifier.testing import fill_tokens
from notifier.tokens.listing import STATUSES, sort_choices

from .conftest import BIN, cli, notifier_command

LISTS = [
    ["tokens", "list"],
    ["audit", "list"],
    ["notifications", "list", "--all"],
    ["deliveries", "list"],
    ["credentials", "list"],
]
SHAPES = [[], ["--json"], ["--jsonl"]]
NOW = datetime.now(UTC)


def environment(root: Path) -> dict[str, str]:
    """What the ``env`` fixture gives, for a fixture that outlives one test."""
    home = root / "home"
    home.mkdir(parents=True)
    return {
        "PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "XDG_STATE_HOME": str(root / "state"),
        "LANG": "C.UTF-8",
        # Every token below expires within this, so that a pass notifies about each one.
        "NOTIFIER_DETECTION_WINDOW": "60d",
    }


def database_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "notifier" / "notifier.db"


def import_rows(env: dict[str, str], rows: list[dict[str, object]], path: Path) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    imported = cli("tokens", "import", str(path), env=env)
    assert imported.returncode == 0, imported.stderr


def at(days: float) -> str:
    return (NOW + timedelta(days=days)).isoformat()


def listed(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    result = cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    items: list[dict[str, object]] = json.loads(result.stdout)
    return items


# --- tokens list: the API's filters and sorts -------------------------------------------------

# Four tokens, one of each status but superseded: ids k1..k4.
FOUR: list[dict[str, object]] = [
    {
        "id": "k1",
        "name": "Deploy-prod",
        "owner": "ops@example.com",
        "labels": {"team": "a", "env": "prod"},
        "created_at": at(-10),
        "expires_at": at(2),
    },
    {
        "id": "k2",
        "name": "deploy-dev",
        "owner": "dev@example.com",
        "labels": {"team": "a", "env": "dev"},
        "created_at": at(-5),
        "expires_at": at(40),
    },
    {
        "id": "k3",
        "name": "backup",
        "owner": "ops@example.com",
        "labels": {"team": "b", "env": "prod"},
        "created_at": at(-20),
        "expires_at": at(-1),
    },
    {
        "id": "k4",
        "name": "cron",
        "labels": {"team": "b"},
        "created_at": at(-1),
        "expires_at": None,
        "revoked_at": at(-0.5),
    },
]


@pytest.fixture
def four(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment of a store holding :data:`FOUR`."""
    import_rows(env, FOUR, tmp_path / "four.jsonl")
    return env


class TestTokenFilters:
    @pytest.mark.parametrize(
        ("args", "names"),
        [
            ([], ["backup", "Deploy-prod", "deploy-dev"]),  # all but revoked, soonest first
            (["--status", "expired"], ["backup"]),
            (["--status", "expiring", "--status", "revoked"], ["Deploy-prod", "cron"]),
            (["--revoked"], ["cron"]),
            (["--all"], ["backup", "Deploy-prod", "deploy-dev", "cron"]),  # never: last
            (["--owner", "ops@example.com"], ["backup", "Deploy-prod"]),
            (["--owner", "ops"], []),  # the exact owner, not a part of it
            (["--label", "team=a"], ["Deploy-prod", "deploy-dev"]),
            (["--label", "team=a", "--label", "env=prod"], ["Deploy-prod"]),  # each must match
            (["--label", "team="], []),
            (["--search", "DEPLOY"], ["Deploy-prod", "deploy-dev"]),  # a name prefix, any case
            (["--search", "k3"], ["backup"]),  # an id prefix
            (["--search", "ploy"], []),  # a prefix, not a part
            (["--all", "--search", "c"], ["cron"]),
            (["--expiring-within", "7d"], ["Deploy-prod"]),
            (["--limit", "2"], ["backup", "Deploy-prod"]),
            (
                ["--all", "--owner", "ops@example.com", "--label", "env=prod", "--limit", "1"],
                ["backup"],
            ),
        ],
    )
    def test_each_filter_narrows_the_list(
        self, four: dict[str, str], args: list[str], names: list[str]
    ) -> None:
        """Each filter keeps the tokens it names, in the list's order (expiry, by default)."""
        assert [t["name"] for t in listed(four, "tokens", "list", *args)] == names

    @pytest.mark.parametrize(
        ("sort", "ids"),
        [
            ("expires_at", ["k3", "k1", "k2", "k4"]),  # never expiring last
            ("-expires_at", ["k4", "k2", "k1", "k3"]),  # ... and first, descending
            ("name", ["k1", "k3", "k4", "k2"]),  # byte order: "D" before "b"
            ("-name", ["k2", "k4", "k3", "k1"]),
            ("created_at", ["k3", "k1", "k2", "k4"]),
            ("-created_at", ["k4", "k2", "k1", "k3"]),
        ],
    )
    def test_every_sort(self, four: dict[str, str], sort: str, ids: list[str]) -> None:
        """--sort takes each of the API's sorts; a leading - sorts descending (--sort=-name)."""
        assert [t["id"] for t in listed(four, "tokens", "list", "--all", f"--sort={sort}")] == ids

    def test_the_sorts_are_the_apis(self) -> None:
        """The sorts tested above are every sort the listing knows, nothing more."""
        tested = {"expires_at", "-expires_at", "name", "-name", "created_at", "-created_at"}
        assert set(sort_choices()) == tested

    def test_each_status(self, four: dict[str, str]) -> None:
        """Every status the API knows is a --status, and picks tokens of that status only."""
        for status in STATUSES:
            tokens = listed(four, "tokens", "list", "--status", status)
            assert {t["status"] for t in tokens} <= {status}


# --- output shapes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A store with 3000 tokens, each imported (an audit event), notified and delivered twice.

    Every list prints a few hundred kB: more than a pipe and the writer's buffer hold.
    """
    root = tmp_path_factory.mktemp("busy")
    env = environment(root)
    rows: list[dict[str, object]] = [
        {
            "id": f"t{index:05d}",
            "name": f"token {index}",
            "owner": f"owner-{index % 7}@example.com",
            "labels": {"team": f"team-{index % 3}"},
            "expires_at": at(1 + index % 500 / 24),
        }
        for index in range(3000)
    ]
    import_rows(env, rows, root / "busy.jsonl")
    checked = cli("check", env=env)
    assert checked.returncode == 0, checked.stderr[-2000:]
    return env


class TestShapes:
    @pytest.mark.parametrize("command", LISTS, ids=" ".join)
    def test_json_is_one_array_as_print_json_wrote_it(
        self, busy: dict[str, str], command: list[str]
    ) -> None:
        """--json is one array, indented as before; --jsonl holds the same items, a line each."""
        result = cli(*command, "--limit", "1500", "--json", env=busy)
        assert result.returncode == 0, result.stderr
        items = json.loads(result.stdout)
        assert len(items) == 1500
        assert result.stdout == json.dumps(items, indent=2, ensure_ascii=False) + "\n"
        lines = cli(*command, "--limit", "1500", "--jsonl", env=busy).stdout.splitlines()
        assert [json.loads(line) for line in lines] == items
        assert lines == [json.dumps(i, ensure_ascii=False, separators=(",", ":")) for i in items]

    @pytest.mark.parametrize("command", [*LISTS, ["tokens", "export"]], ids=" ".join)
    def test_nothing_to_list(self, env: dict[str, str], command: list[str]) -> None:
        """An empty list is [] with --json, no line with --jsonl, and a table of headers."""
        assert cli(*command, "--jsonl", env=env).stdout == ""
        if command[-1] != "export":
            assert cli(*command, "--json", env=env).stdout == "[]\n"
            (header,) = cli(*command, env=env).stdout.splitlines()
            assert header.split()[0] in {"ID", "AT", "SOURCE", "KIND"}

    def test_limit_everywhere(self, busy: dict[str, str]) -> None:
        """--limit N prints the first N of each list, in the order the whole list has."""
        for command in LISTS:
            whole = listed(busy, *command)
            assert listed(busy, *command, "--limit", "7") == whole[:7]
            assert len(cli(*command, "--limit", "7", env=busy).stdout.splitlines()) == 1 + 7

    def test_audit_filters(self, busy: dict[str, str]) -> None:
        """`audit list` --token and --action keep that token's or that action's events."""
        assert {e["action"] for e in listed(busy, "audit", "list", "--action", "import")} == {
            "import"
        }
        assert listed(busy, "audit", "list", "--action", "create") == []
        (event,) = listed(busy, "audit", "list", "--token", "t00042")
        assert event["token_id"] == "t00042"

    def test_deliveries_filters(self, busy: dict[str, str]) -> None:
        """`deliveries list` --sink keeps one sink's pairs; --failed those that failed (none)."""
        ui = listed(busy, "deliveries", "list", "--sink", "ui")
        assert len(ui) == 3000
        assert {d["sink"] for d in ui} == {"ui"}
        assert listed(busy, "deliveries", "list", "--failed") == []

    def test_export_streams_the_shape_import_reads(self, busy: dict[str, str]) -> None:
        """Export writes every token by id, a line each, as before; --jsonl is the same."""
        exported = cli("tokens", "export", env=busy).stdout
        rows = [json.loads(line) for line in exported.splitlines()]
        assert [row["id"] for row in rows] == [f"t{index:05d}" for index in range(3000)]
        assert exported.splitlines()[0] == json.dumps(rows[0], ensure_ascii=False)
        assert cli("tokens", "export", "--jsonl", env=busy).stdout == exported


class TestTableWidths:
    def test_widths_come_from_the_first_thousand_rows(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """Columns fit the first 1000 rows; a longer cell after them pushes its line right."""
        rows: list[dict[str, object]] = [
            {"id": f"k{index:04d}", "name": f"n{index:04d}", "expires_at": at(1 + index / 100)}
            for index in range(1000)
        ]
        rows.append({"id": "late", "name": "a much longer name", "expires_at": at(30)})
        import_rows(env, rows, tmp_path / "widths.jsonl")
        lines = cli("tokens", "list", env=env).stdout.splitlines()
        header, first, last = lines[0], lines[1], lines[-1]
        assert len(lines) == 1 + 1001
        # ID (5 wide: k0000), NAME (5 wide: n0000), then ROLE: where the first rows put it.
        assert header.startswith("ID     NAME   ROLE")
        assert first.startswith("k0000  n0000  -")
        assert last.startswith("late   a much longer name  -")

    def test_fewer_rows_are_all_measured(self, env: dict[str, str], tmp_path: Path) -> None:
        """With --limit (or a short list), the rows printed, all of them, set the widths."""
        rows: list[dict[str, object]] = [
            {"id": "a", "name": "short", "expires_at": at(1)},
            {"id": "b", "name": "a longer one", "expires_at": at(2)},
            {"id": "c", "name": "the longest name, not printed", "expires_at": at(3)},
        ]
        import_rows(env, rows, tmp_path / "three.jsonl")
        header, first, second = cli("tokens", "list", "--limit", "2", env=env).stdout.splitlines()
        role = len("ID  ") + len("a longer one  ")
        assert (header.index("ROLE"), first.index("-"), second.index("-")) == (role, role, role)


# --- bad arguments --------------------------------------------------------------------------

LARGEST = 2**63 - 1
BETWEEN = f"must be between 1 and {LARGEST}"


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("argv", "line"),
        [
            (
                ["tokens", "list", "--limit", "0"],
                f"notifier tokens list: error: argument --limit: '0' {BETWEEN}",
            ),
            (
                ["audit", "list", "--limit", "0"],
                f"notifier audit list: error: argument --limit: '0' {BETWEEN}",
            ),
            (
                ["notifications", "list", "--limit", "-1"],
                (
                    "notifier notifications list: error: argument --limit: '-1' must be between 1 "
                    f"and {LARGEST}"
                ),
            ),
            (
                ["deliveries", "list", "--limit", "ten"],
                "notifier deliveries list: error: argument --limit: 'ten' is not a whole number",
            ),
            (
                ["tokens", "list", "--status", "live"],
                (
                    "notifier tokens list: error: argument --status: 'live' is not one of "
                    "active, expiring, expired, revoked, superseded"
                ),
            ),
            (
                ["tokens", "list", "--label", "team"],
                "notifier tokens list: error: argument --label: 'team' is not key=value",
            ),
            (
                ["tokens", "list", "--label", "=a"],
                "notifier tokens list: error: argument --label: '=a' is not key=value",
            ),
            (
                ["tokens", "list", "--sort", "size"],
                (
                    "notifier tokens list: error: argument --sort: 'size' is not one of "
                    "expires_at, -expires_at, name, -name, created_at, -created_at"
                ),
            ),
            (
                ["tokens", "list", "--status", "active", "--all"],
                "notifier tokens list: error: argument --all: not allowed with argument --status",
            ),
            (
                ["tokens", "list", "--json", "--jsonl"],
                "notifier tokens list: error: argument --jsonl: not allowed with argument --json",
            ),
        ],
    )
    def test_refused_by_name(self, env: dict[str, str], argv: list[str], line: str) -> None:
        """A bad value exits 2 with argparse's one line naming the option, and lists nothing."""
        result = cli(*argv, env=env)
        assert result.returncode == 2
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1] == line


# --- a reader that goes away ----------------------------------------------------------------


class TestBrokenPipe:
    @pytest.mark.parametrize(
        "argv",
        [
            *([*command, *shape] for command in LISTS for shape in SHAPES),
            ["tokens", "export"],
            ["tokens", "export", "--jsonl"],
        ],
        ids=" ".join,
    )
    def test_head_ends_it_quietly(self, busy: dict[str, str], argv: list[str]) -> None:
        """`notifier ... | head -1`: the reader closes after a line; exit 1, nothing on stderr."""
        process = subprocess.Popen(
            [*notifier_command(), *argv],
            env=busy,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        first = process.stdout.readline()
        process.stdout.close()  # what is left cannot fit in the pipe: the next writes fail
        _, stderr = process.communicate(timeout=60)
        assert first.strip()
        assert process.returncode == 1
        assert stderr.decode() == ""


# --- at scale ---------------------------------------------------------------------------------

SCALE = 100_000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A SQLite file holding 100,000 made-up tokens (fill_tokens)."""
    env = environment(tmp_path_factory.mktemp("fleet"))
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    database = Database(make_url(f"sqlite:///{database_file(env)}"))
    try:
        fill_tokens(database, SCALE, now=NOW)
    finally:
        database.dispose()
    return env


# Runs `notifier ARGV` and says, on its last stderr line, the most memory it held. VmHWM
# counts this process's own memory since its exec; wait4's ru_maxrss would also count the
# pytest process it was forked from.
_PEAK_PROBE = """
import sys
from notifier.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
with open("/proc/self/status") as status:
    (peak,) = [line.split()[1] for line in status if line.startswith("VmHWM:")]
sys.stderr.write(f"peak_kib={peak}\\n")
sys.exit(code)
"""


def peak_rss_kib(argv: list[str], env: dict[str, str]) -> int:
    """Run ``notifier *argv*`` with stdout to /dev/null; its peak resident set, in KiB."""
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("peak_kib="), result.stderr
    return int(last.removeprefix("peak_kib="))


class TestAtScale:
    def test_json_holds_every_token_in_order(self, fleet: dict[str, str]) -> None:
        """`tokens list --all --json` over 100,000 tokens is one valid array of each, by expiry."""
        tokens = listed(fleet, "tokens", "list", "--all")
        assert len(tokens) == SCALE
        assert len({t["id"] for t in tokens}) == SCALE
        expiries = [
            datetime.fromisoformat(str(t["expires_at"]))
            for t in tokens
            if t["expires_at"] is not None
        ]
        assert expiries == sorted(expiries)
        assert all(t["expires_at"] is None for t in tokens[len(expiries) :])  # never: last

    def test_limit_prints_that_many(self, fleet: dict[str, str]) -> None:
        """--limit 50 prints 50 rows of the 100,000, and the header."""
        result = cli("tokens", "list", "--limit", "50", env=fleet)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1 + 50
        assert len(listed(fleet, "tokens", "list", "--limit", "50")) == 50

    @pytest.mark.parametrize(
        "argv",
        [
            ["tokens", "list", "--all", "--json"],
            ["tokens", "list", "--all"],
            ["tokens", "export"],
        ],
        ids=" ".join,
    )
    def test_memory_stays_flat(self, fleet: dict[str, str], argv: list[str]) -> None:
        """Writing 100,000 tokens takes about the memory of writing 50 (one page is held).

        Loaded whole, 100,000 tokens took some 600 MB; a page of 1000 is a few MB.
        """
        small = peak_rss_kib(["tokens", "list", "--limit", "50", "--json"], fleet)
        whole = peak_rss_kib(argv, fleet)
        assert whole - small < 40 * 1024, (small, whole)


@pytest.mark.postgres
def test_on_postgresql(env: dict[str, str], postgres_url: URL, tmp_path: Path) -> None:
    """On PostgreSQL too the lists read page after page: 2500 tokens, in order, once each."""
    pg = {**env, "NOTIFIER_DATABASE_URL": postgres_url.render_as_string(hide_password=False)}
    rows: list[dict[str, object]] = [
        {"id": f"p{index:05d}", "name": f"pg{index:05d}", "expires_at": at(1 + index / 100)}
        for index in range(2500)
    ]
    import_rows(pg, rows, tmp_path / "pg.jsonl")
    assert [t["id"] for t in listed(pg, "tokens", "list")] == [row["id"] for row in rows]
    lines = cli("tokens", "list", "--sort=-name", "--jsonl", env=pg).stdout.splitlines()
    assert [json.loads(line)["name"] for line in lines] == sorted(
        (str(row["name"]) for row in rows), reverse=True
    )
    exported = cli("tokens", "export", env=pg).stdout.splitlines()
    assert [json.loads(line)["id"] for line in exported] == [row["id"] for row in rows]
    assert len(listed(pg, "audit", "list", "--action", "import")) == 2500
