"""The github source against a loopback server answering as GitHub's REST API documents it.

The shapes come from GitHub's documentation:

- https://docs.github.com/en/rest/orgs/personal-access-tokens (``GET
  /orgs/{org}/personal-access-tokens``: "Only GitHub Apps can use this endpoint", the
  "Personal access tokens" organisation permission (read), ``per_page`` max 100, a ``Link``
  header; each item ``id``, ``owner`` (a simple user), ``repository_selection``,
  ``repositories_url``, ``permissions``, ``access_granted_at``, ``token_id``, ``token_name``,
  ``token_expired``, ``token_expires_at`` and ``token_last_used_at``, the last two nullable;
  times as in its example, ``2023-11-16T08:47:09.000-07:00``)
- https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
  (RS256; ``iat`` 60 s in the past, ``exp`` no more than 10 minutes ahead, ``iss`` the App's
  client ID or ID; ``Authorization: Bearer``)
- https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app
  (``POST /app/installations/{installation_id}/access_tokens``, 201 with ``token`` and
  ``expires_at``; a ``permissions`` body narrows the token; it expires after an hour)
- https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api and
  https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api (a primary
  limit: 403 or 429 with ``x-ratelimit-remaining: 0`` until ``x-ratelimit-reset``, UTC epoch
  seconds; a secondary one: 403 or 429, with ``retry-after`` when present)
- https://github.blog/changelog/2021-07-26-expiration-options-for-personal-access-tokens/
  (a token with an expiry answers with ``GitHub-Authentication-Token-Expiration``, e.g.
  ``2021-10-07 19:07:53 UTC``; some carry an offset instead, ``+0900``:
  https://github.com/google/go-github/issues/2649)
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from notifier import cli
from notifier.config.parsing import ConfigError
from notifier.config.settings import load_settings
from notifier.core.clock import FixedClock
from notifier.core.messages import sentence
from notifier.core.model import NoticeKind
from notifier.db.database import Database
from notifier.sources import SourceError
from notifier.sources.github import (
    GitHubSource,
    GitHubSourceConfig,
    check_options,
    token_expiration,
    web_root,
)
from notifier.testing import RecordingSink
from tests.conftest import sqlite_database
from tests.integration.test_sources import checker

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
ORG = "acme"
APP_ID = "1234"
INSTALLATION = 42
GIVEN_TOKEN = "ghs_GivenInstallationTokenForTests"
CLASSIC = "ghp_ClassicTokenForTheTestsOnly0000"
OTHER_CLASSIC = "ghp_AnotherClassicTokenForTheTests11"
LISTING = f"/orgs/{ORG}/personal-access-tokens"
MINTING = f"/app/installations/{INSTALLATION}/access_tokens"
PACIFIC = timezone(timedelta(hours=-7))
database = sqlite_database


def github_time(moment: datetime) -> str:
    """A time as the documentation's examples write it: ``2023-11-16T08:47:09.000-07:00``."""
    return moment.astimezone(PACIFIC).isoformat(timespec="milliseconds")


def header_time(moment: datetime) -> str:
    """The expiration header's form: ``2021-10-07 19:07:53 UTC``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def grant(
    grant_id: int,
    token_id: int | None,
    name: str,
    expires_at: datetime | None,
    *,
    login: str = "octocat",
    expired: bool = False,
    last_used: datetime | None = None,
) -> dict[str, Any]:
    """One item of the list, as documented (the owner a simple user, cut to a few fields)."""
    item: dict[str, Any] = {
        "id": grant_id,
        "owner": {
            "login": login,
            "id": 1,
            "node_id": "MDQ6VXNlcjE=",
            "url": f"https://api.github.com/users/{login}",
            "html_url": f"https://github.com/{login}",
            "type": "User",
            "site_admin": False,
        },
        "repository_selection": "all",
        "repositories_url": (
            f"https://api.github.com/organizations/652551/personal-access-tokens/{grant_id}"
            "/repositories"
        ),
        "permissions": {
            "organization": {"members": "read"},
            "repository": {"metadata": "read"},
        },
        "access_granted_at": "2023-05-16T08:47:09.000-07:00",
        "token_id": token_id,
        "token_name": name,
        "token_expired": expired,
        "token_expires_at": None if expires_at is None else github_time(expires_at),
        "token_last_used_at": None if last_used is None else github_time(last_used),
    }
    if token_id is None:  # an older server's answer, before token_id
        del item["token_id"]
    return item


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    """The test App's key, as GitHub hands it out (an RSA key)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


