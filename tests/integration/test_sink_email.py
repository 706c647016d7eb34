"""The email sink through a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections import Counter
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from notifier.core.clock import FixedClock
from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow
from notifier.delivery.checker import Checker
from notifier.sinks import EVERYTHING
from notifier.sinks.config import check_sink
from notifier.sinks.email import EmailSink, header_text
from notifier.sources.file import FileSource, FileSourceConfig
from notifier.sources.store import StoreSource
from notifier.sources.x509 import X509Source, X509SourceConfig
from notifier.testing import make_policy
from notifier.tokens.lifecycle import TokenStore
from tests.certificates import Chain
from tests.conftest import sqlite_database
from tests.receivers import FAST, Mailbox, free_port

DAY = timedelta(days=1)
POLICY = make_policy()


# The receiver, not the backend, is under test here: SQLite only.
database = sqlite_database


def email_sink(port: int, **options: Any) -> EmailSink:
    config = check_sink(
        "email",
        {
            "host": "127.0.0.1",
            "port": str(port),
            "security": "none",
            "from": "notifier@example.com",
            **options,
        },
    )
    return EmailSink(
        "email",
        options=dict(config.options),
        route=EVERYTHING,
        retry=FAST,
        slice_name="day",
        timeout=timedelta(seconds=5),
    )


def run(database: Database, clock: FixedClock, sink: EmailSink, owner: str = "a") -> Any:
    return Checker(
        database=database,
        sinks=[sink],
        policy=POLICY,
        clock=clock,
        lease=timedelta(minutes=5),
        owner=owner,
    ).run()


def text_of(message: Message) -> tuple[str, str]:
    parts = {part.get_content_type(): part.get_payload(decode=True) for part in message.walk()}
    plain, html = parts["text/plain"], parts["text/html"]
    assert isinstance(plain, bytes)
    assert isinstance(html, bytes)
    return plain.decode(), html.decode()


class TestDigests:
    def test_one_digest_per_recipient_in_expiry_order(
        self, smtp_server: tuple[Mailbox, int], database: Database, clock: FixedClock
    ) -> None:
        """Each owner gets one digest listing their tokens, soonest expiry first, text and HTML."""
        mailbox, port = smtp_server
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        store.create(name="alice-late", expires_at=clock.now() + DAY * 5, owner="alice@example.com")
        store.create(name="alice-soon", expires_at=clock.now() + DAY, owner="alice@example.com")
        store.create(name="bob-<b>", expires_at=clock.now() + DAY * 2, owner="bob@example.com")
        report = run(database, clock, email_sink(port))
        assert report.sent == {"email": 3}
        by_recipient = {tuple(to): message for to, message in mailbox.messages}
        assert set(by_recipient) == {("alice@example.com",), ("bob@example.com",)}
        alice = by_recipient[("alice@example.com",)]
        assert alice["Subject"] == "[notifier] 2 API tokens need attention"
        assert alice["From"] == "notifier@example.com"
        plain, html = text_of(alice)
        assert plain.index("alice-soon") < plain.index("alice-late")
        assert "will expire in less than 2 days." in plain
        assert html.index("alice-soon") < html.index("alice-late")
        _, bob_html = text_of(by_recipient[("bob@example.com",)])
        assert "bob-&lt;b&gt;" in bob_html  # HTML escaped
        assert "bob-<b>" not in bob_html

    def test_configured_recipients_get_everything(
        self, smtp_server: tuple[Mailbox, int], database: Database, clock: FixedClock
    ) -> None:
        """With a 'to' list, each listed address gets one digest of all tokens."""
        mailbox, port = smtp_server
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        store.create(name="a", expires_at=clock.now() + DAY, owner="alice@example.com")
        store.create(name="b", expires_at=clock.now() + DAY * 2)
        run(database, clock, email_sink(port, to="sec@example.com,ops@example.com"))
        assert sorted(to[0] for to, _ in mailbox.messages) == ["ops@example.com", "sec@example.com"]
        for _, message in mailbox.messages:
            assert message["Subject"].startswith("[notifier] 2 API tokens")

    def test_a_digest_names_the_kind_of_what_it_lists(
        self,
        smtp_server: tuple[Mailbox, int],
        database: Database,
        clock: FixedClock,
        tmp_path: Path,
    ) -> None:
        """Certificates alone are certificates; certificates and tokens are credentials."""
        mailbox, port = smtp_server
        chain = Chain()
        leaf = chain.leaf(
            "edge.example.com", not_before=clock.now() - DAY, not_after=clock.now() + DAY
        )
        (tmp_path / "edge.pem").write_bytes(chain.bundle(leaf, with_root=False))
        certificates = X509Source(
            X509SourceConfig(
                name="x509",
                paths=(str(tmp_path / "edge.pem"),),
                endpoints=(),
                pkcs12_password=None,
                timeout=timedelta(seconds=5),
                remember=DAY,
            )
        )
        checker = Checker(
            database=database,
            sources=[certificates, StoreSource(database)],
            sinks=[email_sink(port, to="ops@example.com")],
            policy=POLICY,
            clock=clock,
            lease=timedelta(minutes=5),
        )
        checker.run()
        ((_, alone),) = mailbox.messages
        assert alone["Subject"] == "[notifier] 1 certificate needs attention"
        plain, html = text_of(alone)
        assert plain.startswith("1 certificate needs your attention.")
        assert "Renew or replace each one" in plain
        assert "tokens rotate" not in plain
        assert "tokens rotate" not in html
        mailbox.messages.clear()
        TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None).create(
            name="deploy", expires_at=clock.now() + DAY * 2
        )
        clock.advance(timedelta(hours=1))
        leaf = chain.leaf(
            "api.example.com", not_before=clock.now() - DAY, not_after=clock.now() + DAY
        )
        (tmp_path / "edge.pem").write_bytes(chain.bundle(leaf, with_root=False))
        checker.run()
        ((_, mixed),) = mailbox.messages
        assert mixed["Subject"] == "[notifier] 2 credentials need attention"

    def test_no_recipient_is_permanent(
        self, smtp_server: tuple[Mailbox, int], database: Database, clock: FixedClock
    ) -> None:
        """A token without an email owner, and no 'to' list, fails for good: no retry storm."""
        mailbox, port = smtp_server
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        store.create(name="orphan", expires_at=clock.now() + DAY, owner="the platform team")
        report = run(database, clock, email_sink(port))
        assert report.failed == {"email": 1}
        assert mailbox.messages == []
        with database.read() as connection:
            error = connection.execute(select(DeliveryStateRow.__table__.c.last_error)).scalar()
        assert str(error).startswith("no recipient")

    def test_refused_recipient_is_permanent(
        self, smtp_server: tuple[Mailbox, int], database: Database, clock: FixedClock
    ) -> None:
        """A 550 for the recipient is permanent; others still get their digest."""
        mailbox, port = smtp_server
        mailbox.refuse.add("gone@example.com")
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        store.create(name="x", expires_at=clock.now() + DAY, owner="gone@example.com")
        store.create(name="y", expires_at=clock.now() + DAY, owner="here@example.com")
        report = run(database, clock, email_sink(port))
        assert report.sent == {"email": 1}
        assert report.failed == {"email": 1}
        assert [to for to, _ in mailbox.messages] == [["here@example.com"]]

    def test_unreachable_server_is_transient(self, database: Database, clock: FixedClock) -> None:
        """No SMTP server: a transient failure, retried next pass."""
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        store.create(name="x", expires_at=clock.now() + DAY, owner="a@example.com")
        report = run(database, clock, email_sink(free_port()))
        assert report.failed == {"email": 1}
        with database.read() as connection:
            row = connection.execute(select(DeliveryStateRow.__table__)).one()
        assert row.last_error == "SMTP unreachable: ConnectionRefusedError"
        assert row.next_due_at is not None

    def test_two_replicas_send_one_digest(
        self, smtp_server: tuple[Mailbox, int], database: Database, clock: FixedClock
    ) -> None:
        """Two replicas running the pass together still send a recipient one digest."""
        mailbox, port = smtp_server
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        for index in range(30):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY, owner="alice@example.com")
        threads = [
            threading.Thread(target=run, args=(database, clock, email_sink(port), owner))
            for owner in ("replica-a", "replica-b")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(mailbox.messages) == 1
        _, message = mailbox.messages[0]
        assert message["Subject"].startswith("[notifier] 30 API tokens")


class TestTls:
    def test_starttls_and_login(
        self, database: Database, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """STARTTLS against a server with a certificate from a test CA, then AUTH LOGIN."""
        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1")
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(server_context)
        ca_file = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))

        logins: list[tuple[bytes, bytes]] = []

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            del server, session, envelope, mechanism
            assert isinstance(auth_data, LoginPassword)
            logins.append((auth_data.login, auth_data.password))
            return AuthResult(success=auth_data.password == b"s3cret", handled=False)

        mailbox = Mailbox()
        port = free_port()
        controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=port,
            tls_context=server_context,
            require_starttls=True,
            auth_required=True,
            authenticator=authenticator,
        )
        controller.start()
        try:
            store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
            store.create(name="x", expires_at=clock.now() + DAY, owner="a@example.com")
            sink = email_sink(port, security="starttls", username="notifier", password="s3cret")
            assert run(database, clock, sink).sent == {"email": 1}
            wrong = email_sink(port, security="starttls", username="notifier", password="nope")
            store.create(name="y", expires_at=clock.now() + DAY, owner="b@example.com")
            report = run(database, clock, wrong)
        finally:
            controller.stop()
        assert logins[0] == (b"notifier", b"s3cret")
        assert len(mailbox.messages) == 1
        assert report.failed == {"email": 1}
        with database.read() as connection:
            errors = {
                row.last_error for row in connection.execute(select(DeliveryStateRow.__table__))
            }
        assert "SMTP login refused (535)" in errors

    def test_implicit_tls(
        self, database: Database, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """security=tls speaks TLS from the first byte (SMTPS), verified against the test CA."""
        authority = trustme.CA()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(server_context)
        ca_file = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        mailbox = Mailbox()
        port = free_port()
        controller = Controller(
            mailbox, hostname="127.0.0.1", port=port, ssl_context=server_context
        )
        controller.start()
        try:
            store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
            store.create(name="x", expires_at=clock.now() + DAY, owner="a@example.com")
            report = run(database, clock, email_sink(port, security="tls"))
        finally:
            controller.stop()
        assert report.sent == {"email": 1}
        assert [to for to, _ in mailbox.messages] == [["a@example.com"]]


class TestTemplates:
    def test_subject_and_text_template_replace_the_defaults(
        self,
        smtp_server: tuple[Mailbox, int],
        database: Database,
        clock: FixedClock,
        tmp_path: Path,
    ) -> None:
        """A sink's own subject and text template are used; the HTML default stays."""
        mailbox, port = smtp_server
        template = tmp_path / "digest.txt.j2"
        template.write_text(
            "Hi {{ recipient }}:{% for t in tokens %} {{ t.name }}={{ t.days_left }}{% endfor %}\n"
        )
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        store.create(name="one", expires_at=clock.now() + DAY, owner="a@example.com")
        sink = email_sink(port, subject="Tokens: {{ count }}", template=str(template))
        run(database, clock, sink)
        ((_, message),) = mailbox.messages
        plain, _ = text_of(message)
        assert message["Subject"] == "Tokens: 1"
        assert plain.strip() == "Hi a@example.com: one=2"

    def test_broken_template_is_a_config_error(self, tmp_path: Path) -> None:
        """A template that does not compile is refused when the sink is configured."""
        from notifier.config.options import OptionError  # noqa: PLC0415

        template = tmp_path / "bad.j2"
        template.write_text("{% for %}")
        with pytest.raises(OptionError) as caught:
            check_sink(
                "email",
                {"host": "h", "from": "a@example.com", "template": str(template)},
            )
        assert caught.value.option == "template"


