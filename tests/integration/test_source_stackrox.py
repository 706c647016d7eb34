"""The stackrox source against a loopback server answering as Central's API does.

Shapes from the stackrox/stackrox repository (commit bed4a7b242715957740f1b6b61f4e2c8ca146eab):

- proto/api/v1/api_token_service.proto: ``GET /v1/apitokens`` (``GetAPITokens``), the
  ``revoked`` query parameter (a oneof: unset lists all), ``GetAPITokensResponse.tokens``.
- proto/storage/api_token.proto: ``TokenMetadata`` ``id``, ``name``, ``roles``,
  ``issued_at``, ``expiration``, ``revoked`` and the deprecated single ``role``; in protobuf
  JSON ``issuedAt`` and Timestamps as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits.
- pkg/grpc/server.go: the gateway marshals with ``EmitUnpopulated: true`` (lowerCamelCase
  names; an unset expiration is ``null``, an empty list ``[]``, ``role`` ``""``).
- pkg/grpc/server_error_handler.go: an error answers ``{"code", "message", "details",
  "error"}`` with the gateway's HTTP status (Unauthenticated 401, PermissionDenied 403).
- central/apitoken/service/service_impl.go: ``GetAPITokens`` needs View on Integration.
- central/apitoken/datastore/datastore_impl.go: ``revoked=false`` keeps the tokens whose
  ``revoked`` is false.
- central/apitoken/expiration/expiration.go: Central's own notifier (tokens with
  now < expiration < now + window, not revoked; days rounded up).
- ui/apps/platform/src/services/APITokensService.ts (``/v1/apitokens?revoked=false``),
  ui/apps/platform/src/types/apiToken.proto.ts (the fields), ui/apps/platform/src/routePaths.ts
  and Containers/Integrations/utils/integrationsList.ts (a token's page,
  ``/main/integrations/authProviders/apitoken/view/<id>``).

The warn line: https://docs.openshift.com/acs/4.5/configuration/configure-api-token.html
("Warn: API Token [token name] (ID [token ID]) will expire in less than X days."); the API:
https://docs.redhat.com/en/documentation/red_hat_advanced_cluster_security_for_kubernetes/4.6/html/api_reference/apitoken-service
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from notifier import cli
from notifier.config.options import OptionError
from notifier.config.parsing import ConfigError
from notifier.config.settings import load_settings
from notifier.core.clock import FixedClock
from notifier.core.messages import sentence
from notifier.core.model import CredentialKind, NoticeKind
from notifier.db.database import Database
from notifier.delivery.checker import Checker
from notifier.runtime.compose import build_source
from notifier.sinks.log import LogSink
from notifier.sources import SourceError
from notifier.sources.stackrox import StackRoxSource, StackRoxSourceConfig, check_options
from notifier.testing import RecordingSink, make_policy
from tests.conftest import sqlite_database
from tests.integration.test_sources import checker
from tests.receivers import free_port

SECRET = "eyJhbGciOiJSUzI1NiJ9.central-api-token-never-shown"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
CI_ID = "2b6c0ad6-8ed4-4c0d-a5a4-3f1a7f2a9e01"
database = sqlite_database


def rfc3339(moment: datetime, digits: int = 9) -> str:
    """A time as protobuf JSON writes a Timestamp: UTC, ``Z``, nanoseconds when it has them."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}000"[:digits]
    return f"{text}.{fraction}Z" if digits else f"{text}Z"


def metadata(
    token_id: str,
    name: str,
    *,
    expiration: datetime | None,
    issued: datetime = NOW - 300 * DAY,
    roles: tuple[str, ...] = ("Continuous Integration",),
    role: str = "",
    revoked: bool = False,
) -> dict[str, Any]:
    """One ``TokenMetadata`` as Central's gateway writes it (every field, EmitUnpopulated)."""
    return {
        "id": token_id,
        "name": name,
        "roles": list(roles),
        "issuedAt": rfc3339(issued),
        "expiration": None if expiration is None else rfc3339(expiration),
        "revoked": revoked,
        "role": role,
    }


