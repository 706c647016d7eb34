"""The gitlab source against a loopback server answering as GitLab's REST API is documented.

Shapes, fields and headers come from:

- https://docs.gitlab.com/api/personal_access_tokens/ (``GET /personal_access_tokens``,
  filters ``state`` and ``revoked``; each token ``id``, ``name``, ``revoked``,
  ``created_at``, ``description``, ``scopes``, ``user_id``, ``last_used_at``, ``active``,
  ``expires_at`` as a date or null);
- https://docs.gitlab.com/api/project_access_tokens/ and
  https://docs.gitlab.com/api/group_access_tokens/ (``GET /projects/:id/access_tokens``,
  ``GET /groups/:id/access_tokens``, ``:id`` an id or a URL-encoded path, filter
  ``state``; the same fields and ``access_level``);
- https://docs.gitlab.com/api/rest/#pagination (``page``, ``per_page`` up to 100,
  ``x-next-page`` empty on the last page, ``x-page``, ``x-total``; keyset pages by
  ``Link: <...>; rel="next"``; totals left out past 10,000 rows);
- https://docs.gitlab.com/api/users/ (``GET /user``, ``GET /users/:id``: ``username``,
  ``email`` for administrators, ``public_email``, ``bot``);
- https://docs.gitlab.com/user/profile/personal_access_tokens/ ("expire on the date you
  define, at midnight, 00:00 AM UTC").
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from notifier import cli
from notifier.config.parsing import ConfigError
from notifier.config.settings import load_settings
from notifier.core.clock import FixedClock
from notifier.core.messages import sentence
from notifier.core.model import CredentialKind, NoticeKind
from notifier.db.database import Database
from notifier.sinks.payload import payload
from notifier.sources import Inventory, PartlyReadable, SourceError
from notifier.sources.gitlab import PARALLEL_LOOKUPS, GitLabSource, GitLabSourceConfig
from notifier.testing import RecordingSink
from tests.conftest import sqlite_database
from tests.integration.test_sources import checker

SECRET = "glpat-NeverShownAnywhere0123"
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday morning, UTC
DAY = timedelta(days=1)
TOKENS = "/api/v4/personal_access_tokens"
ADMIN = {
    "id": 1,
    "username": "root",
    "name": "Administrator",
    "state": "active",
    "email": "admin@example.com",
    "is_admin": True,
    "bot": False,
}
database = sqlite_database


def day(offset: int) -> str:
    """The date *offset* days from NOW's, as GitLab writes ``expires_at``."""
    return (NOW.date() + timedelta(days=offset)).isoformat()


def midnight(offset: int) -> datetime:
    """00:00 UTC of that date: when GitLab stops accepting a token expiring on it."""
    moment = NOW + timedelta(days=offset)
    return moment.replace(hour=0, minute=0)


def pat(token_id: int, **fields: Any) -> dict[str, Any]:
    """A personal access token as ``GET /personal_access_tokens`` lists it."""
    return {
        "id": token_id,
        "name": f"token-{token_id}",
        "revoked": False,
        "created_at": "2026-01-05T09:30:00.123Z",
        "description": "",
        "scopes": ["api"],
        "user_id": 3,
        "last_used_at": None,
        "active": True,
        "expires_at": day(30),
    } | fields


def access_token(token_id: int, **fields: Any) -> dict[str, Any]:
    """A project or group access token as ``GET /<place>/:id/access_tokens`` lists it."""
    return pat(token_id, user_id=141, access_level=40) | fields


def user(user_id: int, username: str, **fields: Any) -> dict[str, Any]:
    """``GET /users/:id`` as an administrator sees it (``email``), or ``public_email`` only."""
    return {
        "id": user_id,
        "username": username,
        "name": username.title(),
        "state": "active",
        "bot": False,
        "public_email": "",
    } | fields


