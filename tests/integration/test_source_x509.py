"""The x509 source against real files and real TLS servers on 127.0.0.1, certificates made here."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from structlog.testing import capture_logs

from notifier.config.options import OptionError
from notifier.core.clock import FixedClock
from notifier.core.messages import sentence
from notifier.core.model import CredentialKind, NoticeKind
from notifier.db.database import Database
from notifier.sources.endpoints import Endpoint
from notifier.sources.x509 import X509Source, X509SourceConfig, check_options
from notifier.testing import RecordingSink, make_policy
from tests.certificates import (
    Chain,
    TlsServer,
    certificates,
    closed_port,
    der,
    fingerprint_of,
    leaf_pem,
    pkcs12_bytes,
    server_context,
    write,
)
from tests.conftest import sqlite_database
from tests.integration.test_sources import checker
from tests.receivers import Mailbox, free_port

# Certificates are made with real times (trustme signs them now); the pass's clock is set
# near them, and moved by the tests, never read from the system during a pass.
START = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = make_policy()  # window 7d, backoff 1d, pass 1h
database = sqlite_database


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


def expiring(chain: Chain, name: str, left: timedelta) -> trustme.LeafCert:
    """A leaf for *name* that expires *left* after START."""
    return chain.leaf(name, not_before=START - 30 * DAY, not_after=START + left)


def source(
    *, paths: tuple[str, ...] = (), endpoints: tuple[Endpoint, ...] = (), **options: Any
) -> X509Source:
    config = X509SourceConfig(
        name=options.pop("name", "x509"),
        paths=paths,
        endpoints=endpoints,
        pkcs12_password=options.pop("password", None),
        timeout=options.pop("timeout", timedelta(seconds=5)),
        remember=options.pop("remember", DAY),
    )
    return X509Source(config)


class TestFiles:
    def test_a_bundle_gives_each_certificate_but_the_root(
        self, chain: Chain, tmp_path: Path
    ) -> None:
        """A PEM bundle of leaf, intermediate and root watches the leaf and the intermediate."""
        leaf = expiring(chain, "www.example.org", 3 * DAY)
        bundle = chain.bundle(leaf)
        path = write(tmp_path / "site.pem", leaf.private_key_pem.bytes() + bundle)
        found = {t.token_id: t for t in source(paths=(str(path),)).read(START).values()}
        assert set(found) == {fingerprint_of(bundle, 0), fingerprint_of(bundle, 1)}
        watched = found[fingerprint_of(bundle, 0)]
        assert watched.name == "www.example.org"
        assert watched.credential_kind is CredentialKind.CERTIFICATE
        assert watched.expires_at == START + 3 * DAY
        assert watched.labels["location"] == str(path)
        assert watched.labels["sans"] == "www.example.org"
        assert watched.labels["issuer"] == certificates(bundle)[1].subject.rfc4514_string()
        assert len(watched.token_id) == 64

    def test_der_file(self, chain: Chain, tmp_path: Path) -> None:
        """A DER file holds one certificate, read as such."""
        leaf = expiring(chain, "der.example.org", 3 * DAY)
        path = write(tmp_path / "site.cer", der(leaf_pem(leaf)))
        (found,) = source(paths=(str(path),)).read(START).values()
        assert found.token_id == fingerprint_of(leaf_pem(leaf))

    def test_pkcs12_with_its_password(self, chain: Chain, tmp_path: Path) -> None:
        """A PKCS#12 file opens with the configured password and gives leaf and chain."""
        leaf = expiring(chain, "p12.example.org", 3 * DAY)
        path = write(tmp_path / "site.p12", pkcs12_bytes(leaf, b"hunter2"))
        found = source(paths=(str(path),), password=b"hunter2").read(START)
        assert fingerprint_of(leaf_pem(leaf)) in found
        assert len(found) == 2  # the leaf and the intermediate

    def test_pkcs12_with_a_wrong_password_is_a_problem(self, chain: Chain, tmp_path: Path) -> None:
        """A PKCS#12 file that will not open is that file's problem, named."""
        leaf = expiring(chain, "p12.example.org", 3 * DAY)
        path = write(tmp_path / "site.p12", pkcs12_bytes(leaf, b"hunter2"))
        watcher = source(paths=(str(path),), password=b"wrong")
        assert watcher.read(START) == {}
        (problem,) = watcher.problems()
        assert str(path) in problem
        assert "wrong pkcs12_password?" in problem

    def test_a_directory_and_a_glob_pass_over_keys_and_hidden_files(
        self, chain: Chain, tmp_path: Path
    ) -> None:
        """Directories and globs read the certificates in them and skip keys and dot files."""
        one = expiring(chain, "one.example.org", 3 * DAY)
        two = expiring(chain, "two.example.org", 40 * DAY)
        write(tmp_path / "certs" / "one.crt", leaf_pem(one))
        write(tmp_path / "certs" / "one.key", one.private_key_pem.bytes())
        write(tmp_path / "certs" / ".hidden.crt", leaf_pem(two))
        write(tmp_path / "deep" / "a" / "two.pem", leaf_pem(two))
        watcher = source(paths=(str(tmp_path / "certs"), str(tmp_path / "deep" / "**" / "*.pem")))
        found = watcher.read(START)
        assert {t.name for t in found.values()} == {"one.example.org", "two.example.org"}
        assert watcher.problems() == ()

    def test_a_lone_self_signed_certificate_is_watched(self, tmp_path: Path) -> None:
        """A place that presents only a self-signed certificate keeps it: nothing else warns."""
        root = trustme.CA()
        path = write(tmp_path / "ca.pem", root.cert_pem.bytes())
        assert len(source(paths=(str(path),)).read(START)) == 1

    def test_a_named_file_without_certificates_is_a_problem(
        self, chain: Chain, tmp_path: Path
    ) -> None:
        """A file named in paths that holds no certificate is reported, not passed over."""
        leaf = expiring(chain, "k.example.org", 3 * DAY)
        path = write(tmp_path / "only.key", leaf.private_key_pem.bytes())
        watcher = source(paths=(str(path),))
        watcher.read(START)
        assert watcher.problems() == (f"{path}: holds no certificate (PEM, DER or PKCS#12)",)


