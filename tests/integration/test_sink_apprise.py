"""The apprise sink with a json:// URL aimed at a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from notifier.config.options import OptionError
from notifier.core.clock import FixedClock
from notifier.core.model import Notice, NoticeKind
from notifier.db.database import Database
from notifier.delivery.checker import Checker
from notifier.sinks import EVERYTHING, Outcome
from notifier.sinks.apprise import AppriseSink
from notifier.sinks.config import check_sink
from notifier.testing import make_policy
from notifier.tokens.lifecycle import TokenStore
from tests.conftest import sqlite_database
from tests.receivers import FAST, InFlight, threaded_httpserver

DAY = timedelta(days=1)
POLICY = make_policy()


# The receiver, not the backend, is under test here: SQLite only.
database = sqlite_database
threaded = threaded_httpserver


def apprise_sink(url: str, stop: threading.Event | None = None, **options: str) -> AppriseSink:
    config = check_sink("apprise:chat", {"urls": url, **options})
    return AppriseSink(
        "apprise:chat",
        options=dict(config.options),
        route=EVERYTHING,
        retry=FAST,
        slice_name="day",
        stop=stop,
    )


def test_json_url_reaches_the_receiver(
    httpserver: HTTPServer, database: Database, clock: FixedClock
) -> None:
    """Apprise posts the warn sentence to a json:// endpoint; the result is read per URL."""
    bodies: list[dict[str, str]] = []

    def receive(request: Request) -> Response:
        bodies.append(json.loads(request.get_data()))
        return Response("", status=200)

    httpserver.expect_request("/notify", method="POST").respond_with_handler(receive)
    TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None).create(
        name="chat-bot", expires_at=clock.now() + DAY * 2
    )
    url = f"json://127.0.0.1:{httpserver.port}/notify"
    report = Checker(
        database=database,
        sinks=[apprise_sink(url)],
        policy=POLICY,
        clock=clock,
        lease=timedelta(minutes=5),
    ).run()
    assert report.sent == {"apprise:chat": 1}
    (body,) = bodies
    assert body["title"] == "[notifier] API token chat-bot: expiring"
    assert body["message"].startswith("Warn: API Token chat-bot (ID ")
    assert "will expire in less than 3 days." in body["message"]


def test_a_failing_url_is_transient(httpserver: HTTPServer, clock: FixedClock) -> None:
    """A URL that answers 500 fails the notice transiently, naming only its scheme."""
    httpserver.expect_request("/notify").respond_with_data("no", status=500)
    sink = apprise_sink(f"json://127.0.0.1:{httpserver.port}/notify?secret=xyz")
    (outcome,) = sink.deliver([_notice(clock)])
    assert not outcome.ok
    assert not outcome.permanent
    assert outcome.error == "apprise: the json:// service failed"


def test_template_and_title_are_configurable(httpserver: HTTPServer, clock: FixedClock) -> None:
    """A custom title and body template replace the shipped ones."""
    bodies: list[dict[str, str]] = []

    def receive(request: Request) -> Response:
        bodies.append(json.loads(request.get_data()))
        return Response("ok")

    httpserver.expect_request("/notify").respond_with_handler(receive)
    sink = apprise_sink(
        f"json://127.0.0.1:{httpserver.port}/notify",
        title="Token {{ name }} ({{ days_left }}d)",
    )
    assert sink.deliver([_notice(clock)])[0].ok
    assert bodies[0]["title"] == "Token chat-bot (3d)"


def test_unknown_scheme_is_a_config_error() -> None:
    """A URL Apprise does not understand is refused when the sink is configured."""
    with pytest.raises(OptionError, match="nosuch://"):
        check_sink("apprise", {"urls": "nosuch://x"})


class TestConcurrency:
    """Apprise's calls go out off the pass's thread, up to ``concurrency`` at once."""

    def test_notices_are_sent_several_at_once(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """With concurrency 4, a json:// receiver sees several messages at once, never five.

        Each answer takes 50 ms: room for all four in flight (the sink sends no more at once
        than its wait for the network leaves room for); how many it reaches at a time depends
        on the machine, so the test asks for more than one, and never more than four.
        """
        in_flight = InFlight()
        bodies: list[str] = []

        def receive(request: Request) -> Response:
            with in_flight.request():
                time.sleep(0.05)
            bodies.append(json.loads(request.get_data())["message"])
            return Response("", status=200)

        threaded.expect_request("/notify").respond_with_handler(receive)
        sink = apprise_sink(f"json://127.0.0.1:{threaded.port}/notify", concurrency="4")
        outcomes = sink.deliver([_notice(clock, index) for index in range(12)])
        assert outcomes == [Outcome.sent()] * 12
        assert 1 < in_flight.most <= 4
        assert len(bodies) == 12

    def test_a_plugin_that_paces_itself_gets_one_message_at_a_time(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """Mattermost's plugin waits between its requests: its URL is never sent two at once."""
        in_flight = InFlight()

        def receive(request: Request) -> Response:
            del request
            with in_flight.request():
                threading.Event().wait(0.03)  # time for a second request to overlap, if sent
            return Response("ok", status=200)

        threaded.expect_request("/hooks/abcdefghijklmnopqrstuvwxyz").respond_with_handler(receive)
        sink = apprise_sink(
            f"mmost://127.0.0.1:{threaded.port}/abcdefghijklmnopqrstuvwxyz", concurrency="4"
        )
        outcomes = sink.deliver([_notice(clock, index) for index in range(4)])
        assert outcomes == [Outcome.sent()] * 4
        assert in_flight.most == 1

    def test_a_stop_interrupts_calls_in_flight(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """SIGTERM while two calls hang: the delivery ends after the grace, nothing sent."""
        stop, answer = threading.Event(), threading.Event()
        together = threading.Barrier(2, timeout=5)

        def hang(request: Request) -> Response:
            del request
            if together.wait() == 0:
                stop.set()
            answer.wait(timeout=30)
            return Response("", status=200)

        threaded.expect_request("/notify").respond_with_handler(hang)
        sink = apprise_sink(f"json://127.0.0.1:{threaded.port}/notify", stop, concurrency="2")
        started = time.monotonic()
        outcomes = sink.deliver([_notice(clock, index) for index in range(6)])
        elapsed = time.monotonic() - started
        answer.set()
        assert elapsed < 4, f"the delivery took {elapsed:.1f}s"
        assert outcomes == [Outcome.interrupted()] * 6


def _notice(clock: FixedClock, index: int = 0) -> Notice:
    return Notice(
        id=f"{index:032x}",
        kind=NoticeKind.EXPIRING,
        sink="apprise:chat",
        source="store",
        token_id="abc",
        token_name="chat-bot",
        owner=None,
        expires_at=clock.now() + DAY * 2,
        days_left=3,
        seconds_left=2 * 86400,
        threshold=None,
    )