def source(server: HTTPServer, **options: Any) -> GitLabSource:
    return GitLabSource(
        GitLabSourceConfig(
            name=options.pop("name", "gitlab"),
            url=server.url_for("").rstrip("/"),
            token=SECRET,
            projects=options.pop("projects", ()),
            groups=options.pop("groups", ()),
            personal=options.pop("personal", True),
            ca_file=None,
            timeout=options.pop("timeout", timedelta(seconds=2)),
        ),
        sleep=options.pop("sleep", lambda _: None),
    )


def read(server: HTTPServer, **options: Any) -> dict[str, Any]:
    watcher = source(server, **options)
    try:
        return dict(watcher.read(NOW))
    finally:
        watcher.close()


def answer_me(server: HTTPServer, me: dict[str, Any] = ADMIN) -> None:
    server.expect_request("/api/v4/user").respond_with_json(me)


def answer_tokens(server: HTTPServer, tokens: list[dict[str, Any]]) -> None:
    """One page of personal access tokens (the last: ``X-Next-Page`` empty)."""
    server.expect_request(TOKENS).respond_with_json(
        tokens, headers={"X-Page": "1", "X-Next-Page": "", "X-Per-Page": "100"}
    )


def answer_users(server: HTTPServer, *users: dict[str, Any]) -> None:
    for entry in users:
        server.expect_request(f"/api/v4/users/{entry['id']}").respond_with_json(entry)


def requested(server: HTTPServer, path: str) -> list[dict[str, str]]:
    """The query of each request the server had for *path*, in order."""
    return [dict(request.args) for request, _ in server.log if request.path == path]