def central(server: HTTPServer, tokens: list[dict[str, Any]], prefix: str = "") -> None:
    """Answer ``GET /v1/apitokens?revoked=false`` with *tokens*, for the right token only."""
    server.expect_request(
        f"{prefix}/v1/apitokens",
        method="GET",
        query_string={"revoked": "false"},
        headers={"Authorization": f"Bearer {SECRET}"},
    ).respond_with_json({"tokens": tokens})


def config(server: HTTPServer, **options: Any) -> StackRoxSourceConfig:
    return StackRoxSourceConfig(
        name=options.pop("name", "stackrox"),
        url=options.pop("url", server.url_for("").rstrip("/")),
        token=options.pop("token", SECRET),
        ca_file=None,
        timeout=options.pop("timeout", timedelta(seconds=5)),
    )


@pytest.fixture
def source(httpserver: HTTPServer) -> Iterator[StackRoxSource]:
    """A source reading the loopback Central."""
    reading = StackRoxSource(config(httpserver))
    yield reading
    reading.close()


class TestRead:
    def test_tokens_are_read_by_id(self, httpserver: HTTPServer, source: StackRoxSource) -> None:
        """Each token: its id, its name, issuedAt and expiration, its roles and its page."""
        expires = NOW + 3 * DAY
        central(
            httpserver,
            [metadata(CI_ID, "ci-pipeline", expiration=expires, roles=("Admin", "Analyst"))],
        )
        found = source.read()
        token = found[CI_ID]
        assert (token.source, token.name, token.owner) == ("stackrox", "ci-pipeline", None)
        assert token.expires_at == expires
        assert token.created_at == NOW - 300 * DAY
        assert token.revoked_at is None
        assert token.credential_kind is CredentialKind.TOKEN
        assert token.labels == {
            "roles": "Admin,Analyst",
            "url": f"{httpserver.url_for('').rstrip('/')}"
            f"/main/integrations/authProviders/apitoken/view/{CI_ID}",
        }
        assert SECRET not in repr(found)
        assert SECRET not in repr(source._config)

    @pytest.mark.parametrize(
        ("text", "moment"),
        [
            # protojson writes 9 digits when the nanoseconds need them
            ("2026-06-04T12:00:00.123456789Z", datetime(2026, 6, 4, 12, 0, 0, 123456, UTC)),
            ("2026-06-04T12:00:00.120Z", datetime(2026, 6, 4, 12, 0, 0, 120000, UTC)),
            ("2026-06-04T12:00:00Z", datetime(2026, 6, 4, 12, tzinfo=UTC)),
            # what another marshaller might write: an offset
            ("2026-06-04T14:00:00.5+02:00", datetime(2026, 6, 4, 12, 0, 0, 500000, UTC)),
        ],
    )
    def test_times_with_nanoseconds(
        self, httpserver: HTTPServer, source: StackRoxSource, text: str, moment: datetime
    ) -> None:
        """RFC 3339 times with nanoseconds are cut to microseconds, in UTC."""
        token = metadata(CI_ID, "ci", expiration=None)
        token["expiration"] = token["issuedAt"] = text
        central(httpserver, [token])
        found = source.read()[CI_ID]
        assert (found.expires_at, found.created_at) == (moment, moment)

    def test_the_older_single_role(self, httpserver: HTTPServer, source: StackRoxSource) -> None:
        """A Central from before ``roles`` gives one ``role``: it is the roles label."""
        central(httpserver, [metadata(CI_ID, "old", expiration=None, roles=(), role="Admin")])
        assert source.read()[CI_ID].labels["roles"] == "Admin"

    def test_a_revoked_token_is_left_out(
        self, httpserver: HTTPServer, source: StackRoxSource
    ) -> None:
        """A token marked revoked is skipped even when Central returns it."""
        central(
            httpserver,
            [
                metadata("gone", "gone", expiration=NOW + DAY, revoked=True),
                metadata(CI_ID, "kept", expiration=NOW + DAY),
            ],
        )
        assert list(source.read()) == [CI_ID]

    def test_the_window(self, httpserver: HTTPServer, source: StackRoxSource) -> None:
        """Expiring and recently expired tokens are in the window; no-expiry ones never are."""
        central(
            httpserver,
            [
                metadata("soon", "soon", expiration=NOW + 2 * DAY),
                metadata("later", "later", expiration=NOW + 60 * DAY),
                metadata("expired", "expired", expiration=NOW - HOUR),
                metadata("long-expired", "long-expired", expiration=NOW - 3 * DAY),
                metadata("forever", "forever", expiration=None),
            ],
        )
        window = source.window(NOW, 7 * DAY, DAY)
        assert sorted(t.token_id for t in window) == ["expired", "soon"]
        assert len(source.found()) == 5  # everything read, for the credentials list
        assert next(t for t in source.found() if t.token_id == "forever").expires_at is None
        assert set(source.by_ids(["later", "nope"])) == {"later"}
        assert len(httpserver.log) == 1  # by_ids answers from what the window read

    def test_by_ids_reads_when_no_window_has(
        self, httpserver: HTTPServer, source: StackRoxSource
    ) -> None:
        """by_ids before any window reads Central once."""
        central(httpserver, [metadata(CI_ID, "ci", expiration=NOW + DAY)])
        assert set(source.by_ids([CI_ID])) == {CI_ID}
        assert len(httpserver.log) == 1

    def test_no_tokens(self, httpserver: HTTPServer, source: StackRoxSource) -> None:
        """An empty list (as Central writes it: ``[]``) is no tokens, not a failure."""
        central(httpserver, [])
        assert source.read() == {}

    def test_the_url_may_have_a_path(self, httpserver: HTTPServer) -> None:
        """Central behind a path prefix: the API is that path + /v1."""
        central(httpserver, [metadata(CI_ID, "ci", expiration=None)], prefix="/rhacs")
        reading = StackRoxSource(config(httpserver, url=httpserver.url_for("/rhacs")))
        try:
            assert list(reading.read()) == [CI_ID]
        finally:
            reading.close()