class TestPasses:
    def test_the_warn_line_names_the_certificate(
        self, chain: Chain, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        """A certificate 3 days from expiry gets the certificate warn line, once per backoff."""
        leaf = expiring(chain, "www.example.org", 3 * DAY - HOUR)
        write(tmp_path / "site.pem", chain.bundle(leaf))
        sink = RecordingSink()
        run = checker(database, clock, [source(paths=(str(tmp_path / "site.pem"),))], sink).run
        report = run()
        assert not report.degraded
        (notice,) = [n for n in sink.received if n.token_name == "www.example.org"]
        prefix = fingerprint_of(leaf_pem(leaf))[:16]
        assert sentence(notice, "day") == (
            f"Warn: Certificate www.example.org (ID {prefix}) will expire in less than 3 days."
        )
        assert notice.credential_kind is CredentialKind.CERTIFICATE
        assert notice.token_id == fingerprint_of(leaf_pem(leaf))
        clock.advance(HOUR)
        run()
        assert len(sink.received) == 1  # the backoff holds the next one for a day

    def test_an_expired_certificate_gets_its_expired_notice(
        self, chain: Chain, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        """A certificate that expired an hour ago is reported expired."""
        leaf = chain.leaf("old.example.org", not_before=START - 90 * DAY, not_after=START - HOUR)
        write(tmp_path / "old.pem", leaf_pem(leaf))
        sink = RecordingSink()
        checker(database, clock, [source(paths=(str(tmp_path / "old.pem"),))], sink).run()
        (notice,) = sink.received
        assert notice.kind is NoticeKind.EXPIRED
        assert sentence(notice, "day").endswith("has expired.")

    def test_a_renewed_file_closes_the_loop_once(
        self, chain: Chain, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        """The file replaced by a later certificate of the same name: one renewed notice."""
        old = expiring(chain, "www.example.org", 3 * DAY)
        path = write(tmp_path / "site.pem", leaf_pem(old))
        sink = RecordingSink()
        run = checker(database, clock, [source(paths=(str(path),))], sink).run
        run()
        new = expiring(chain, "www.example.org", 90 * DAY)
        write(path, leaf_pem(new))
        for _ in range(3):
            clock.advance(HOUR)
            run()
        assert [(n.kind, n.token_id) for n in sink.received] == [
            (NoticeKind.EXPIRING, fingerprint_of(leaf_pem(old))),
            (NoticeKind.RENEWED, fingerprint_of(leaf_pem(old))),
        ]
        assert sink.received[1].reason == "rotated"
        assert "was replaced by another certificate" in sentence(sink.received[1], "day")

    def test_an_unreadable_place_fails_the_source_not_the_others(
        self, chain: Chain, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        """A missing file and a dead endpoint are reported; the readable file still warns."""
        leaf = expiring(chain, "ok.example.org", 2 * DAY)
        good = write(tmp_path / "ok.pem", leaf_pem(leaf))
        sink = RecordingSink()
        with closed_port() as port:
            watcher = source(
                paths=(str(good), str(tmp_path / "missing.pem")),
                endpoints=(Endpoint("127.0.0.1", port),),
            )
            with capture_logs() as logs:
                report = checker(database, clock, [watcher], sink).run()
        assert report.failed_sources == ["x509"]
        assert report.degraded  # notifier check exits 75
        assert [n.token_name for n in sink.received] == ["ok.example.org"]
        failed = [entry for entry in logs if entry["event"] == "source.failed"]
        assert [entry["source"] for entry in failed] == ["x509", "x509"]
        reasons = sorted(entry["reason"] for entry in failed)
        assert reasons[0].startswith(f"127.0.0.1:{port}: ")
        assert reasons[1] == f"cannot read {tmp_path / 'missing.pem'}: No such file or directory"

    def test_a_place_that_fails_later_keeps_what_it_presented(
        self, chain: Chain, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        """A file gone unreadable neither closes nor hides its certificate's loop."""
        leaf = expiring(chain, "www.example.org", 3 * DAY)
        path = write(tmp_path / "site.pem", leaf_pem(leaf))
        sink = RecordingSink()
        run = checker(database, clock, [source(paths=(str(path),))], sink).run
        run()
        path.unlink()
        clock.advance(DAY)
        report = run()
        assert report.failed_sources == ["x509"]
        assert [n.kind for n in sink.received] == [NoticeKind.EXPIRING, NoticeKind.EXPIRING]


class TestEndpoints:
    def test_an_endpoint_presents_its_chain(self, chain: Chain) -> None:
        """A TLS endpoint's leaf and intermediate are read, leaf first; the root is not sent."""
        leaf = expiring(chain, "www.example.org", 3 * DAY)
        with TlsServer([server_context(leaf)]) as server:
            watcher = source(endpoints=(Endpoint("127.0.0.1", server.port),))
            found = watcher.read(START)
        bundle = chain.bundle(leaf, with_root=False)
        assert set(found) == {fingerprint_of(bundle, 0), fingerprint_of(bundle, 1)}
        assert found[fingerprint_of(bundle, 0)].labels["location"] == f"127.0.0.1:{server.port}"

    def test_endpoints_are_read_side_by_side(self, chain: Chain) -> None:
        """Eight servers each hold their handshake until all eight have a connection.

        Read one after another, the first would wait for the others until the barrier broke
        and every endpoint failed; read side by side, all eight are read. No time is measured.
        """
        count = 8
        barrier = threading.Barrier(count, timeout=8)
        servers = [
            TlsServer(
                [server_context(expiring(chain, f"host{n}.example.org", 3 * DAY))],
                before_handshake=barrier.wait,
            )
            for n in range(count)
        ]
        with contextlib.ExitStack() as stack:
            for server in servers:
                stack.enter_context(server)
            watcher = source(
                endpoints=tuple(Endpoint("127.0.0.1", server.port) for server in servers),
                timeout=timedelta(seconds=10),
            )
            found = watcher.read(START)
        assert watcher.problems() == ()
        assert {t.name for t in found.values()} >= {f"host{n}.example.org" for n in range(count)}

    def test_sni_picks_the_certificate(self, chain: Chain) -> None:
        """The SNI name sent picks which certificate a server presents."""
        default = expiring(chain, "default.example.org", 40 * DAY)
        other = expiring(chain, "other.example.org", 3 * DAY)
        contexts = [server_context(default)]
        with TlsServer(contexts, by_name={"other.example.org": server_context(other)}) as server:
            plain = source(endpoints=(Endpoint("127.0.0.1", server.port),)).read(START)
            named = source(
                endpoints=(Endpoint("127.0.0.1", server.port, sni="other.example.org"),)
            ).read(START)
        assert "default.example.org" in {t.name for t in plain.values()}
        assert "other.example.org" in {t.name for t in named.values()}
        assert "default.example.org" not in {t.name for t in named.values()}

    def test_smtp_starttls(self, chain: Chain) -> None:
        """An SMTP server's certificate is read after STARTTLS."""
        leaf = expiring(chain, "mail.example.org", 3 * DAY)
        port = free_port()
        controller = Controller(
            Mailbox(), hostname="127.0.0.1", port=port, tls_context=server_context(leaf)
        )
        controller.start()
        try:
            watcher = source(endpoints=(Endpoint("127.0.0.1", port, starttls="smtp"),))
            found = watcher.read(START)
        finally:
            controller.stop()
        assert watcher.problems() == ()
        assert fingerprint_of(leaf_pem(leaf)) in found

    def test_starttls_against_a_server_without_it(self) -> None:
        """An SMTP server that offers no STARTTLS is a problem saying so."""
        port = free_port()
        controller = Controller(Mailbox(), hostname="127.0.0.1", port=port)
        controller.start()
        try:
            watcher = source(endpoints=(Endpoint("127.0.0.1", port, starttls="smtp"),))
            watcher.read(START)
        finally:
            controller.stop()
        assert watcher.problems() == (
            f"127.0.0.1:{port};starttls=smtp: the SMTP server does not offer STARTTLS",
        )


class TestAlternatingCertificates:
    def test_a_cdn_alternating_certificates_does_not_flood(
        self, chain: Chain, database: Database, clock: FixedClock
    ) -> None:
        """Two edges presenting two certificates in turn: one notice a day, never a renewal."""
        expiring_soon = expiring(chain, "cdn.example.org", 5 * DAY)
        fresh = expiring(chain, "cdn.example.org", 80 * DAY)
        sink = RecordingSink()
        contexts = [server_context(expiring_soon), server_context(fresh)]
        with TlsServer(contexts) as server:
            watcher = source(endpoints=(Endpoint("127.0.0.1", server.port),))
            run = checker(database, clock, [watcher], sink).run
            for _ in range(30):  # hourly passes, 30 hours
                run()
                clock.advance(HOUR)
            assert server.handshakes == 30
        kinds = [(n.kind, n.token_name) for n in sink.received]
        assert kinds == [(NoticeKind.EXPIRING, "cdn.example.org")] * 2  # at 0 h and 24 h

    def test_a_certificate_no_longer_presented_is_renewed_after_remember(
        self, chain: Chain, database: Database, clock: FixedClock
    ) -> None:
        """Once the old certificate is not seen for `remember`, its loop closes, once."""
        old = expiring(chain, "cdn.example.org", 5 * DAY)
        new = expiring(chain, "cdn.example.org", 80 * DAY)
        sink = RecordingSink()
        with TlsServer([server_context(old)]) as server:
            watcher = source(endpoints=(Endpoint("127.0.0.1", server.port),), remember=3 * HOUR)
            run = checker(database, clock, [watcher], sink).run
            run()
            server.contexts = [server_context(new)]
            for _ in range(6):
                clock.advance(HOUR)
                run()
        assert [n.kind for n in sink.received] == [NoticeKind.EXPIRING, NoticeKind.RENEWED]


class TestOptions:
    def test_endpoints_with_qualifiers(self) -> None:
        """host:port entries take sni= and starttls= after semicolons; IPv6 in brackets."""
        endpoints = "a.example:443;sni=www.example, mail.example:587;starttls=smtp,[::1]:443"
        config = check_options("x509", {"endpoints": endpoints})
        assert config.endpoints == (
            Endpoint("a.example", 443, sni="www.example"),
            Endpoint("mail.example", 587, starttls="smtp"),
            Endpoint("::1", 443),
        )
        assert config.remember == DAY
        assert config.timeout == timedelta(seconds=10)

    def test_endpoint_tables_from_toml(self) -> None:
        """The TOML file may give endpoints as tables of address, sni and starttls."""
        config = check_options(
            "x509:mail",
            {"endpoints": [{"address": "mail.example:25", "starttls": "smtp"}], "timeout": "3s"},
        )
        assert config.endpoints == (Endpoint("mail.example", 25, starttls="smtp"),)
        assert config.timeout == timedelta(seconds=3)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({}, "set paths or endpoints (or both): what to watch"),
            ({"endpoints": "example.org"}, "'example.org' is not host:port (IPv6 as [::1]:443)"),
            (
                {"endpoints": "example.org:0"},
                "'example.org:0' is not host:port (IPv6 as [::1]:443)",
            ),
            ({"endpoints": "a:25;starttls=imap"}, "a:25: starttls 'imap' (known: smtp)"),
            ({"endpoints": "a:25;tls"}, "'tls': expected sni=name or starttls=smtp"),
            ({"paths": "/x", "remember": "0s"}, "must be greater than zero"),
        ],
    )
    def test_bad_options_are_refused(self, options: dict[str, Any], message: str) -> None:
        """Each bad option is refused with what is wrong."""
        with pytest.raises(OptionError) as raised:
            check_options("x509", options)
        assert raised.value.message == message