class TestPersonalTokens:
    def test_pages_follow_x_next_page(self, httpserver: HTTPServer) -> None:
        """Three pages of 100 at most, each asked with the same filters and the next page."""
        answer_me(httpserver)
        pages = [[pat(1), pat(2)], [pat(3)], [pat(4)]]
        for number, rows in enumerate(pages, start=1):
            query = {"state": "active", "revoked": "false", "per_page": "100"}
            if number > 1:
                query["page"] = str(number)
            httpserver.expect_request(TOKENS, query_string=query).respond_with_json(
                rows,
                headers={
                    "X-Page": str(number),
                    "X-Next-Page": str(number + 1) if number < len(pages) else "",
                    "X-Per-Page": "100",
                    "X-Total": "4",
                    "X-Total-Pages": "3",
                },
            )
        answer_users(httpserver, user(3, "alice", email="alice@example.com"))
        found = read(httpserver)
        assert list(found) == ["1", "2", "3", "4"]
        assert [q.get("page") for q in requested(httpserver, TOKENS)] == [None, "2", "3"]
        assert requested(httpserver, "/api/v4/users/3") == [{}]  # one lookup per user per pass

    def test_a_keyset_link_is_followed_without_x_next_page(self, httpserver: HTTPServer) -> None:
        """Where a list pages by ``Link: rel="next"`` only, the link is followed as given."""
        answer_me(httpserver)
        base = httpserver.url_for("/api/v4")
        httpserver.expect_request(
            TOKENS, query_string={"cursor": "eyJpZCI6IjIifQ"}
        ).respond_with_json([pat(3)])
        httpserver.expect_request(TOKENS).respond_with_json(
            [pat(1), pat(2)],
            headers={"Link": f'<{base}/personal_access_tokens?cursor=eyJpZCI6IjIifQ>; rel="next"'},
        )
        answer_users(httpserver, user(3, "alice"))
        assert list(read(httpserver)) == ["1", "2", "3"]

    def test_a_token_as_watched(self, httpserver: HTTPServer) -> None:
        """Id, name, owner's email, creation, expiry at 00:00Z, labels with the settings page."""
        answer_me(httpserver)
        answer_tokens(
            httpserver,
            [
                pat(
                    42,
                    name="deploy",
                    scopes=["read_api", "read_repository"],
                    last_used_at="2026-03-01T17:58:37.550Z",
                    expires_at=day(3),
                )
            ],
        )
        answer_users(httpserver, user(3, "alice", email="alice@example.com"))
        token = read(httpserver)["42"]
        assert (token.source, token.token_id, token.name) == ("gitlab", "42", "deploy")
        assert token.credential_kind is CredentialKind.TOKEN
        assert token.owner == "alice@example.com"
        assert token.expires_at == midnight(3)
        assert token.created_at == datetime(2026, 1, 5, 9, 30, 0, 123000, tzinfo=UTC)
        assert dict(token.labels) == {
            "type": "personal",
            "scopes": "read_api,read_repository",
            "last_used_at": "2026-03-01T17:58:37Z",
            "user": "alice",
            "url": f"{httpserver.url_for('').rstrip('/')}/admin/users/alice",
        }
        assert SECRET not in repr(token)

    def test_the_tokens_own_user_links_to_its_settings(self, httpserver: HTTPServer) -> None:
        """A non-administrator lists its own tokens: owner from /user, its settings page."""
        me = user(3, "alice", public_email="alice@example.org") | {"email": "alice@corp.example"}
        answer_me(httpserver, me)
        answer_tokens(httpserver, [pat(7)])
        token = read(httpserver)["7"]
        assert token.owner == "alice@corp.example"  # /user shows one's own email
        url = httpserver.url_for("").rstrip("/")
        assert token.labels["url"] == f"{url}/-/user_settings/personal_access_tokens"
        assert requested(httpserver, "/api/v4/users/3") == []  # no lookup for oneself

    @pytest.mark.parametrize(
        ("fields", "owner"),
        [
            ({"email": "bob@example.com", "public_email": "b@example.org"}, "bob@example.com"),
            ({"public_email": "b@example.org"}, "b@example.org"),  # not an administrator
            ({}, "bob"),  # no address shown: the username
            ({"bot": True, "email": "project_9_bot_x@noreply.example.com"}, "bob"),  # a bot
        ],
    )
    def test_owners(self, httpserver: HTTPServer, fields: dict[str, Any], owner: str) -> None:
        """The owner is the email an administrator sees, else the public email, else the name."""
        answer_me(httpserver)
        answer_tokens(httpserver, [pat(8, user_id=5)])
        answer_users(httpserver, user(5, "bob", **fields))
        assert read(httpserver)["8"].owner == owner

    def test_a_user_gone_leaves_the_token_without_owner(self, httpserver: HTTPServer) -> None:
        """A user lookup answered 404 gives no owner; the token is still watched."""
        answer_me(httpserver)
        answer_tokens(httpserver, [pat(8, user_id=5)])
        httpserver.expect_request("/api/v4/users/5").respond_with_json(
            {"message": "404 User Not Found"}, status=404
        )
        token = read(httpserver)["8"]
        assert token.owner is None
        assert token.labels["url"].endswith("/admin/users")

    def test_expiry_revocation_and_no_expiry(self, httpserver: HTTPServer) -> None:
        """Null never expires; expired today stays (00:00Z passed); yesterday's and revoked go."""
        answer_me(httpserver)
        answer_tokens(
            httpserver,
            [
                pat(1, expires_at=None),
                pat(2, expires_at=day(0), active=False),  # stopped working at 00:00Z today
                pat(3, expires_at=day(-1), active=False),  # an older GitLab ignoring state
                pat(4, revoked=True, active=False),
                pat(5, expires_at=day(2)),
            ],
        )
        answer_users(httpserver, user(3, "alice"))
        watcher = source(httpserver)
        try:
            in_window = watcher.window(NOW, 7 * DAY, DAY)
            found = {token.token_id: token for token in watcher.found()}
        finally:
            watcher.close()
        assert sorted(found) == ["1", "2", "5"]
        assert found["1"].expires_at is None
        assert found["2"].expires_at == midnight(0)
        assert [token.token_id for token in in_window] == ["2", "5"]


