"""`notifier check` with the x509 and vault sources, each command in a process of its own."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.certificates import Chain, fingerprint_of, leaf_pem, write

from .conftest import cli

CERTIFICATE_LINE = re.compile(
    r"Warn: Certificate (?P<name>\S+) \(ID (?P<id>[0-9a-f]{16})\) will expire in less than"
    r" (?P<x>\d+) days?\."
)


def certificate(tmp_path: Path, name: str, left: timedelta) -> tuple[Path, str]:
    """A certificate file for *name* expiring *left* from now; its path and fingerprint."""
    now = datetime.now(UTC)
    leaf = Chain().leaf(name, not_before=now - timedelta(days=30), not_after=now + left)
    path = write(tmp_path / "certs" / f"{name}.pem", leaf_pem(leaf))
    return path, fingerprint_of(leaf_pem(leaf))


class TestCheckWithX509:
    def test_a_certificate_warns_with_its_line(self, env: dict[str, str], tmp_path: Path) -> None:
        """`check` prints the certificate warn line; JSON logs carry kind=certificate."""
        _, fingerprint = certificate(tmp_path, "www.example.org", timedelta(days=2, hours=23))
        env |= {
            "NOTIFIER_SOURCES": "store,x509",
            "NOTIFIER_X509_PATHS": str(tmp_path / "certs"),
            "NOTIFIER_LOG_FORMAT": "json",
        }
        result = cli("check", env=env)
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        (notice,) = [r for r in records if r.get("event") == "notice.expiring"]
        match = CERTIFICATE_LINE.fullmatch(notice["message"])
        assert match is not None, notice["message"]
        assert (match["name"], match["id"], match["x"]) == (
            "www.example.org",
            fingerprint[:16],
            "3",
        )
        assert notice["kind"] == "certificate"
        assert notice["token_id"] == fingerprint
        assert notice["source"] == "x509"

    def test_an_unreadable_path_exits_75_and_the_rest_is_read(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """A missing file fails the source (exit 75, source.failed); the readable one warns."""
        path, _ = certificate(tmp_path, "ok.example.org", timedelta(days=2))
        env |= {
            "NOTIFIER_SOURCES": "x509",
            "NOTIFIER_X509_PATHS": f"{path},{tmp_path / 'missing.pem'}",
        }
        result = cli("check", env=env)
        assert result.returncode == 75, result.stderr
        assert "source.failed" in result.stderr
        assert "missing.pem" in result.stderr
        assert "Warn: Certificate ok.example.org" in result.stderr
        assert "Traceback" not in result.stderr

    def test_an_unreachable_vault_exits_75_without_its_token(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """A vault source nobody answers is that source's failure: exit 75, the token unsaid."""
        certificate(tmp_path, "ok.example.org", timedelta(days=2))
        token = "s.NeverPrintThisToken"
        env |= {
            "NOTIFIER_SOURCES": "vault,x509",
            "NOTIFIER_VAULT_ADDRESS": "http://127.0.0.1:9",
            "NOTIFIER_VAULT_TOKEN": token,
            "NOTIFIER_VAULT_TIMEOUT": "2s",
            "NOTIFIER_X509_PATHS": str(tmp_path / "certs"),
        }
        result = cli("check", env=env)
        assert result.returncode == 75, result.stderr
        assert "source.failed" in result.stderr
        assert "Warn: Certificate ok.example.org" in result.stderr
        assert token not in result.stderr + result.stdout