class TestTls:
    @pytest.fixture
    def tls_central(self, tmp_path: Path) -> Iterator[tuple[HTTPServer, Path]]:
        """A Central on HTTPS with a certificate of its own CA (as Central makes by default)."""
        authority = trustme.CA()
        leaf = authority.issue_cert("127.0.0.1")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        server = HTTPServer(host="127.0.0.1", ssl_context=context)
        server.start()
        ca = tmp_path / "central-ca.pem"
        ca.write_bytes(authority.cert_pem.bytes())
        try:
            yield server, ca
        finally:
            server.clear()
            server.stop()

    def test_central_verified_by_its_own_ca(self, tls_central: tuple[HTTPServer, Path]) -> None:
        """With ca_file, Central's certificate is verified by that CA; without it, refused."""
        server, ca = tls_central
        central(server, [metadata(CI_ID, "ci", expiration=None)])
        options = {"url": server.url_for("/"), "token": SECRET}
        trusting = StackRoxSource(check_options("stackrox", {**options, "ca_file": str(ca)}))
        untrusting = StackRoxSource(check_options("stackrox", options))
        try:
            assert list(trusting.read()) == [CI_ID]
            with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
                untrusting.read()
        finally:
            trusting.close()
            untrusting.close()


class TestPass:
    def test_the_warn_line(self, httpserver: HTTPServer, database: Database) -> None:
        """A pass logs, and hands each sink, exactly the documented StackRox line."""
        central(httpserver, [metadata(CI_ID, "ci-pipeline", expiration=NOW + 2 * DAY + HOUR)])
        recorder = RecordingSink()
        source = build_source(check_options("stackrox", _options(httpserver)), database)
        pass_ = Checker(
            database=database,
            sources=[source],
            sinks=[LogSink("log", "day"), recorder],
            policy=make_policy(),
            clock=FixedClock(NOW),
            lease=timedelta(minutes=5),
        )
        try:
            with capture_logs() as logs:
                report = pass_.run()
        finally:
            source.close()
        line = f"Warn: API Token ci-pipeline (ID {CI_ID}) will expire in less than 3 days."
        assert not report.degraded
        (notice,) = recorder.received
        assert (notice.kind, notice.source, notice.days_left) == (
            NoticeKind.EXPIRING,
            "stackrox",
            3,
        )
        assert sentence(notice, "day") == line
        (logged,) = [entry for entry in logs if entry["event"] == "notice.expiring"]
        assert logged["message"] == line
        assert logged["log_level"] == "warning"
        assert SECRET not in repr(logs)

    def test_an_expired_token(self, httpserver: HTTPServer, database: Database) -> None:
        """A token past its expiration (Central still lists it) gets the expired line."""
        central(httpserver, [metadata(CI_ID, "ci", expiration=NOW - HOUR)])
        sink = RecordingSink()
        source = StackRoxSource(config(httpserver))
        try:
            checker(database, FixedClock(NOW), [source], sink).run()
        finally:
            source.close()
        (notice,) = sink.received
        assert notice.kind is NoticeKind.EXPIRED
        assert sentence(notice, "day") == f"Warn: API Token ci (ID {CI_ID}) has expired."

    def test_backoff_then_revocation(self, httpserver: HTTPServer, database: Database) -> None:
        """Once a day while expiring; revoked in Central, the token goes silently."""
        central(httpserver, [metadata(CI_ID, "ci", expiration=NOW + 5 * DAY)])
        clock = FixedClock(NOW)
        sink = RecordingSink()
        source = StackRoxSource(config(httpserver))
        try:
            run = checker(database, clock, [source], sink).run
            for _ in range(25):  # 25 hourly passes: one notice at 0 h, the next at 24 h
                run()
                clock.advance(HOUR)
            httpserver.clear()
            central(httpserver, [metadata(CI_ID, "ci", expiration=NOW + 5 * DAY, revoked=True)])
            clock.advance(DAY)
            assert not run().degraded
        finally:
            source.close()
        assert [(n.kind, n.days_left) for n in sink.received] == [
            (NoticeKind.EXPIRING, 6),  # exactly 5 days left: "less than 6 days"
            (NoticeKind.EXPIRING, 5),
        ]

    def test_a_failing_central_fails_alone(
        self, httpserver: HTTPServer, database: Database
    ) -> None:
        """One Central refusing the token is reported; another Central's token still warns."""
        httpserver.expect_request("/refused/v1/apitokens").respond_with_json(
            {"code": 16, "message": "token validation failed", "details": [], "error": "x"},
            status=401,
        )
        central(httpserver, [metadata(CI_ID, "ci", expiration=NOW + DAY)], prefix="/ok")
        refused = StackRoxSource(
            config(httpserver, name="stackrox:a", url=httpserver.url_for("/refused"))
        )
        working = StackRoxSource(
            config(httpserver, name="stackrox:b", url=httpserver.url_for("/ok"))
        )
        sink = RecordingSink()
        try:
            with capture_logs() as logs:
                report = checker(database, FixedClock(NOW), [refused, working], sink).run()
        finally:
            refused.close()
            working.close()
        assert report.failed_sources == ["stackrox:a"]
        assert [(n.source, n.token_id) for n in sink.received] == [("stackrox:b", CI_ID)]
        (failed,) = [entry for entry in logs if entry["event"] == "source.failed"]
        assert failed["reason"] == (
            f"{httpserver.url_for('/refused/v1/apitokens')}: "
            "401 the token was refused (expired, revoked or wrong)"
        )
        assert SECRET not in repr(logs)