class TestPlaces:
    def test_a_project_by_path(self, httpserver: HTTPServer) -> None:
        """A project given as platform/api is asked as platform%2Fapi; its tokens carry it."""
        raw: list[str] = []

        def project(request: Request) -> Response:
            raw.append(request.environ["RAW_URI"])
            return Response(
                '{"id": 7, "path_with_namespace": "platform/api", "name": "api"}',
                content_type="application/json",
            )

        answer_me(httpserver)
        httpserver.expect_request("/api/v4/projects/platform/api").respond_with_handler(project)
        httpserver.expect_request(
            "/api/v4/projects/platform/api/access_tokens",
            query_string={"state": "active", "per_page": "100"},
        ).respond_with_json(
            [access_token(58, name="ci", access_level=30)], headers={"X-Next-Page": ""}
        )
        answer_users(httpserver, user(141, "project_7_bot_4f1c", bot=True))
        found = read(httpserver, personal=False, projects=("platform%2Fapi",))
        assert raw == ["/api/v4/projects/platform%2Fapi"]
        token = found["58"]
        assert token.owner == "project_7_bot_4f1c"
        assert dict(token.labels) == {
            "type": "project",
            "project": "platform/api",
            "scopes": "api",
            "access_level": "30",
            "role": "developer",
            "user": "project_7_bot_4f1c",
            "url": f"{httpserver.url_for('').rstrip('/')}/platform/api/-/settings/access_tokens",
        }

    def test_a_group_by_id(self, httpserver: HTTPServer) -> None:
        """A group is read without its projects; its settings page is under /groups/."""
        answer_me(httpserver)
        httpserver.expect_request(
            "/api/v4/groups/12", query_string={"with_projects": "false"}
        ).respond_with_json({"id": 12, "full_path": "platform", "name": "Platform"})
        httpserver.expect_request("/api/v4/groups/12/access_tokens").respond_with_json(
            [access_token(60, access_level=50)]
        )
        answer_users(httpserver, user(141, "group_12_bot_9a", bot=True))
        token = read(httpserver, personal=False, groups=("12",))["60"]
        assert (token.labels["type"], token.labels["group"], token.labels["role"]) == (
            "group",
            "platform",
            "owner",
        )
        url = httpserver.url_for("").rstrip("/")
        assert token.labels["url"] == f"{url}/groups/platform/-/settings/access_tokens"

    def test_revoked_and_old_access_tokens_are_left_out(self, httpserver: HTTPServer) -> None:
        """A revoked token and one expired before today are left out, as state=active does."""
        answer_me(httpserver)
        httpserver.expect_request("/api/v4/projects/7").respond_with_json(
            {"id": 7, "path_with_namespace": "platform/api"}
        )
        httpserver.expect_request("/api/v4/projects/7/access_tokens").respond_with_json(
            [
                access_token(42),
                access_token(43, revoked=True, active=False),  # the docs' second example
                access_token(44, expires_at=day(-3), active=False),
            ]
        )
        answer_users(httpserver, user(141, "project_7_bot_4f1c", bot=True))
        assert list(read(httpserver, personal=False, projects=("7",))) == ["42"]

    def test_a_bot_token_is_reported_as_its_places(self, httpserver: HTTPServer) -> None:
        """The administrator's list holds the project's bot token too: it is the project's."""
        answer_me(httpserver)
        answer_tokens(httpserver, [pat(58, user_id=141), pat(59)])
        httpserver.expect_request("/api/v4/projects/7").respond_with_json(
            {"id": 7, "path_with_namespace": "platform/api"}
        )
        httpserver.expect_request("/api/v4/projects/7/access_tokens").respond_with_json(
            [access_token(58)]
        )
        answer_users(httpserver, user(141, "project_7_bot_4f1c", bot=True), user(3, "alice"))
        found = read(httpserver, projects=("7",))
        assert {token_id: t.labels["type"] for token_id, t in found.items()} == {
            "58": "project",
            "59": "personal",
        }

    def test_a_missing_project_fails_alone(
        self, httpserver: HTTPServer, database: Database
    ) -> None:
        """A 404 project is the pass's partial failure (exit 75); the group's token warns."""
        answer_me(httpserver)
        httpserver.expect_request("/api/v4/projects/platform/gone").respond_with_json(
            {"message": "404 Project Not Found"}, status=404
        )
        httpserver.expect_request("/api/v4/groups/platform").respond_with_json(
            {"id": 12, "full_path": "platform"}
        )
        httpserver.expect_request("/api/v4/groups/platform/access_tokens").respond_with_json(
            [access_token(60, name="release", expires_at=day(2))]
        )
        answer_users(httpserver, user(141, "group_12_bot_9a", bot=True))
        watcher = source(
            httpserver, personal=False, projects=("platform%2Fgone",), groups=("platform",)
        )
        sink = RecordingSink()
        try:
            with capture_logs() as logs:
                report = checker(database, FixedClock(NOW), [watcher], sink).run()
        finally:
            watcher.close()
        assert isinstance(watcher, PartlyReadable)
        assert report.failed_sources == ["gitlab"]
        assert report.degraded  # notifier check exits 75
        assert [n.token_name for n in sink.received] == ["release"]
        (failed,) = [entry for entry in logs if entry["event"] == "source.failed"]
        assert failed["partial"] is True
        url = httpserver.url_for("").rstrip("/")
        assert failed["reason"] == (
            f"{url}/api/v4/projects/platform%2Fgone: 404 404 Project Not Found"
        )

    def test_a_project_whose_tokens_may_not_be_read(self, httpserver: HTTPServer) -> None:
        """GitLab answers 401 to a non-Maintainer: that project's problem, not the source's."""
        answer_me(httpserver)
        answer_tokens(httpserver, [pat(9)])
        answer_users(httpserver, user(3, "alice"))
        httpserver.expect_request("/api/v4/projects/7").respond_with_json(
            {"id": 7, "path_with_namespace": "platform/api"}
        )
        httpserver.expect_request("/api/v4/projects/7/access_tokens").respond_with_json(
            {"message": "401 Unauthorized"}, status=401
        )
        watcher = source(httpserver, projects=("7",))
        try:
            found = watcher.read(NOW)
            problems = watcher.problems()
        finally:
            watcher.close()
        assert list(found) == ["9"]
        url = httpserver.url_for("").rstrip("/")
        assert problems == (
            (
                f"{url}/api/v4/projects/7/access_tokens: 401 the token may not read this "
                "project's access tokens (it needs the Maintainer role)"
            ),
        )

    def test_a_place_that_fails_later_keeps_what_it_listed(
        self, httpserver: HTTPServer, database: Database
    ) -> None:
        """A project unreadable on the next pass neither closes nor hides its token's loop."""
        answer_me(httpserver)
        httpserver.expect_oneshot_request("/api/v4/projects/7").respond_with_json(
            {"id": 7, "path_with_namespace": "platform/api"}
        )
        httpserver.expect_oneshot_request("/api/v4/projects/7/access_tokens").respond_with_json(
            [access_token(42, name="ci", expires_at=day(3))]
        )
        answer_users(httpserver, user(141, "project_7_bot_4f1c", bot=True))
        watcher = source(httpserver, personal=False, projects=("7",))
        clock = FixedClock(NOW)
        sink = RecordingSink()
        try:
            run = checker(database, clock, [watcher], sink).run
            assert not run().degraded
            httpserver.expect_request("/api/v4/projects/7").respond_with_json(
                {"message": "500 Internal Server Error"}, status=500
            )
            clock.advance(DAY)
            report = run()
            assert [t.token_id for t in watcher.found()] == ["42"]
        finally:
            watcher.close()
        assert report.failed_sources == ["gitlab"]
        assert [n.kind for n in sink.received] == [NoticeKind.EXPIRING, NoticeKind.EXPIRING]