class TestHeaders:
    def test_line_breaks_in_names_from_a_source_stay_inside_the_subject(
        self,
        smtp_server: tuple[Mailbox, int],
        database: Database,
        clock: FixedClock,
        tmp_path: Path,
    ) -> None:
        """CR, LF, U+2028 and U+0085 in an external token's name: the digest goes, one subject."""
        mailbox, port = smtp_server
        expiry = (clock.now() + DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
        names = ["ci\r\nBcc: evil@example.com", "line\u2028sep", "next\x85line", "tab\tbed"]
        path = tmp_path / "tokens.json"
        path.write_text(
            json.dumps(
                [
                    {"id": f"ext{i}", "name": name, "expires_at": expiry, "owner": "a@example.com"}
                    for i, name in enumerate(names)
                ]
            )
        )
        source = FileSource(FileSourceConfig("file", path, ZoneInfo("UTC")))
        sink = email_sink(port, subject="Expiring:{% for t in tokens %} [{{ t.name }}]{% endfor %}")
        report = Checker(
            database=database,
            sources=[source],
            sinks=[sink],
            policy=POLICY,
            clock=clock,
            lease=timedelta(minutes=5),
        ).run()
        assert report.sent == {"email": 4}
        ((recipients, message),) = mailbox.messages
        assert recipients == ["a@example.com"]
        assert message["Bcc"] is None
        assert message["Subject"] == (
            "Expiring: [ci Bcc: evil@example.com] [line sep] [next line] [tab bed]"
        )

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("plain subject", "plain subject"),  # unchanged
            ("a\r\nBcc: x@example.com", "a Bcc: x@example.com"),  # CRLF: one space
            ("a\u2028b\u2029c", "a b c"),  # line and paragraph separators
            ("a\x85b\x0bc\x0cd", "a b c d"),  # NEL, vertical tab, form feed
            ("rtl\u202eevil", "rtl evil"),  # a format character
            ("\n trailing \r", "trailing"),  # the ends are trimmed
        ],
    )
    def test_header_text_is_one_line(self, value: str, expected: str) -> None:
        """Every header value the sink sets is one line with no control characters."""
        assert header_text(value) == expected


