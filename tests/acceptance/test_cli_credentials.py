"""``notifier credentials list``: what every source watches, after a real ``notifier check``.

An x509 source reads certificates made in the test (tests/certificates.py) beside the store,
each command in a process of its own against a real SQLite file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.certificates import Chain, fingerprint_of

from .conftest import cli

DAY = timedelta(days=1)


@pytest.fixture
def watched(env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """A store token and two certificates, after one `notifier check`."""
    chain = Chain()
    now = datetime.now(UTC)
    folder = tmp_path / "certs"
    folder.mkdir()
    fingerprints = []
    for name, days in (("soon.example.com", 2.5), ("later.example.com", 40)):
        pem = chain.bundle(
            chain.leaf(name, not_before=now - DAY, not_after=now + days * DAY), with_root=False
        )
        (folder / f"{name}.pem").write_bytes(pem)
        fingerprints.append(fingerprint_of(pem))
    env = {
        **env,
        "NOTIFIER_SOURCES": "store,x509",
        "NOTIFIER_X509_PATHS": str(folder),
        "NOTIFIER_SINKS": "log",
    }
    created = cli("tokens", "create", "--name", "deploy", "--ttl", "10d", env=env)
    assert created.returncode == 0, created.stderr
    checked = cli("check", env=env)
    assert checked.returncode == 0, checked.stderr
    return env, fingerprints


def test_a_table_of_every_watched_credential(watched: tuple[dict[str, str], list[str]]) -> None:
    env, fingerprints = watched
    result = cli("credentials", "list", env=env)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "KIND", "SOURCE", "NAME", "ID", "EXPIRES", "DAYS", "LEFT", "STATUS", "SEEN"
    ]  # fmt: skip
    cells = [row.split() for row in rows]
    # Soonest first: the certificate in 2.5 days, the token in 10, the certificate in 40,
    # then the intermediate CA's, which the leaves' issuer signed for years.
    assert [row[:4] for row in cells[:3]] == [
        ["certificate", "x509", "soon.example.com", fingerprints[0]],
        ["token", "store", "deploy", cells[1][3]],
        ["certificate", "x509", "later.example.com", fingerprints[1]],
    ]
    assert cells[0][5:7] == ["3", "expiring"]
    assert cells[1][-1] == "live"  # the store is read as it stands, not by a pass


def test_filters_and_shapes(watched: tuple[dict[str, str], list[str]]) -> None:
    env, fingerprints = watched
    listed = cli("credentials", "list", "--kind", "certificate", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert {item["kind"] for item in items} == {"certificate"}
    assert fingerprints[0] in {item["id"] for item in items}
    lines = cli("credentials", "list", "--source", "store", "--jsonl", env=env).stdout
    assert [json.loads(line)["name"] for line in lines.splitlines()] == ["deploy"]
    within = cli("credentials", "list", "--expiring-within", "7d", "--json", env=env).stdout
    assert [item["id"] for item in json.loads(within)] == [fingerprints[0]]
    search = cli("credentials", "list", "--search", "LATER", "--json", env=env).stdout
    assert [item["id"] for item in json.loads(search)] == [fingerprints[1]]
    named = json.loads(cli("credentials", "list", "--sort=-name", "--json", env=env).stdout)
    assert [item["name"] for item in named][:2] == ["soon.example.com", "later.example.com"]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--kind", "password"], "--kind"),
        (["--status", "revoked"], "--status"),
        (["--sort", "owner"], "--sort"),
        (["--expiring-within", "soon"], "--expiring-within"),
        (["--expires-after", "yesterday"], "--expires-after"),
        (["--label", "nokey"], "--label"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_arguments_exit_2_naming_them(env: dict[str, str], argv: list[str], named: str) -> None:
    result = cli("credentials", "list", *argv, env=env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