class TestFailures:
    def test_a_refused_token_fails_the_source(
        self, httpserver: HTTPServer, database: Database
    ) -> None:
        """A 401 from /user fails the whole source, logged without the token."""
        httpserver.expect_request("/api/v4/user").respond_with_json(
            {"message": "401 Unauthorized"}, status=401
        )
        watcher = source(httpserver, projects=("7",))
        try:
            with capture_logs() as logs:
                report = checker(database, FixedClock(NOW), [watcher], RecordingSink()).run()
        finally:
            watcher.close()
        assert report.failed_sources == ["gitlab"]
        (failed,) = [entry for entry in logs if entry["event"] == "source.failed"]
        url = httpserver.url_for("").rstrip("/")
        assert failed["reason"] == (
            f"{url}/api/v4/user: 401 the token was refused (expired, revoked or wrong)"
        )
        assert "partial" not in failed
        assert SECRET not in repr(logs)
        assert requested(httpserver, "/api/v4/projects/7") == []

    @pytest.mark.parametrize(
        ("status", "body", "said"),
        [
            (403, {"message": "403 Forbidden - insufficient_scope"}, "403 the token may not"),
            (500, {"message": "500 Internal Server Error"}, "500 500 Internal Server Error"),
        ],
    )
    def test_the_personal_list_failing_fails_the_source(
        self, httpserver: HTTPServer, status: int, body: dict[str, str], said: str
    ) -> None:
        """The instance's own list failing (403 scope, 5xx) is a SourceError, not a place's."""
        answer_me(httpserver)
        httpserver.expect_request(TOKENS).respond_with_json(body, status=status)
        with pytest.raises(SourceError, match=said) as failure:
            read(httpserver)
        assert SECRET not in str(failure.value)

    def test_retry_after_is_waited_out(self, httpserver: HTTPServer) -> None:
        """A 429 with Retry-After is waited out, bounded by the timeout, then asked again."""
        waits: list[float] = []
        answer_me(httpserver)
        httpserver.expect_oneshot_request(TOKENS).respond_with_json(
            {"message": "Retry later"}, status=429, headers={"Retry-After": "30"}
        )
        answer_tokens(httpserver, [pat(1)])
        answer_users(httpserver, user(3, "alice"))
        assert list(read(httpserver, sleep=waits.append)) == ["1"]
        assert waits == [2.0]  # asked for 30 s, bounded by the 2 s timeout

    def test_a_timeout(self, httpserver: HTTPServer) -> None:
        """An answer slower than the timeout is a SourceError naming the timeout."""

        def slow(_: Request) -> Response:
            time.sleep(1.5)
            return Response("{}", content_type="application/json")

        httpserver.expect_request("/api/v4/user").respond_with_handler(slow)
        with pytest.raises(SourceError, match=r"/api/v4/user: ReadTimeout"):
            read(httpserver, timeout=timedelta(seconds=0.3))

    def test_a_page_that_is_not_a_list(self, httpserver: HTTPServer) -> None:
        """An answer of the wrong shape is a SourceError, not a crash."""
        answer_me(httpserver)
        httpserver.expect_request(TOKENS).respond_with_json({"tokens": []})
        with pytest.raises(SourceError, match="the answer is not a list of tokens"):
            read(httpserver)