def _options(server: HTTPServer) -> dict[str, Any]:
    return {"url": server.url_for("/"), "token": SECRET, "timeout": "5s"}


class TestFailures:
    @pytest.mark.parametrize(
        ("status", "body", "said"),
        [
            (
                401,
                {"code": 16, "message": "credentials not found", "details": []},
                "401 the token was refused (expired, revoked or wrong)",
            ),
            (
                403,
                {"code": 7, "message": "not authorized: access to Integration denied"},
                "403 the token may not read this: not authorized: access to Integration denied",
            ),
            (404, {"code": 5, "message": "Not Found", "details": []}, "404 Not Found"),
            (500, {"code": 13, "message": "retrieval of tokens failed: db"}, "500 retrieval of"),
            (502, "<html>Bad Gateway</html>", "502 BAD GATEWAY"),
        ],
    )
    def test_answers_that_fail_the_source(
        self, httpserver: HTTPServer, source: StackRoxSource, status: int, body: Any, said: str
    ) -> None:
        """Each failing answer is a SourceError naming the endpoint and what it said."""
        handler = httpserver.expect_request("/v1/apitokens")
        if isinstance(body, dict):
            handler.respond_with_json(body, status=status)
        else:
            handler.respond_with_data(body, status=status, content_type="text/html")
        with pytest.raises(SourceError) as failure:
            source.read()
        assert str(failure.value).startswith(f"{httpserver.url_for('/v1/apitokens')}: {said}")
        assert SECRET not in str(failure.value)

    @pytest.mark.parametrize(
        ("body", "said"),
        [
            ("<html>Central is starting</html>", "the answer is not JSON"),
            ({"code": 0, "message": "ok"}, "the answer has no tokens list (is url Central's?)"),
            ({"tokens": None}, "the answer has no tokens list (is url Central's?)"),
            ([], "the answer has no tokens list (is url Central's?)"),
            ({"tokens": ["x"]}, "a token is not an object"),
            ({"tokens": [{"name": "no id"}]}, "a token without an id"),
            (
                {"tokens": [{"id": "t1", "expiration": "next week"}]},
                "t1 expiration: 'next week' is not a time",
            ),
        ],
    )
    def test_answers_that_are_not_centrals(
        self, httpserver: HTTPServer, source: StackRoxSource, body: Any, said: str
    ) -> None:
        """A 200 that is not a token list fails the source: it never reads as no tokens."""
        handler = httpserver.expect_request("/v1/apitokens")
        if isinstance(body, str):
            handler.respond_with_data(body, content_type="text/html")
        else:
            handler.respond_with_json(body)
        with pytest.raises(SourceError) as failure:
            source.read()
        assert str(failure.value) == f"{httpserver.url_for('/v1/apitokens')}: {said}"

    def test_retry_after_is_waited_out(self, httpserver: HTTPServer) -> None:
        """A 429 with Retry-After is waited out, bounded by the timeout, then retried."""
        waits: list[float] = []
        busy = {"code": 8, "message": "too many requests"}
        httpserver.expect_ordered_request("/v1/apitokens").respond_with_json(
            busy, status=429, headers={"Retry-After": "3"}
        )
        httpserver.expect_ordered_request("/v1/apitokens").respond_with_json(
            busy, status=429, headers={"Retry-After": "30"}
        )
        httpserver.expect_ordered_request(
            "/v1/apitokens", query_string={"revoked": "false"}
        ).respond_with_json({"tokens": [metadata(CI_ID, "ci", expiration=None)]})
        source = StackRoxSource(
            config(httpserver, timeout=timedelta(seconds=5)), sleep=waits.append
        )
        try:
            assert list(source.read()) == [CI_ID]
        finally:
            source.close()
        assert waits == [3.0, 5.0]  # the second asked for 30 s: bounded by the 5 s timeout
        httpserver.check_assertions()

    def test_retry_after_without_end(self, httpserver: HTTPServer) -> None:
        """Still 429 after two waits: the source fails this pass, saying so."""
        waits: list[float] = []
        httpserver.expect_request("/v1/apitokens").respond_with_json(
            {"code": 8, "message": "too many requests"}, status=429, headers={"Retry-After": "1"}
        )
        source = StackRoxSource(config(httpserver), sleep=waits.append)
        try:
            with pytest.raises(SourceError, match=r"/v1/apitokens: 429 too many requests$"):
                source.read()
        finally:
            source.close()
        assert waits == [1.0, 1.0]
        assert len(httpserver.log) == 3

    def test_a_timeout(self, httpserver: HTTPServer) -> None:
        """A Central slower than the timeout is a SourceError, not a hung pass."""

        def slow(_: Request) -> Response:
            time.sleep(1.5)
            return Response('{"tokens": []}', content_type="application/json")

        httpserver.expect_request("/v1/apitokens").respond_with_handler(slow)
        source = StackRoxSource(config(httpserver, timeout=timedelta(seconds=0.3)))
        try:
            with pytest.raises(SourceError, match=r"/v1/apitokens: ReadTimeout"):
                source.read()
        finally:
            source.close()

    def test_an_unreachable_central(self, httpserver: HTTPServer) -> None:
        """A Central nobody answers at is a SourceError naming the address."""
        url = f"http://127.0.0.1:{free_port()}"
        source = StackRoxSource(config(httpserver, url=url, timeout=timedelta(seconds=2)))
        try:
            with pytest.raises(SourceError, match=rf"^{url}/v1/apitokens: ConnectError"):
                source.read()
        finally:
            source.close()