class FakeGitHub:
    """GitHub's answers for the org listing, the token minting and ``GET /user``.

    It checks what GitHub checks: the JWT's RS256 signature with the App's public key and its
    claims, and that the listing is read with the installation token last minted.
    """

    def __init__(self, server: HTTPServer, clock: FixedClock, public_key: rsa.RSAPublicKey) -> None:
        self.server = server
        self.clock = clock
        self.public_key = public_key
        self.grants: list[dict[str, Any]] = []
        self.classic: dict[str, tuple[str, str | None]] = {}  # token -> (login, header)
        self.queued: list[tuple[int, dict[str, str], Any]] = []  # answers before the list's
        self.delay = 0.0
        self.mints: list[dict[str, Any]] = []  # the claims of each JWT accepted
        self.refusals: list[str] = []  # why a JWT or a listing's token was refused
        self.listings: list[dict[str, str]] = []  # each listing request's query
        self.current: str | None = None  # the installation token minted last
        self.mint_status = 201
        server.expect_request(MINTING, method="POST").respond_with_handler(self._mint)
        server.expect_request(LISTING, method="GET").respond_with_handler(self._list)
        server.expect_request("/user", method="GET").respond_with_handler(self._user)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def _mint(self, request: Request) -> Response:
        problem = self._jwt_problem(request)
        if problem is not None:
            self.refusals.append(problem)
            return _json({"message": "A JSON web token could not be decoded"}, 401)
        if self.mint_status != 201:
            return _json({"message": "Not Found"}, self.mint_status)
        self.current = f"ghs_minted{len(self.mints)}"
        return _json(
            {
                "token": self.current,
                "expires_at": (self.clock.now() + HOUR).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": {"organization_personal_access_tokens": "read"},
                "repository_selection": "all",
            },
            201,
        )

    def _jwt_problem(self, request: Request) -> str | None:
        scheme, _, jwt = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or jwt.count(".") != 2:
            return "no bearer JWT"
        head, payload, signature = jwt.split(".")
        try:
            self.public_key.verify(
                b64url_decode(signature),
                f"{head}.{payload}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:  # noqa: BLE001 - cryptography's InvalidSignature, or bad base64
            return "the signature does not verify"
        header, claims = json.loads(b64url_decode(head)), json.loads(b64url_decode(payload))
        now = int(self.clock.now().timestamp())
        if header != {"alg": "RS256", "typ": "JWT"}:
            return f"header {header}"
        if claims != {"iat": now - 60, "exp": now + 540, "iss": int(APP_ID)}:
            return f"claims {claims}"
        if request.get_json() != {"permissions": {"organization_personal_access_tokens": "read"}}:
            return f"body {request.get_data()!r}"
        self.mints.append(claims)
        return None

    def _list(self, request: Request) -> Response:
        if self.delay:
            time.sleep(self.delay)
        self.listings.append(dict(request.args))
        if self.queued:
            status, headers, body = self.queued.pop(0)
            return _json(body, status, headers)
        expected = {
            "Authorization": f"Bearer {self.current or GIVEN_TOKEN}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        wrong = [name for name, value in expected.items() if request.headers.get(name) != value]
        if wrong:
            self.refusals.append(f"listing headers {wrong}")
            return _json({"message": "Bad credentials"}, 401)
        per_page = int(request.args.get("per_page", "30"))
        page = int(request.args.get("page", "1"))
        items = self.grants[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(self.grants) // per_page))
        base = self.server.url_for(LISTING)
        links = []
        if page < last:
            links.append(f'<{base}?per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{base}?per_page={per_page}&page={last}>; rel="last"')
        if page > 1:
            links.append(f'<{base}?per_page={per_page}&page={page - 1}>; rel="prev"')
            links.append(f'<{base}?per_page={per_page}&page=1>; rel="first"')
        return _json(items, 200, {"Link": ", ".join(links)} if links else {})

    def _user(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.classic:
            return _json(
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                401,
            )
        login, expiration = self.classic[token]
        headers = {"X-OAuth-Scopes": "repo, read:org"}
        if expiration is not None:
            headers["GitHub-Authentication-Token-Expiration"] = expiration
        return _json({"login": login, "id": 1, "type": "User"}, 200, headers)


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


@pytest.fixture
def github_clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def fake(
    httpserver: HTTPServer, github_clock: FixedClock, app_key: rsa.RSAPrivateKey
) -> FakeGitHub:
    return FakeGitHub(httpserver, github_clock, app_key.public_key())


def app_options(fake: FakeGitHub, key: rsa.RSAPrivateKey, **options: Any) -> dict[str, Any]:
    return {
        "url": fake.url,
        "org": ORG,
        "app_id": APP_ID,
        "installation_id": str(INSTALLATION),
        "private_key": pem(key),
        "timeout": "2s",
        **options,
    }


@pytest.fixture
def open_source(github_clock: FixedClock) -> Iterator[Any]:
    """A function that opens a source on the fake (closed after the test), recording waits."""
    opened: list[GitHubSource] = []
    waits: list[float] = []

    def open_with(options: dict[str, Any]) -> GitHubSource:
        source = GitHubSource(
            check_options("github", options), clock=github_clock, sleep=waits.append
        )
        source.waits = waits  # type: ignore[attr-defined]
        opened.append(source)
        return source

    yield open_with
    for source in opened:
        source.close()


class TestFineGrained:
    def test_every_page_is_read(
        self, fake: FakeGitHub, open_source: Any, app_key: rsa.RSAPrivateKey
    ) -> None:
        """250 grants come on three pages of 100, each asked for by the Link header's next."""
        fake.grants = [grant(n, 90_000 + n, f"token-{n}", NOW + n * DAY) for n in range(1, 251)]
        found = open_source(app_options(fake, app_key)).read()
        assert len(found) == 250
        assert fake.listings == [
            {"per_page": "100"},
            {"per_page": "100", "page": "2"},
            {"per_page": "100", "page": "3"},
        ]
        assert fake.refusals == []

    def test_a_token_as_documented(
        self, fake: FakeGitHub, open_source: Any, app_key: rsa.RSAPrivateKey
    ) -> None:
        """The id is token_id; name, owner, expiry and the labels come from the grant."""
        fake.grants = [
            grant(25381, 98716, "Some Token", NOW + 2 * DAY, last_used=NOW - HOUR, login="hubot")
        ]
        (token,) = open_source(app_options(fake, app_key)).read().values()
        assert token.token_id == "98716"
        assert token.name == "Some Token"
        assert token.owner == "hubot"
        assert token.expires_at == NOW + 2 * DAY
        assert token.created_at is None  # access_granted_at is the grant's, not the token's
        assert token.labels == {
            "type": "fine-grained",
            "owner": "hubot",
            "repository_selection": "all",
            "last_used_at": "2026-03-02T08:00:00Z",
            "expired": "false",
            "permissions": "organization:members=read;repository:metadata=read",
            "grant_id": "25381",
            "url": f"{fake.url}/organizations/{ORG}/settings/personal-access-tokens/active",
        }

    def test_expired_never_expiring_and_without_token_id(
        self, fake: FakeGitHub, open_source: Any, app_key: rsa.RSAPrivateKey
    ) -> None:
        """An expired token stays in the window (its expired notice); one without expiry never."""
        fake.grants = [
            grant(1, 11, "expired", NOW - HOUR, expired=True),
            grant(2, 12, "forever", None),
            grant(3, None, "old-server", NOW + DAY),
            grant(4, 14, "far", NOW + 90 * DAY),
        ]
        source = open_source(app_options(fake, app_key))
        in_window = source.window(NOW, 7 * DAY, DAY)
        assert sorted(t.token_id for t in in_window) == ["11", "grant:3"]
        found = {t.token_id: t for t in source.found()}
        assert found["12"].expires_at is None
        assert found["11"].labels["expired"] == "true"
        assert found["grant:3"].name == "old-server"
        assert sorted(found) == ["11", "12", "14", "grant:3"]

    def test_a_given_installation_token_is_used_as_is(
        self, fake: FakeGitHub, open_source: Any
    ) -> None:
        """With ``token`` set nothing is minted: the listing is read with that token."""
        fake.grants = [grant(1, 11, "ci", NOW + DAY)]
        options = {"url": fake.url, "org": ORG, "token": GIVEN_TOKEN}
        assert list(open_source(options).read()) == ["11"]
        assert fake.mints == []
        assert fake.refusals == []


class TestMinting:
    def test_a_token_is_minted_once_and_reused(
        self,
        fake: FakeGitHub,
        open_source: Any,
        app_key: rsa.RSAPrivateKey,
        github_clock: FixedClock,
    ) -> None:
        """One JWT (verified by the server) buys a token two passes use; near expiry, another."""
        fake.grants = [grant(1, 11, "ci", NOW + DAY)]
        source = open_source(app_options(fake, app_key))
        source.window(NOW, 7 * DAY, DAY)
        github_clock.advance(timedelta(minutes=30))
        source.window(github_clock.now(), 7 * DAY, DAY)
        assert fake.refusals == []
        assert len(fake.mints) == 1
        assert len(fake.listings) == 2
        github_clock.advance(timedelta(minutes=26))  # 4 minutes before the hour is up
        source.window(github_clock.now(), 7 * DAY, DAY)
        assert len(fake.mints) == 2
        assert fake.refusals == []  # the listing was read with the new token

    def test_a_refused_jwt_names_what_to_check(
        self, fake: FakeGitHub, open_source: Any, app_key: rsa.RSAPrivateKey
    ) -> None:
        """A JWT signed with another key is refused: the error says which options to check."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        source = open_source(app_options(fake, app_key, private_key=pem(other)))
        with pytest.raises(SourceError) as failure:
            source.read()
        assert "401 the App's JWT was refused (check app_id, private_key" in str(failure.value)
        assert fake.refusals == ["the signature does not verify"]

    def test_an_unknown_installation(
        self, fake: FakeGitHub, open_source: Any, app_key: rsa.RSAPrivateKey
    ) -> None:
        """An installation GitHub does not know (404) fails the source, saying so."""
        fake.mint_status = 404
        with pytest.raises(SourceError, match=rf"{MINTING}: 404 Not Found"):
            open_source(app_options(fake, app_key)).read()

    def test_a_key_that_is_not_rsa(self, fake: FakeGitHub, open_source: Any) -> None:
        """An EC key cannot sign RS256: said before anything is sent."""
        key = ec.generate_private_key(ec.SECP256R1())
        source = open_source(app_options(fake, key))  # type: ignore[arg-type]
        with pytest.raises(SourceError, match="private_key: not an RSA key"):
            source.read()
        assert fake.mints == []

    def test_a_failed_listing_mints_afresh(
        self, fake: FakeGitHub, open_source: Any, app_key: rsa.RSAPrivateKey
    ) -> None:
        """A minted token refused early (the App reinstalled) is replaced on the next pass."""
        fake.queued = [(401, {}, {"message": "Bad credentials"})]
        source = open_source(app_options(fake, app_key))
        with pytest.raises(SourceError, match="401 the token was refused"):
            source.read()
        source.read()
        assert len(fake.mints) == 2


class TestClassic:
    def test_the_expiration_header(self, fake: FakeGitHub, open_source: Any) -> None:
        """Each classic token's expiry is its answer's header; the id is its configured name."""
        fake.classic = {
            CLASSIC: ("octocat", header_time(NOW + 3 * DAY)),
            OTHER_CLASSIC: ("hubot", None),
        }
        options = {"url": fake.url, "classic_tokens": f"ci={CLASSIC},deploy={OTHER_CLASSIC}"}
        source = open_source(options)
        found = source.read()
        assert sorted(found) == ["classic:ci", "classic:deploy"]
        ci, deploy = found["classic:ci"], found["classic:deploy"]
        assert (ci.name, ci.owner, ci.expires_at) == ("ci (octocat)", "octocat", NOW + 3 * DAY)
        assert deploy.expires_at is None  # no header: the token never expires
        assert ci.labels == {
            "type": "classic",
            "owner": "octocat",
            "url": f"{fake.url}/settings/tokens",
            "scopes": "repo,read:org",
        }
        assert source.problems() == ()
        assert CLASSIC not in repr(found) + repr(source._config)

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("2021-10-07 19:07:53 UTC", datetime(2021, 10, 7, 19, 7, 53, tzinfo=UTC)),
            ("2027-03-31 00:00:00 +0900", datetime(2027, 3, 30, 15, 0, tzinfo=UTC)),
        ],
    )
    def test_header_forms(self, header: str, expected: datetime) -> None:
        """The documented form, and the one with an offset instead of UTC."""
        assert token_expiration(header) == expected

    def test_a_refused_token_is_that_tokens_problem(
        self, fake: FakeGitHub, open_source: Any
    ) -> None:
        """A 401 for one token (expired, revoked) is its problem; it stays as last seen."""
        fake.classic = {
            CLASSIC: ("octocat", header_time(NOW + 3 * DAY)),
            OTHER_CLASSIC: ("hubot", header_time(NOW + 30 * DAY)),
        }
        source = open_source(
            {"url": fake.url, "classic_tokens": f"ci={CLASSIC},deploy={OTHER_CLASSIC}"}
        )
        source.read()
        del fake.classic[CLASSIC]  # revoked
        found = source.read()
        (problem,) = source.problems()
        assert problem == (
            f"classic token ci: {fake.url}/user: 401 the token was refused "
            "(expired, revoked or wrong)"
        )
        assert found["classic:ci"].expires_at == NOW + 3 * DAY  # as seen last
        assert found["classic:deploy"].owner == "hubot"

    def test_an_unreadable_header_is_a_problem(self, fake: FakeGitHub, open_source: Any) -> None:
        """A header that is not a time is not taken for "never expires"."""
        fake.classic = {CLASSIC: ("octocat", "soon"), OTHER_CLASSIC: ("hubot", None)}
        source = open_source(
            {"url": fake.url, "classic_tokens": f"ci={CLASSIC},deploy={OTHER_CLASSIC}"}
        )
        assert list(source.read()) == ["classic:deploy"]
        assert source.problems() == (
            "classic token ci: GitHub-Authentication-Token-Expiration: 'soon' is not a time",
        )

    def test_nothing_readable_fails_the_source(
        self, fake: FakeGitHub, open_source: Any, app_key: rsa.RSAPrivateKey
    ) -> None:
        """When the listing and every classic token fail, the source fails as a whole."""
        fake.queued = [(404, {}, {"message": "Not Found"})]
        source = open_source(app_options(fake, app_key, classic_tokens=f"ci={CLASSIC}"))
        with pytest.raises(SourceError) as failure:
            source.read()
        assert str(failure.value) == (
            f"{fake.url}{LISTING}: 404 Not Found; "
            f"classic token ci: {fake.url}/user: 401 the token was refused "
            "(expired, revoked or wrong)"
        )


class TestFailures:
    @pytest.mark.parametrize(
        ("answer", "said"),
        [
            ((401, {}, {"message": "Bad credentials"}), "401 the token was refused"),
            (
                (403, {}, {"message": "Resource not accessible by integration"}),
                "403 the token may not read this: Resource not accessible by integration",
            ),
            ((404, {}, {"message": "Not Found"}), "404 Not Found"),  # no such organisation
            ((500, {}, "<html>oops</html>"), "500 INTERNAL SERVER ERROR"),
        ],
    )
    def test_a_failed_listing(
        self, fake: FakeGitHub, open_source: Any, answer: tuple[int, dict[str, str], Any], said: str
    ) -> None:
        """The listing's failure fails the source, naming the address, never the token."""
        fake.queued = [answer]
        source = open_source({"url": fake.url, "org": ORG, "token": GIVEN_TOKEN})
        with pytest.raises(SourceError) as failure:
            source.read()
        assert str(failure.value).startswith(f"{fake.url}{LISTING}: {said}")
        assert GIVEN_TOKEN not in str(failure.value)
        assert len(fake.listings) == 1  # asked once: none of these is waited out
        assert source.waits == []

    def test_429_with_retry_after_is_waited_out(self, fake: FakeGitHub, open_source: Any) -> None:
        """A 429 (a secondary limit) with retry-after is waited out, bounded by the timeout."""
        fake.grants = [grant(1, 11, "ci", NOW + DAY)]
        fake.queued = [(429, {"Retry-After": "1"}, {"message": "secondary rate limit"})]
        source = open_source({"url": fake.url, "org": ORG, "token": GIVEN_TOKEN, "timeout": "2s"})
        assert list(source.read()) == ["11"]
        assert source.waits == [1.0]

    def test_a_403_primary_rate_limit_is_waited_out(
        self, fake: FakeGitHub, open_source: Any
    ) -> None:
        """A 403 with x-ratelimit-remaining: 0 waits for x-ratelimit-reset (up to the timeout)."""
        fake.grants = [grant(1, 11, "ci", NOW + DAY)]
        reset = str(int(time.time()) + 3600)
        limited = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
        fake.queued = [(403, limited, {"message": "API rate limit exceeded"})]
        source = open_source({"url": fake.url, "org": ORG, "token": GIVEN_TOKEN, "timeout": "2s"})
        assert list(source.read()) == ["11"]
        assert source.waits == [2.0]  # an hour away: bounded by the 2 s timeout

    def test_a_rate_limit_that_lasts_says_until_when(
        self, fake: FakeGitHub, open_source: Any
    ) -> None:
        """Still limited after two waits: the source fails, saying when the limit resets."""
        limited = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1772442000"}
        fake.queued = [(403, limited, {"message": "API rate limit exceeded"})] * 3
        source = open_source({"url": fake.url, "org": ORG, "token": GIVEN_TOKEN, "timeout": "2s"})
        with pytest.raises(SourceError) as failure:
            source.read()
        assert str(failure.value) == (
            f"{fake.url}{LISTING}: 403 the token may not read this: API rate limit exceeded "
            "(rate limit used up until 2026-03-02T09:00:00Z)"
        )
        assert len(fake.listings) == 3

    def test_a_timeout(self, fake: FakeGitHub, open_source: Any) -> None:
        """A server slower than the timeout is a SourceError, not a hang."""
        fake.delay = 1.5
        source = open_source(
            {"url": fake.url, "org": ORG, "token": GIVEN_TOKEN, "timeout": "300ms"}
        )
        with pytest.raises(SourceError, match="Timeout"):
            source.read()


class TestPass:
    def test_the_warn_line_and_a_renewal(
        self,
        fake: FakeGitHub,
        open_source: Any,
        app_key: rsa.RSAPrivateKey,
        github_clock: FixedClock,
        database: Database,
    ) -> None:
        """Both kinds warn with the documented line; a token given a later expiry is renewed."""
        fake.grants = [grant(25381, 98716, "Some Token", NOW + DAY + 12 * HOUR)]
        fake.classic = {CLASSIC: ("octocat", header_time(NOW + 20 * HOUR))}
        source = open_source(app_options(fake, app_key, classic_tokens=f"ci={CLASSIC}"))
        sink = RecordingSink()
        run = checker(database, github_clock, [source], sink).run
        with capture_logs() as logs:
            report = run()
        assert not report.degraded
        assert sorted(sentence(n, "day") for n in sink.received) == [
            "Warn: API Token Some Token (ID 98716) will expire in less than 2 days.",
            "Warn: API Token ci (octocat) (ID classic:ci) will expire in less than 1 day.",
        ]
        fake.grants = [grant(25381, 98716, "Some Token", NOW + 90 * DAY)]  # regenerated
        github_clock.advance(HOUR)
        run()
        renewed = [(n.token_id, n.kind, n.reason) for n in sink.received[2:]]
        assert renewed == [("98716", NoticeKind.RENEWED, "extended")]
        assert CLASSIC not in repr(logs)

    def test_a_revoked_classic_token_degrades_the_pass(
        self,
        fake: FakeGitHub,
        open_source: Any,
        github_clock: FixedClock,
        database: Database,
    ) -> None:
        """One refused classic token: source.failed partial=true, the others still warn."""
        fake.classic = {OTHER_CLASSIC: ("hubot", header_time(NOW + 20 * HOUR))}
        source = open_source(
            {"url": fake.url, "classic_tokens": f"ci={CLASSIC},deploy={OTHER_CLASSIC}"}
        )
        sink = RecordingSink()
        with capture_logs() as logs:
            report = checker(database, github_clock, [source], sink).run()
        assert report.failed_sources == ["github"]
        assert [n.token_id for n in sink.received] == ["classic:deploy"]
        (failed,) = [entry for entry in logs if entry["event"] == "source.failed"]
        assert failed["partial"] is True
        assert failed["reason"].startswith("classic token ci: ")
        assert CLASSIC not in repr(logs)


class TestOptions:
    def test_app_credentials_from_variables(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app_key: rsa.RSAPrivateKey
    ) -> None:
        """NOTIFIER_GITHUB_<OPTION>, the private key from a _FILE, classic tokens as a list."""
        key_file = tmp_path / "app.pem"
        key_file.write_text(pem(app_key))
        monkeypatch.setenv("NOTIFIER_SOURCES", "github")
        monkeypatch.setenv("NOTIFIER_GITHUB_ORG", ORG)
        monkeypatch.setenv("NOTIFIER_GITHUB_APP_ID", APP_ID)
        monkeypatch.setenv("NOTIFIER_GITHUB_INSTALLATION_ID", str(INSTALLATION))
        monkeypatch.setenv("NOTIFIER_GITHUB_PRIVATE_KEY_FILE", str(key_file))
        monkeypatch.setenv(
            "NOTIFIER_GITHUB_CLASSIC_TOKENS", f"ci={CLASSIC}, deploy={OTHER_CLASSIC}"
        )
        (config,) = load_settings().source_configs
        assert isinstance(config, GitHubSourceConfig)
        assert config.url == "https://api.github.com"
        assert config.app is not None
        assert (config.app.app_id, config.app.installation_id) == (APP_ID, INSTALLATION)
        assert config.app.private_key == pem(app_key)
        assert [(t.name, t.token) for t in config.classic_tokens] == [
            ("ci", CLASSIC),
            ("deploy", OTHER_CLASSIC),
        ]
        assert CLASSIC not in repr(config)
        assert "PRIVATE KEY" not in repr(config)

    def test_a_table_of_classic_tokens(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """In TOML, classic_tokens may be a table of name = token; the URL one of GHES."""
        path = tmp_path / "notifier.toml"
        path.write_text(
            '[sources."github:ghes"]\n'
            'url = "https://github.example.com/api/v3"\n'
            f'classic_tokens = {{ ci = "{CLASSIC}" }}\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
        _, config = load_settings().source_configs
        assert isinstance(config, GitHubSourceConfig)
        assert config.name == "github:ghes"
        assert config.org is None
        assert [t.name for t in config.classic_tokens] == ["ci"]
        assert web_root(config.url) == "https://github.example.com"

    def test_config_show_hides_the_secrets(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` prints neither the installation token nor a classic one."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "github")
        monkeypatch.setenv("NOTIFIER_GITHUB_ORG", ORG)
        monkeypatch.setenv("NOTIFIER_GITHUB_TOKEN", GIVEN_TOKEN)
        monkeypatch.setenv("NOTIFIER_GITHUB_CLASSIC_TOKENS", f"ci={CLASSIC}")
        assert cli.main(["config", "show"]) == 0
        captured = capsys.readouterr()
        assert GIVEN_TOKEN not in captured.out + captured.err
        assert CLASSIC not in captured.out + captured.err
        assert "NOTIFIER_GITHUB_CLASSIC_TOKENS" in captured.out

    @pytest.mark.parametrize(
        ("variables", "line"),
        [
            (
                {"ORG": ORG},
                (
                    "NOTIFIER_GITHUB_TOKEN: is required with org: an installation token, or the "
                    "app's app_id, installation_id and private_key"
                ),
            ),
            (
                {
                    "ORG": ORG,
                    "TOKEN": GIVEN_TOKEN,
                    "APP_ID": APP_ID,
                    "INSTALLATION_ID": "42",
                    "PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\\nx\\n",
                },
                (
                    "NOTIFIER_GITHUB_TOKEN: give token or the app's app_id, installation_id and "
                    "private_key, not both"
                ),
            ),
            (
                {"ORG": ORG, "APP_ID": APP_ID, "PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----"},
                (
                    "NOTIFIER_GITHUB_INSTALLATION_ID: is required with the other app options: "
                    "app_id, installation_id, private_key"
                ),
            ),
            (
                {"ORG": ORG, "APP_ID": APP_ID, "INSTALLATION_ID": "42", "PRIVATE_KEY": "abc"},
                "NOTIFIER_GITHUB_PRIVATE_KEY: expected the App's private key, PEM (-----BEGIN ...)",
            ),
            (
                {"TOKEN": GIVEN_TOKEN},
                (
                    "NOTIFIER_GITHUB_ORG: is required: the organisation whose fine-grained tokens "
                    "to read"
                ),
            ),
            (
                {"URL": "https://api.github.com"},
                "NOTIFIER_GITHUB_ORG: set org or classic_tokens (or both): what to watch",
            ),
            (
                {"CLASSIC_TOKENS": f"ci={CLASSIC},{OTHER_CLASSIC}"},
                "NOTIFIER_GITHUB_CLASSIC_TOKENS: entry 2 is not name=token (the name is missing)",
            ),
            (
                {"CLASSIC_TOKENS": f"ci={CLASSIC},ci={OTHER_CLASSIC}"},
                "NOTIFIER_GITHUB_CLASSIC_TOKENS: ci: named twice",
            ),
            (
                {"ORG": "acme/x", "TOKEN": GIVEN_TOKEN},
                "NOTIFIER_GITHUB_ORG='acme/x': 'acme/x' is not an organisation's login",
            ),
            (
                {"URL": "api.github.com", "CLASSIC_TOKENS": f"ci={CLASSIC}"},
                "NOTIFIER_GITHUB_URL='api.github.com': 'api.github.com' is not an http(s) URL",
            ),
        ],
    )
    def test_bad_options_name_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], line: str
    ) -> None:
        """Each bad option stops the start-up naming its variable, never quoting a token."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "github")
        for option, value in variables.items():
            monkeypatch.setenv(f"NOTIFIER_GITHUB_{option}", value)
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert raised.value.lines == [line]
        assert CLASSIC not in line
        assert OTHER_CLASSIC not in line


def test_web_roots() -> None:
    """The settings page lives beside the API: github.com, a GHES host, a GHE.com subdomain."""
    assert web_root("https://api.github.com") == "https://github.com"
    assert web_root("https://github.example.com/api/v3") == "https://github.example.com"
    assert web_root("https://api.octo.ghe.com") == "https://octo.ghe.com"