class TestPass:
    def test_the_warn_line_and_the_link_in_the_payload(
        self, httpserver: HTTPServer, database: Database
    ) -> None:
        """A token expiring in 2 d 16 h warns 'less than 3 days'; the payload links its page."""
        answer_me(httpserver)
        answer_tokens(httpserver, [pat(42, name="deploy", expires_at=day(3))])
        answer_users(httpserver, user(3, "alice", email="alice@example.com"))
        watcher = source(httpserver)
        sink = RecordingSink()
        try:
            report = checker(database, FixedClock(NOW), [watcher], sink).run()
        finally:
            watcher.close()
        assert isinstance(watcher, Inventory)
        assert report.found == {"gitlab": 1}
        (notice,) = sink.received
        assert sentence(notice, "day") == (
            "Warn: API Token deploy (ID 42) will expire in less than 3 days."
        )
        assert notice.owner == "alice@example.com"
        body = payload(notice, sent_at=NOW, window=7 * DAY, slice_name="day")
        assert body["token"]["labels"]["url"].endswith("/admin/users/alice")
        assert body["token"]["expires_at"] == "2026-03-05T00:00:00Z"

    def test_the_expired_notice_on_the_expiry_day(
        self, httpserver: HTTPServer, database: Database
    ) -> None:
        """Warned the day before, the token (active: false at 00:00Z) gets its expired notice."""
        rows = [pat(42, name="deploy", expires_at=day(1))]

        def tokens(_: Request) -> Response:
            return Response(
                json.dumps(rows),
                content_type="application/json",
                headers={"X-Next-Page": ""},
            )

        answer_me(httpserver)
        httpserver.expect_request(TOKENS).respond_with_handler(tokens)
        answer_users(httpserver, user(3, "alice", email="alice@example.com"))
        watcher = source(httpserver)
        clock = FixedClock(NOW)
        sink = RecordingSink()
        try:
            run = checker(database, clock, [watcher], sink).run
            run()
            clock.advance(DAY)  # 08:00 on the expiry date: it stopped working at 00:00Z
            rows[0] = rows[0] | {"active": False}
            run()
        finally:
            watcher.close()
        assert [n.kind for n in sink.received] == [NoticeKind.EXPIRING, NoticeKind.EXPIRED]


