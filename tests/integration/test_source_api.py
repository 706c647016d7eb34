"""notifier/sources/api.py, the HTTP client of the API sources, against a loopback server.

Pages by RFC 8288 Link headers (as GitHub and GitLab send them), 429 with Retry-After,
401/403/404/5xx and timeouts as SourceErrors that never hold the token.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from notifier.config.options import OptionError
from notifier.sources import SourceError
from notifier.sources.api import ApiClient, check_url, link_next, parse_time

SECRET = "glpat-secret-never-shown"


def client(server: HTTPServer, **options: Any) -> ApiClient:
    return ApiClient(
        base=server.url_for("/api/v4"),
        headers={"PRIVATE-TOKEN": SECRET},
        timeout=options.pop("timeout", timedelta(seconds=2)),
        sleep=options.pop("sleep", lambda _: None),
    )


def test_pages_follow_the_link_header(httpserver: HTTPServer) -> None:
    base = httpserver.url_for("/api/v4")
    httpserver.expect_ordered_request("/api/v4/items", query_string="per_page=2").respond_with_json(
        [1, 2], headers={"Link": f'<{base}/items?page=2&per_page=2>; rel="next", <x>; rel="last"'}
    )
    httpserver.expect_ordered_request(
        "/api/v4/items", query_string="page=2&per_page=2"
    ).respond_with_json([3], headers={"Link": f'<{base}/items?page=1&per_page=2>; rel="first"'})
    api = client(httpserver)
    try:
        assert list(api.pages("items", params={"per_page": 2})) == [[1, 2], [3]]
    finally:
        api.close()
    httpserver.check_assertions()


def test_a_next_page_on_another_host_is_not_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v4/items").respond_with_json(
        [1], headers={"Link": '<https://elsewhere.example.com/items?page=2>; rel="next"'}
    )
    api = client(httpserver)
    try:
        with pytest.raises(SourceError, match="another host"):
            list(api.pages("items"))
    finally:
        api.close()


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (401, {"message": "401 Unauthorized"}, "401 the token was refused"),
        (403, {"message": "403 Forbidden - admin only"}, "403 the token may not read this"),
        (404, {"message": "404 Project Not Found"}, "404 404 Project Not Found"),
        (500, "<html>oops</html>", "500 INTERNAL SERVER ERROR"),
    ],
)
def test_failures_say_what_was_answered_never_the_token(
    httpserver: HTTPServer, status: int, body: Any, said: str
) -> None:
    if isinstance(body, dict):
        httpserver.expect_request("/api/v4/items").respond_with_json(body, status=status)
    else:
        httpserver.expect_request("/api/v4/items").respond_with_data(body, status=status)
    api = client(httpserver)
    try:
        with pytest.raises(SourceError) as failure:
            api.get_json("items", params={"state": "active"})
    finally:
        api.close()
    assert said in str(failure.value)
    assert SECRET not in str(failure.value)
    assert "state=active" not in str(failure.value)  # the query is left out of errors


def test_retry_after_is_waited_out_bounded_by_the_timeout(httpserver: HTTPServer) -> None:
    waits: list[float] = []
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    httpserver.expect_ordered_request("/api/v4/items").respond_with_json(
        {"message": "slow down"}, status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request("/api/v4/items").respond_with_json(
        {"message": "slow down"}, status=503, headers={"Retry-After": later}
    )
    httpserver.expect_ordered_request("/api/v4/items").respond_with_json([1])
    api = client(httpserver, sleep=waits.append)
    try:
        assert api.get_json("items") == [1]
    finally:
        api.close()
    assert waits == [1.0, 2.0]  # seconds as given; an HTTP date an hour off: the 2 s timeout


def test_a_timeout_is_a_source_error(httpserver: HTTPServer) -> None:
    def slow(_: Request) -> Response:
        time.sleep(1.5)
        return Response("[]", content_type="application/json")

    httpserver.expect_request("/api/v4/items").respond_with_handler(slow)
    api = client(httpserver, timeout=timedelta(seconds=0.3))
    try:
        with pytest.raises(SourceError, match="Timeout"):
            api.get_json("items")
    finally:
        api.close()


def test_link_next_reads_rel_among_others() -> None:
    class Answer:
        def __init__(self, link: str) -> None:
            self.headers = {"Link": link}

    assert link_next(Answer('<a>; rel="prev", <b>; rel="next"')) == "b"  # type: ignore[arg-type]
    assert link_next(Answer("<a>; rel=next")) == "a"  # type: ignore[arg-type]
    assert link_next(Answer('<a>; rel="prev next"')) == "a"  # type: ignore[arg-type]
    assert link_next(Answer('<a>; rel="last"')) is None  # type: ignore[arg-type]
    assert link_next(Answer('<a>; rel="nextish"')) is None  # type: ignore[arg-type]


def test_times_and_urls() -> None:
    assert parse_time("2026-12-02T10:00:00.123456789Z", where="x", field="f") == datetime(
        2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_time("2026-12-02T10:00:00", where="x", field="f") == datetime(
        2026, 12, 2, 10, tzinfo=UTC
    )
    assert parse_time(None, where="x", field="f") is None
    with pytest.raises(SourceError, match="f: 'soon' is not a time"):
        parse_time("soon", where="x", field="f")
    assert check_url("url", " https://gitlab.example.com/ ", "e") == "https://gitlab.example.com"
    for bad, said in [
        ("ftp://x", "not an http"),
        ("https://user:pw@x", "user or password"),
        ("https://x/?private_token=1", "query"),
        ("", "is required"),
    ]:
        with pytest.raises(OptionError, match=said):
            check_url("url", bad, "https://gitlab.example.com")