class TestOptions:
    def test_from_variables(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """NOTIFIER_SOURCES=store,stackrox reads NOTIFIER_STACKROX_<OPTION>."""
        ca = tmp_path / "central-ca.pem"
        ca.write_bytes(trustme.CA().cert_pem.bytes())
        monkeypatch.setenv("NOTIFIER_SOURCES", "store,stackrox")
        monkeypatch.setenv("NOTIFIER_STACKROX_URL", "https://central.example.com/")
        monkeypatch.setenv("NOTIFIER_STACKROX_TOKEN", SECRET)
        monkeypatch.setenv("NOTIFIER_STACKROX_CA_FILE", str(ca))
        monkeypatch.setenv("NOTIFIER_STACKROX_TIMEOUT", "3s")
        _, stackrox = load_settings().source_configs
        assert stackrox == StackRoxSourceConfig(
            name="stackrox",
            url="https://central.example.com",
            token=SECRET,
            ca_file=ca,
            timeout=timedelta(seconds=3),
        )
        assert SECRET not in repr(stackrox)

    def test_the_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without ca_file and timeout: the system's trust store and 10 s."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "stackrox")
        monkeypatch.setenv("NOTIFIER_STACKROX_URL", "https://central.example.com")
        monkeypatch.setenv("NOTIFIER_STACKROX_TOKEN", SECRET)
        (stackrox,) = load_settings().source_configs
        assert isinstance(stackrox, StackRoxSourceConfig)
        assert (stackrox.ca_file, stackrox.timeout) == (None, timedelta(seconds=10))

    def test_a_labelled_token_from_a_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """stackrox:prod's token may come from NOTIFIER_STACKROX_PROD_TOKEN_FILE."""
        secret = tmp_path / "token"
        secret.write_text(SECRET + "\n")
        monkeypatch.setenv("NOTIFIER_SOURCES", "stackrox:prod")
        monkeypatch.setenv("NOTIFIER_STACKROX_PROD_URL", "https://central.prod.example.com")
        monkeypatch.setenv("NOTIFIER_STACKROX_PROD_TOKEN_FILE", str(secret))
        (stackrox,) = load_settings().source_configs
        assert isinstance(stackrox, StackRoxSourceConfig)
        assert (stackrox.name, stackrox.token) == ("stackrox:prod", SECRET)

    def test_a_token_from_the_credentials_directory(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """With systemd's LoadCredential=, the token is $CREDENTIALS_DIRECTORY/stackrox_token."""
        (tmp_path / "stackrox_token").write_text(SECRET)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        monkeypatch.setenv("NOTIFIER_SOURCES", "stackrox")
        monkeypatch.setenv("NOTIFIER_STACKROX_URL", "https://central.example.com")
        (stackrox,) = load_settings().source_configs
        assert isinstance(stackrox, StackRoxSourceConfig)
        assert stackrox.token == SECRET

    def test_from_the_config_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A [sources."stackrox:prod"] table, the token from its variable."""
        path = tmp_path / "notifier.toml"
        path.write_text(
            '[sources."stackrox:prod"]\nurl = "https://central.example.com"\ntimeout = "20s"\n'
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
        monkeypatch.setenv("NOTIFIER_STACKROX_PROD_TOKEN", SECRET)
        _, stackrox = load_settings().source_configs
        assert isinstance(stackrox, StackRoxSourceConfig)
        assert (stackrox.name, stackrox.timeout) == ("stackrox:prod", timedelta(seconds=20))

    def test_config_show_hides_the_token(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` never prints the Central token."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "stackrox")
        monkeypatch.setenv("NOTIFIER_STACKROX_URL", "https://central.example.com")
        monkeypatch.setenv("NOTIFIER_STACKROX_TOKEN", SECRET)
        assert cli.main(["config", "show"]) == 0
        captured = capsys.readouterr()
        assert "NOTIFIER_STACKROX_URL" in captured.out
        assert SECRET not in captured.out + captured.err

    @pytest.mark.parametrize(
        ("variables", "line"),
        [
            (
                {"NOTIFIER_STACKROX_TOKEN": SECRET},
                (
                    "NOTIFIER_STACKROX_URL: is required: the server's URL, "
                    "e.g. https://central.example.com"
                ),
            ),
            (
                {"NOTIFIER_STACKROX_URL": "https://central.example.com"},
                (
                    "NOTIFIER_STACKROX_TOKEN: is required: "
                    "a Central API token with read access to Integration"
                ),
            ),
            (
                {"NOTIFIER_STACKROX_URL": "central.example.com", "NOTIFIER_STACKROX_TOKEN": "t"},
                (
                    "NOTIFIER_STACKROX_URL='central.example.com': "
                    "'central.example.com' is not an http(s) URL"
                ),
            ),
            (
                {"NOTIFIER_STACKROX_URL": "https://c.example/v1", "NOTIFIER_STACKROX_TOKEN": "t"},
                (
                    "NOTIFIER_STACKROX_URL='https://c.example/v1': "
                    "is Central's address, without /v1 (the source adds it)"
                ),
            ),
            (
                {
                    "NOTIFIER_STACKROX_URL": "https://c.example",
                    "NOTIFIER_STACKROX_TOKEN": "t",
                    "NOTIFIER_STACKROX_CA_FILE": "/nonexistent/ca.pem",
                },
                (
                    "NOTIFIER_STACKROX_CA_FILE='/nonexistent/ca.pem': "
                    "'/nonexistent/ca.pem' is not a readable file"
                ),
            ),
            (
                {
                    "NOTIFIER_STACKROX_URL": "https://c.example",
                    "NOTIFIER_STACKROX_TOKEN": "t",
                    "NOTIFIER_STACKROX_TIMEOUT": "0s",
                },
                "NOTIFIER_STACKROX_TIMEOUT='0s': must be greater than zero",
            ),
        ],
    )
    def test_bad_values_name_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], line: str
    ) -> None:
        """Each refusal names the variable it came from (the start-up exits 78)."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "stackrox")
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_settings()
        (problem,) = raised.value.lines
        assert problem.startswith(line), problem

    def test_a_ca_file_that_is_no_bundle(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A ca_file without a certificate (a key, a typo) stops the start-up, not each pass."""
        key = tmp_path / "central.key"
        key.write_text("-----BEGIN PRIVATE KEY-----\nnot a certificate\n")
        monkeypatch.setenv("NOTIFIER_SOURCES", "stackrox")
        monkeypatch.setenv("NOTIFIER_STACKROX_URL", "https://central.example.com")
        monkeypatch.setenv("NOTIFIER_STACKROX_TOKEN", SECRET)
        monkeypatch.setenv("NOTIFIER_STACKROX_CA_FILE", str(key))
        with pytest.raises(ConfigError) as raised:
            load_settings()
        (problem,) = raised.value.lines
        assert problem.startswith(
            f"NOTIFIER_STACKROX_CA_FILE={str(key)!r}: {str(key)!r} is not a PEM CA bundle ("
        ), problem

    def test_a_blank_token(self) -> None:
        """A token of blanks is no token: check_options names the option."""
        with pytest.raises(OptionError) as raised:
            check_options("stackrox", {"url": "https://c.example/", "token": " "})
        assert raised.value.option == "token"