def test_lookups_run_side_by_side() -> None:
    """Each owner lookup waits for seven others: looked up one by one, none would answer.

    The barrier breaks after 8 s and the server then fails the lookup, so a sequential read
    fails instead of hanging; no time is measured.
    """
    users = 2 * PARALLEL_LOOKUPS
    barrier = threading.Barrier(PARALLEL_LOOKUPS, timeout=8)

    def lookup(request: Request) -> Response:
        user_id = int(request.path.rsplit("/", 1)[1])
        barrier.wait()
        return Response(
            json.dumps(user(user_id, f"user{user_id}")),
            content_type="application/json",
        )

    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    try:
        answer_me(server)
        answer_tokens(server, [pat(100 + n, user_id=10 + n) for n in range(users)])
        server.expect_request(re.compile(r"/api/v4/users/\d+")).respond_with_handler(lookup)
        found = read(server, timeout=timedelta(seconds=10))
    finally:
        server.clear()
        server.stop()
    assert len(found) == users
    assert found["107"].owner == "user17"


class TestOptions:
    def test_from_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """NOTIFIER_GITLAB_<OPTION>; plain and encoded paths are both sent encoded, once."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "store,gitlab")
        monkeypatch.setenv("NOTIFIER_GITLAB_URL", "https://gitlab.example.com/")
        monkeypatch.setenv("NOTIFIER_GITLAB_TOKEN", SECRET)
        monkeypatch.setenv("NOTIFIER_GITLAB_PROJECTS", "42, platform/api,platform%2Fapi")
        monkeypatch.setenv("NOTIFIER_GITLAB_GROUPS", "platform/infra")
        monkeypatch.setenv("NOTIFIER_GITLAB_PERSONAL", "false")
        monkeypatch.setenv("NOTIFIER_GITLAB_TIMEOUT", "3s")
        _, gitlab = load_settings().source_configs
        assert isinstance(gitlab, GitLabSourceConfig)
        assert gitlab.url == "https://gitlab.example.com"
        assert gitlab.token == SECRET
        assert gitlab.projects == ("42", "platform%2Fapi")
        assert gitlab.groups == ("platform%2Finfra",)
        assert gitlab.personal is False
        assert gitlab.timeout == timedelta(seconds=3)
        assert SECRET not in repr(gitlab)

    def test_defaults_and_a_token_from_a_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """gitlab:ops reads NOTIFIER_GITLAB_OPS_TOKEN_FILE; personal on, 10 s by default."""
        secret = tmp_path / "token"
        secret.write_text(SECRET + "\n")
        monkeypatch.setenv("NOTIFIER_SOURCES", "gitlab:ops")
        monkeypatch.setenv("NOTIFIER_GITLAB_OPS_URL", "http://127.0.0.1:8929")
        monkeypatch.setenv("NOTIFIER_GITLAB_OPS_TOKEN_FILE", str(secret))
        (gitlab,) = load_settings().source_configs
        assert isinstance(gitlab, GitLabSourceConfig)
        assert (gitlab.name, gitlab.token, gitlab.personal) == ("gitlab:ops", SECRET, True)
        assert (gitlab.projects, gitlab.groups) == ((), ())
        assert gitlab.timeout == timedelta(seconds=10)

    def test_from_the_config_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A [sources."gitlab:ops"] table: lists as arrays, personal as a boolean."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sources."gitlab:ops"]\n'
            'url = "https://gitlab.example.com"\n'
            'projects = ["platform/api", "7"]\n'
            "personal = false\n"
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        monkeypatch.setenv("NOTIFIER_GITLAB_OPS_TOKEN", SECRET)
        _, gitlab = load_settings().source_configs
        assert isinstance(gitlab, GitLabSourceConfig)
        assert gitlab.projects == ("platform%2Fapi", "7")
        assert gitlab.personal is False

    def test_config_show_hides_the_token(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` never prints the GitLab token."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "gitlab")
        monkeypatch.setenv("NOTIFIER_GITLAB_URL", "https://gitlab.example.com")
        monkeypatch.setenv("NOTIFIER_GITLAB_TOKEN", SECRET)
        assert cli.main(["config", "show"]) == 0
        captured = capsys.readouterr()
        assert SECRET not in captured.out + captured.err

    @pytest.mark.parametrize(
        ("variables", "line"),
        [
            ({}, "NOTIFIER_GITLAB_URL: is required: the server's URL"),
            (
                {"NOTIFIER_GITLAB_URL": "https://gitlab.example.com/api/v4"},
                "NOTIFIER_GITLAB_URL='https://gitlab.example.com/api/v4': give the instance's URL",
            ),
            ({"NOTIFIER_GITLAB_URL": "gitlab.example.com"}, "NOTIFIER_GITLAB_URL='gitlab."),
            (
                {"NOTIFIER_GITLAB_URL": "https://gitlab.example.com"},
                "NOTIFIER_GITLAB_TOKEN: is required: a token with the read_api scope",
            ),
            (
                {"NOTIFIER_GITLAB_PROJECTS": "platform api"},
                "NOTIFIER_GITLAB_PROJECTS='platform api': 'platform api' is not an id or a full",
            ),
            (
                {"NOTIFIER_GITLAB_GROUPS": "a//b"},
                "NOTIFIER_GITLAB_GROUPS='a//b': 'a//b' is not an id or a full path",
            ),
            (
                {"NOTIFIER_GITLAB_PERSONAL": "maybe"},
                "NOTIFIER_GITLAB_PERSONAL='maybe': expected true or false",
            ),
            (
                {"NOTIFIER_GITLAB_PERSONAL": "no"},
                "NOTIFIER_GITLAB_PROJECTS: nothing to watch: set projects or groups, or personal",
            ),
            ({"NOTIFIER_GITLAB_CA_FILE": "/nope"}, "NOTIFIER_GITLAB_CA_FILE='/nope': '/nope' is"),
            ({"NOTIFIER_GITLAB_TIMEOUT": "soon"}, "NOTIFIER_GITLAB_TIMEOUT='soon': "),
        ],
    )
    def test_bad_values_name_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], line: str
    ) -> None:
        """Each refusal names the variable it came from (the start-up then exits 78)."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "gitlab")
        if "NOTIFIER_GITLAB_URL" not in variables and variables:
            monkeypatch.setenv("NOTIFIER_GITLAB_URL", "https://gitlab.example.com")
            monkeypatch.setenv("NOTIFIER_GITLAB_TOKEN", SECRET)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert any(problem.startswith(line) for problem in raised.value.lines), raised.value.lines
        assert SECRET not in repr(raised.value.lines)


@pytest.fixture(autouse=True)
def _no_stray_requests(httpserver: HTTPServer) -> Iterator[None]:
    """Every request a test's server had was one it expected."""
    yield
    httpserver.check_assertions()