class TestStop:
    def test_a_stop_in_the_smtp_session_releases_the_digest(
        self, database: Database, clock: FixedClock
    ) -> None:
        """SIGTERM while the SMTP server holds the message: the pass ends now, claims released."""
        stop, answer = threading.Event(), threading.Event()

        class Stalling(Mailbox):
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                if not self.messages and not stop.is_set():
                    stop.set()  # the signal arrives while the message is in flight
                    await asyncio.get_running_loop().run_in_executor(None, answer.wait, 30)
                return await super().handle_DATA(server, session, envelope)

        mailbox = Stalling()
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
            for name in ("a", "b"):
                store.create(name=name, expires_at=clock.now() + DAY, owner="a@example.com")
            config = check_sink(
                "email",
                {
                    "host": "127.0.0.1",
                    "port": str(port),
                    "security": "none",
                    "from": "n@example.com",
                },
            )
            sink = EmailSink(
                "email",
                options=dict(config.options),
                route=EVERYTHING,
                retry=FAST,
                slice_name="day",
                timeout=timedelta(seconds=30),
                stop=stop,
            )
            started = time.monotonic()
            report = Checker(
                database=database,
                sinks=[sink],
                policy=POLICY,
                clock=clock,
                lease=timedelta(minutes=5),
                stop=stop,
            ).run()
            elapsed = time.monotonic() - started
            answer.set()
            assert elapsed < 5, f"the pass took {elapsed:.1f}s"
            assert (report.released, report.sent, report.failed) == (2, Counter(), Counter())
            with database.read() as connection:
                leases = connection.execute(select(DeliveryStateRow.__table__.c.lease_owner))
                assert [owner for (owner,) in leases] == [None, None]
            after = run(database, clock, email_sink(port))
        finally:
            controller.stop()
        assert after.sent == {"email": 2}
