"""The webhook sink against a real HTTP server on 127.0.0.1, checked as a receiver would."""

from __future__ import annotations

import base64
import json
import random
import select as selecting
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trustme
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs
from werkzeug import Request, Response

from notifier.core.clock import FixedClock
from notifier.core.model import Notice, NoticeKind
from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow
from notifier.delivery.checker import Checker, PassReport
from notifier.sinks import EVERYTHING, Outcome, Route
from notifier.sinks.log import LogSink
from notifier.sinks.registry import Retry
from notifier.sinks.retrying import DEFAULT_CONCURRENCY
from notifier.sinks.webhook import WebhookSink, _WholeRequests
from notifier.testing import make_policy
from notifier.tokens.lifecycle import TokenStore
from tests.conftest import sqlite_database
from tests.receivers import FAST, InFlight, free_port, recent_clock, threaded_httpserver

# A clock near the real now: a receiver refuses webhook timestamps more than 5 minutes old.
clock = recent_clock
SECRET = "whsec_Mi8JO7oq/kVHutsJmJIFB9PN4mfLBS9csiUzYNB3ODo="
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "webhook-payload.schema.json").read_text()
)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = make_policy()


# The receiver, not the backend, is under test here: SQLite only.
database = sqlite_database
threaded = threaded_httpserver


class Receiver:
    """Answers webhook POSTs with a scripted status, and keeps what it got."""

    def __init__(
        self, statuses: list[int] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.statuses = list(statuses or [])
        self.headers = headers or {}
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.requests.append((dict(request.headers), request.get_data(), status))
        return Response("", status=status, headers=self.headers if status != 200 else {})

    def delivered(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, status in self.requests if status == 200]


def sink(
    server: HTTPServer,
    clock: FixedClock,
    *,
    path: str = "/hook",
    route: Route = EVERYTHING,
    name: str = "webhook",
    concurrency: int = DEFAULT_CONCURRENCY,
    retry: Retry = FAST,
    stop: threading.Event | None = None,
) -> WebhookSink:
    return WebhookSink(
        name,
        url=server.url_for(path),
        secret=SECRET,
        timeout=timedelta(seconds=5),
        route=route,
        retry=retry,
        clock=clock,
        window=POLICY.detection_window,
        slice_name="day",
        concurrency=concurrency,
        stop=stop,
    )


def unsigned(url: str, clock: FixedClock, *, name: str = "webhook") -> WebhookSink:
    """A webhook sink without a signing secret, at any URL."""
    return WebhookSink(
        name,
        url=url,
        secret=None,
        timeout=timedelta(seconds=5),
        route=EVERYTHING,
        retry=FAST,
        clock=clock,
        window=DAY,
        slice_name="day",
    )


def notices(clock: FixedClock, names: list[str]) -> list[Notice]:
    """One expiring notice per name, the name as its token's."""
    return [
        Notice(
            id=f"{index:032x}",
            kind=NoticeKind.EXPIRING,
            sink="webhook",
            source="store",
            token_id=f"tk{index:04d}",
            token_name=name,
            owner=None,
            expires_at=clock.now() + DAY * 2,
            days_left=3,
            seconds_left=2 * 86400,
            threshold=None,
        )
        for index, name in enumerate(names)
    ]


def token_name(request: Request) -> str:
    name: str = json.loads(request.get_data())["token"]["name"]
    return name


WARM_UP = "warm-up"  # the token name of a notice that only teaches a sink its receiver


def warm_up(hook: WebhookSink, clock: FixedClock) -> None:
    """Deliver one notice the receiver answers slowly, so that *hook* has measured its wait.

    A sink starts two POSTs at a time until one has ended; after this it sends as many at
    once as its option allows, as it does behind any receiver that keeps it waiting.
    """
    assert hook.deliver(notices(clock, [WARM_UP])) == [Outcome.sent()]


def slowly_if_warm_up(request: Request) -> Response | None:
    """The warm-up notice's answer, 50 ms late; None for any other notice."""
    if token_name(request) != WARM_UP:
        return None
    time.sleep(0.05)
    return Response("", status=200)


def checker(database: Database, clock: FixedClock, sinks: list[Any]) -> Checker:
    return Checker(
        database=database, sinks=sinks, policy=POLICY, clock=clock, lease=timedelta(minutes=5)
    )


def tokens(database: Database, clock: FixedClock) -> TokenStore:
    return TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)


class TestPayload:
    def test_signed_payload_validates(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """The POST validates against the JSON Schema and verifies with standardwebhooks."""
        receiver = Receiver()
        httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
        created = tokens(database, clock).create(
            name="ci",
            expires_at=clock.now() + DAY * 2,
            owner="ops@example.com",
            labels={"team": "platform"},
        )
        hook = sink(httpserver, clock)
        checker(database, clock, [hook]).run()
        hook.close()
        ((headers, body, _),) = receiver.requests
        payload = json.loads(body)
        jsonschema.validate(payload, SCHEMA, format_checker=jsonschema.FormatChecker())
        assert Webhook(SECRET).verify(body, headers) == payload
        assert headers["Webhook-Id"] == payload["id"]
        assert headers["Content-Type"] == "application/json"
        assert payload["type"] == "token.expiring"
        assert payload["token"] == {
            "id": created.id,
            "name": "ci",
            "source": "store",
            "kind": "token",
            "owner": "ops@example.com",
            "labels": {"team": "platform"},
            "expires_at": payload["token"]["expires_at"],
            "status": "expiring",
        }
        assert payload["days_left"] == 3
        assert payload["window"] == "1w"
        assert payload["message"].endswith("will expire in less than 3 days.")

    def test_tampered_body_fails_verification(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """A receiver that checks the signature rejects a changed body."""
        receiver = Receiver()
        httpserver.expect_request("/hook").respond_with_handler(receiver)
        tokens(database, clock).create(name="ci", expires_at=clock.now() + DAY)
        checker(database, clock, [sink(httpserver, clock)]).run()
        ((headers, body, _),) = receiver.requests
        from standardwebhooks.webhooks import WebhookVerificationError  # noqa: PLC0415

        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body.replace(b'"ci"', b'"cj"'), headers)


class TestFailures:
    def test_500_for_three_passes_then_exactly_once(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """After recovery each notice arrives exactly once; the log sink is unaffected."""
        receiver = Receiver(statuses=[500] * 1000)
        httpserver.expect_request("/hook").respond_with_handler(receiver)
        store = tokens(database, clock)
        for index in range(3):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY * (index + 2))
        hook = sink(httpserver, clock)
        run = checker(database, clock, [LogSink("log", "day"), hook])
        with capture_logs() as events:
            for _ in range(3):
                report = run.run()
                assert report.failed == {"webhook": 3}
                clock.advance(HOUR)
            receiver.statuses.clear()
            report = run.run()
            for _ in range(5):
                clock.advance(HOUR)
                run.run()
        assert report.sent == {"webhook": 3}
        delivered = receiver.delivered()
        assert sorted(p["token"]["name"] for p in delivered) == ["t0", "t1", "t2"]
        assert len({p["id"] for p in delivered}) == 3
        warn = [e for e in events if e["event"] == "notice.expiring"]
        assert len(warn) == 3  # the log sink spoke once per token, in the first pass
        failing = [e for e in events if e["event"] == "sink.failed"]
        assert {e["sink"] for e in failing} == {"webhook"}
        assert all(e["permanent"] is False for e in failing)

    def test_404_is_permanent_without_a_retry_storm(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """A 404 is recorded as permanent: one request, then silence until the backoff."""
        receiver = Receiver(statuses=[404] * 100)
        httpserver.expect_request("/hook").respond_with_handler(receiver)
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY * 5)
        run = checker(database, clock, [sink(httpserver, clock)])
        with capture_logs() as events:
            for _ in range(12):
                run.run()
                clock.advance(HOUR)
        assert len(receiver.requests) == 1
        (failed,) = [e for e in events if e["event"] == "sink.failed"]
        assert failed["permanent"] is True
        assert failed["error"] == "webhook answered 404"
        with database.read() as connection:
            row = connection.execute(select(DeliveryStateRow.__table__)).one()
        assert (row.attempts, row.last_error) == (1, "webhook answered 404")
        clock.advance(HOUR * 12)
        run.run()
        assert len(receiver.requests) == 2

    def test_retry_after_is_honoured_within_the_pass(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """A 429 with Retry-After is retried in the same pass, after the delay asked for."""
        receiver = Receiver(statuses=[429], headers={"Retry-After": "0"})
        httpserver.expect_request("/hook").respond_with_handler(receiver)
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        report = checker(database, clock, [sink(httpserver, clock)]).run()
        assert report.sent == {"webhook": 1}
        assert [status for _, _, status in receiver.requests] == [429, 200]

    def test_retry_after_longer_than_the_pass_waits_for_the_next(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """A Retry-After beyond the pass's deadline is left to the next pass, not slept."""
        receiver = Receiver(statuses=[503], headers={"Retry-After": "3600"})
        httpserver.expect_request("/hook").respond_with_handler(receiver)
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        report = checker(database, clock, [sink(httpserver, clock)]).run()
        assert report.failed == {"webhook": 1}
        assert len(receiver.requests) == 1

    def test_unreachable_receiver(self, database: Database, clock: FixedClock) -> None:
        """A closed port is a transient failure naming no URL."""
        hook = unsigned(f"http://127.0.0.1:{free_port()}/hook?token=s3cret", clock)
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        report = checker(database, clock, [hook]).run()
        assert report.failed == {"webhook": 1}
        with database.read() as connection:
            error = connection.execute(select(DeliveryStateRow.__table__.c.last_error)).scalar()
        assert error == "webhook unreachable: ConnectError"


class TestRouting:
    def test_owner_and_label_routes(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """Two webhook instances each hear only the tokens their route selects."""
        ops, team = Receiver(), Receiver()
        httpserver.expect_request("/ops").respond_with_handler(ops)
        httpserver.expect_request("/team").respond_with_handler(team)
        store = tokens(database, clock)
        store.create(name="ops-token", expires_at=clock.now() + DAY, owner="alice@ops.example.com")
        store.create(name="team-token", expires_at=clock.now() + DAY, labels={"team": "platform"})
        store.create(name="nobody", expires_at=clock.now() + DAY)
        sinks = [
            sink(
                httpserver,
                clock,
                path="/ops",
                name="webhook:ops",
                route=Route(owners=("*@ops.example.com",)),
            ),
            sink(
                httpserver,
                clock,
                path="/team",
                name="webhook:team",
                route=Route(labels={"team": "plat*"}),
            ),
        ]
        run = checker(database, clock, sinks)
        run.run()
        assert [p["token"]["name"] for p in ops.delivered()] == ["ops-token"]
        assert [p["token"]["name"] for p in team.delivered()] == ["team-token"]
        clock.advance(HOUR)
        assert run.run().sent == {}  # the left-out tokens are recorded, not retried each pass
        with database.read() as connection:
            kinds = {
                (row.sink, row.last_kind)
                for row in connection.execute(select(DeliveryStateRow.__table__))
            }
        assert ("webhook:ops", "skipped") in kinds
        assert ("webhook:ops", "expiring") in kinds

    def test_kind_route(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """A sink routed to expired notices only hears about the expiry, not the warning."""
        receiver = Receiver()
        httpserver.expect_request("/hook").respond_with_handler(receiver)
        from notifier.core.model import NoticeKind  # noqa: PLC0415

        tokens(database, clock).create(name="t", expires_at=clock.now() + HOUR * 2)
        hook = sink(httpserver, clock, route=Route(kinds=frozenset({NoticeKind.EXPIRED})))
        run = checker(database, clock, [hook])
        run.run()
        assert receiver.delivered() == []
        clock.advance(HOUR * 3)
        run.run()
        assert [p["kind"] for p in receiver.delivered()] == ["expired"]


class TestStop:
    """A stop request (the daemon's SIGTERM) ends a delivery at once and gives the claim back."""

    @staticmethod
    def stoppable(server: HTTPServer, clock: FixedClock, stop: threading.Event) -> WebhookSink:
        return WebhookSink(
            "webhook",
            url=server.url_for("/hook"),
            secret=SECRET,
            timeout=timedelta(seconds=30),
            route=EVERYTHING,
            retry=Retry(deadline=timedelta(minutes=2), attempts=5),
            clock=clock,
            window=POLICY.detection_window,
            slice_name="day",
            stop=stop,
        )

    @staticmethod
    def stopped_pass(
        database: Database, clock: FixedClock, hook: WebhookSink, stop: threading.Event
    ) -> tuple[PassReport, list[MutableMapping[str, Any]], float]:
        """A pass with *hook* that *stop* can end: its report, its log events, its seconds."""
        started = time.monotonic()
        with capture_logs() as events:
            report = Checker(
                database=database,
                sinks=[hook],
                policy=POLICY,
                clock=clock,
                lease=timedelta(minutes=5),
                stop=stop,
            ).run()
        return report, events, time.monotonic() - started

    @staticmethod
    def eight_tokens(database: Database, clock: FixedClock) -> None:
        store = tokens(database, clock)
        for index in range(8):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY)

    @staticmethod
    def row(database: Database) -> Any:
        with database.read() as connection:
            return connection.execute(select(DeliveryStateRow.__table__)).one()

    def test_a_post_in_flight_is_abandoned_and_released(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """SIGTERM while the receiver hangs: the pass ends now, unsent, its claim released."""
        stop, answer = threading.Event(), threading.Event()
        ids: list[str] = []

        def hang(request: Request) -> Response:
            ids.append(request.headers["webhook-id"])
            if len(ids) == 1:
                stop.set()  # the signal arrives while this request is in flight
                answer.wait(timeout=30)
            return Response("", status=200)

        httpserver.expect_request("/hook").respond_with_handler(hang)
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        hook = self.stoppable(httpserver, clock, stop)
        report, events, elapsed = self.stopped_pass(database, clock, hook, stop)
        answer.set()
        hook.close()
        assert elapsed < 5, f"the pass took {elapsed:.1f}s"
        assert (report.released, report.interrupted, report.sent, report.failed) == (
            1,
            True,
            Counter(),
            Counter(),
        )
        row = self.row(database)
        assert (row.lease_owner, row.attempts, row.last_error, row.notices_sent) == (
            None,
            0,
            None,
            0,
        )
        (interrupted,) = [e for e in events if e["event"] == "sink.interrupted"]
        assert interrupted["abandoned_send"] is True
        assert not [e for e in events if e["event"] == "sink.failed"]
        after = checker(database, clock, [sink(httpserver, clock)]).run()
        assert (after.sent, after.claimed_elsewhere) == ({"webhook": 1}, 0)
        assert ids[0] == ids[-1]  # the same notice id: a receiver deduplicates the retry

    def test_a_retry_wait_wakes_on_the_stop(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """SIGTERM while the sink waits out a Retry-After: it stops waiting, and releases."""
        stop = threading.Event()
        statuses: list[int] = []

        def busy(request: Request) -> Response:
            del request
            statuses.append(503)
            # The signal arrives once the sink has had its answer and waits to retry.
            threading.Timer(0.2, stop.set).start()
            return Response("", status=503, headers={"Retry-After": "60"})

        httpserver.expect_request("/hook").respond_with_handler(busy)
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        hook = self.stoppable(httpserver, clock, stop)
        report, events, elapsed = self.stopped_pass(database, clock, hook, stop)
        hook.close()
        assert elapsed < 5, f"the pass took {elapsed:.1f}s"
        assert (report.released, report.failed, statuses) == (1, Counter(), [503])
        assert self.row(database).lease_owner is None
        names = [e["event"] for e in events if e["event"].startswith("sink.")]
        assert names == ["sink.slowed", "sink.retry", "sink.interrupted"]  # slowed: paused 60 s
        assert [e["abandoned_send"] for e in events if e["event"] == "sink.interrupted"] == [False]

    def test_posts_answered_within_the_grace_are_recorded_as_sent(
        self, threaded: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """SIGTERM with four POSTs in flight that answer in time: sent; the rest go back."""
        stop = threading.Event()
        together = threading.Barrier(4, timeout=5)
        received: list[str] = []

        def slow(request: Request) -> Response:
            if warming := slowly_if_warm_up(request):
                return warming
            received.append(request.headers["webhook-id"])
            if together.wait() == 0:
                stop.set()  # the signal arrives with four POSTs in flight
            threading.Event().wait(0.2)  # they answer well within IN_FLIGHT_GRACE
            return Response("", status=200)

        threaded.expect_request("/hook").respond_with_handler(slow)
        self.eight_tokens(database, clock)
        hook = sink(threaded, clock, concurrency=4, retry=Retry(), stop=stop)
        warm_up(hook, clock)
        report, events, _ = self.stopped_pass(database, clock, hook, stop)
        hook.close()
        assert (report.sent, report.released, report.failed) == ({"webhook": 4}, 4, Counter())
        assert len(received) == 4
        (interrupted,) = [e for e in events if e["event"] == "sink.interrupted"]
        assert interrupted["abandoned_send"] is False

    def test_hung_posts_are_abandoned_and_every_claim_released(
        self, threaded: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """SIGTERM with four POSTs hanging: the pass ends after the grace, all eight released."""
        stop, answer = threading.Event(), threading.Event()
        together = threading.Barrier(4, timeout=5)
        received: list[str] = []

        def hang(request: Request) -> Response:
            if warming := slowly_if_warm_up(request):
                return warming
            received.append(request.headers["webhook-id"])
            if not answer.is_set():
                if together.wait() == 0:
                    stop.set()
                answer.wait(timeout=30)
            return Response("", status=200)

        threaded.expect_request("/hook").respond_with_handler(hang)
        self.eight_tokens(database, clock)
        hook = sink(threaded, clock, concurrency=4, retry=Retry(), stop=stop)
        warm_up(hook, clock)
        report, events, elapsed = self.stopped_pass(database, clock, hook, stop)
        hook.close()  # does not wait for the hung POSTs
        assert elapsed < 5, f"the pass took {elapsed:.1f}s"
        assert (report.sent, report.released, report.failed) == (Counter(), 8, Counter())
        (interrupted,) = [e for e in events if e["event"] == "sink.interrupted"]
        assert interrupted["abandoned_send"] is True
        first_wave = set(received)
        assert len(first_wave) == 4
        # Answered at last, the abandoned POSTs end, and their threads (closing the old pool).
        answer.set()
        for thread in threading.enumerate():
            if thread.name == "send:webhook":
                thread.join(timeout=5)
                assert not thread.is_alive()
        after = checker(database, clock, [sink(threaded, clock)]).run()
        assert (after.sent, after.claimed_elsewhere) == ({"webhook": 8}, 0)
        assert first_wave <= set(received[4:])  # the same notice ids: receivers deduplicate


class TestRetryLog:
    def test_each_retry_is_our_event_without_the_url(
        self, httpserver: HTTPServer, database: Database, clock: FixedClock
    ) -> None:
        """A retry logs sink.retry with sink, attempt, wait and the error; never the URL."""
        receiver = Receiver(statuses=[500, 503])
        httpserver.expect_request("/hook").respond_with_handler(receiver)
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        hook = unsigned(
            httpserver.url_for("/hook?token=s3cret").replace("//", "//user:s3cret@", 1),
            clock,
            name="webhook:ops",
        )
        with capture_logs() as events:
            report = checker(database, clock, [hook]).run()
        hook.close()
        assert report.sent == {"webhook:ops": 1}
        retries = [e for e in events if e["event"] == "sink.retry"]
        assert [(e["sink"], e["attempt"], e["error"]) for e in retries] == [
            ("webhook:ops", 1, "webhook answered 500"),
            ("webhook:ops", 2, "webhook answered 503"),
        ]
        assert all(0 < e["wait_s"] <= FAST.wait_max.total_seconds() for e in retries)
        assert not [e for e in events if e["event"].startswith("stamina")]
        assert "s3cret" not in repr(events)


class TestConcurrency:
    """POSTs go out several at once, up to the instance's ``concurrency``, outcomes in order."""

    def test_posts_in_flight_never_exceed_the_option(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """With concurrency 4, the receiver sees several POSTs at once, never five.

        Each answer takes 50 ms, so the sink, which sends no more at once than its wait for
        the network leaves room for, has room for all four; how many it reaches at a time
        depends on the machine, so the test asks for more than one, and never more than four.
        """
        in_flight = InFlight()

        def receive(request: Request) -> Response:
            del request
            with in_flight.request():
                time.sleep(0.05)
            return Response("", status=204)

        threaded.expect_request("/hook").respond_with_handler(receive)
        hook = sink(threaded, clock, concurrency=4)
        outcomes = hook.deliver(notices(clock, [f"t{i}" for i in range(20)]))
        hook.close()
        assert outcomes == [Outcome.sent()] * 20
        assert 1 < in_flight.most <= 4

    def test_idle_connections_past_the_limit_are_closed_between_deliveries(
        self, clock: FixedClock
    ) -> None:
        """What a slow receiver needed open is closed once fewer would do, and sends go on.

        httpcore's pool looks at every idle connection on each request, so connections a
        limit no longer uses cost CPU until their keep-alive runs out. The receiver here
        keeps connections open (HTTP/1.1), as most do; pytest-httpserver's closes them.
        """
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

        from notifier.sinks.webhook import WebhookSink, _close_idle  # noqa: PLC0415

        class KeepAlive(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                time.sleep(0.05)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                del args

        server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        try:
            hook = WebhookSink(
                "hook",
                url=f"http://127.0.0.1:{server.server_port}/hook",
                secret=None,
                timeout=timedelta(seconds=5),
                clock=clock,
                window=timedelta(days=7),
                concurrency=4,
                route=EVERYTHING,
                retry=Retry(),
                slice_name="day",
            )
            sent = hook.deliver(notices(clock, [f"t{i}" for i in range(20)]))
            assert sent == [Outcome.sent()] * 20
            pool = hook._pool  # what the pool holds is the point
            assert len([c for c in pool.connections if not c.is_closed()]) > 1
            _close_idle(pool, keep=1)
            assert len([c for c in pool.connections if not c.is_closed()]) == 1
            assert hook.deliver(notices(clock, ["again"])) == [Outcome.sent()]
            hook.close()
        finally:
            server.shutdown()
            server.server_close()

    def test_a_fast_receiver_gets_every_notice(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """Against a receiver that answers at once, the threads come down, and all is sent."""
        in_flight = InFlight()

        def receive(request: Request) -> Response:
            del request
            with in_flight.request():
                return Response("", status=204)

        threaded.expect_request("/hook").respond_with_handler(receive)
        hook = sink(threaded, clock, concurrency=32)
        outcomes: list[Outcome] = []
        delivery = threading.Thread(
            target=lambda: outcomes.extend(hook.deliver(notices(clock, ["t"] * 600)))
        )
        delivery.start()
        delivery.join(timeout=60)
        hook.close()
        assert not delivery.is_alive(), "the delivery hung"
        assert outcomes == [Outcome.sent()] * 600
        assert in_flight.most <= 32

    def test_outcomes_keep_the_order_of_the_notices(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """Answers that finish in any order still come back one per notice, in order."""
        answers = [200, 404, 500, 201, 503, 410, 204, 500]  # cycled over 40 notices
        names = [f"s{answers[i % len(answers)]}-{i}" for i in range(40)]
        delays = random.Random(13)  # noqa: S311 - seeded: a finishing order that repeats
        lock = threading.Lock()

        def receive(request: Request) -> Response:
            with lock:
                delay = delays.uniform(0, 0.02)
            threading.Event().wait(delay)  # the receiver takes its time, differently each POST
            return Response("", status=int(token_name(request).split("-")[0][1:]))

        threaded.expect_request("/hook").respond_with_handler(receive)
        hook = sink(threaded, clock, concurrency=8)
        outcomes = hook.deliver(notices(clock, names))
        hook.close()
        expected = {
            200: Outcome.sent(),
            201: Outcome.sent(),
            204: Outcome.sent(),
            404: Outcome.failed("webhook answered 404", permanent=True),
            410: Outcome.failed("webhook answered 410", permanent=True),
            500: Outcome.failed("webhook answered 500"),
            503: Outcome.failed("webhook answered 503"),
        }
        assert outcomes == [expected[answers[i % len(answers)]] for i in range(40)]

    def test_one_deadline_for_the_whole_delivery(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """A receiver that is down costs one deadline per delivery, not one per notice."""

        def down(request: Request) -> Response:
            del request
            threading.Event().wait(0.02)
            return Response("", status=503)

        threaded.expect_request("/hook").respond_with_handler(down)
        retry = Retry(
            deadline=timedelta(seconds=1),
            attempts=100,
            wait_initial=timedelta(milliseconds=50),
            wait_max=timedelta(milliseconds=200),
        )
        hook = sink(threaded, clock, concurrency=4, retry=retry)
        started = time.monotonic()
        outcomes = hook.deliver(notices(clock, [f"t{i}" for i in range(100)]))
        elapsed = time.monotonic() - started
        hook.close()
        # A deadline per notice would take 100 x 1 s / 4 = 25 s.
        assert elapsed < 4, f"the delivery took {elapsed:.1f}s"
        errors = Counter(outcome.error for outcome in outcomes)
        assert set(errors) == {
            "webhook answered 503",
            "not attempted: the retry deadline of this pass is spent",
        }
        assert errors["not attempted: the retry deadline of this pass is spent"] > 50
        assert not any(outcome.ok or outcome.permanent for outcome in outcomes)


class TestSlowDown:
    """A receiver that says "too many requests" slows the whole sink down."""

    @staticmethod
    def all_eight_sent(hook: WebhookSink, clock: FixedClock) -> list[MutableMapping[str, Any]]:
        """Deliver eight notices t0..t7, check that all were sent; the log events."""
        with capture_logs() as events:
            outcomes = hook.deliver(notices(clock, [f"t{i}" for i in range(8)]))
        hook.close()
        assert outcomes == [Outcome.sent()] * 8
        return events

    def test_retry_after_pauses_every_post_of_the_sink(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """After a 429 with Retry-After, no POST starts before that moment, whichever notice."""
        answered = threading.Event()
        lock = threading.Lock()
        arrivals: list[tuple[str, float]] = []
        answered_at: list[float] = []

        def receive(request: Request) -> Response:
            if warming := slowly_if_warm_up(request):
                return warming
            name = token_name(request)
            with lock:
                first = all(seen != name for seen, _ in arrivals)
                arrivals.append((name, time.monotonic()))
            if name == "t0" and first:
                answered_at.append(time.monotonic())
                answered.set()
                return Response("", status=429, headers={"Retry-After": "0.5"})
            if name in {"t1", "t2", "t3"}:
                # Answered once the 429 is out, with time for the sink to read it: their
                # workers then take t4..t7, which must wait out the pause.
                answered.wait(5)
                threading.Event().wait(0.1)
            return Response("", status=200)

        threaded.expect_request("/hook").respond_with_handler(receive)
        hook = sink(threaded, clock, concurrency=4)
        warm_up(hook, clock)
        events = self.all_eight_sent(hook, clock)
        (resume,) = answered_at
        later = [at for name, at in arrivals if name not in {"t1", "t2", "t3"}][1:]
        assert len(later) == 5  # t0's retry, then t4..t7
        assert min(later) >= resume + 0.5
        (slowed,) = [e for e in events if e["event"] == "sink.slowed"]
        assert (slowed["paused_s"], slowed["in_flight_limit"]) == (0.5, 2)

    def test_a_429_halves_the_posts_in_flight(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """Eight POSTs answered 429 at once cut the limit once, to four, for the retries."""
        together = threading.Barrier(8, timeout=5)
        retries = InFlight()
        lock = threading.Lock()
        seen: set[str] = set()

        def receive(request: Request) -> Response:
            if warming := slowly_if_warm_up(request):
                return warming
            name = token_name(request)
            with lock:
                first = name not in seen
                seen.add(name)
            if first:
                together.wait()
                return Response("", status=429)
            with retries.request():
                threading.Event().wait(0.05)  # long enough for the retries to overlap
            return Response("", status=200)

        threaded.expect_request("/hook").respond_with_handler(receive)
        hook = sink(threaded, clock, concurrency=8)
        warm_up(hook, clock)
        events = self.all_eight_sent(hook, clock)
        assert 1 <= retries.most <= 4
        slowed = [e for e in events if e["event"] == "sink.slowed"]
        assert [(e["in_flight_limit"], e["paused_s"]) for e in slowed] == [(4, None)]


class TestTransport:
    """What httpx.Client did for the sink, the sink now does itself, once."""

    def test_credentials_in_the_url_are_sent_as_basic_auth(
        self, httpserver: HTTPServer, clock: FixedClock
    ) -> None:
        """``https://user:pass@host/...`` sends an authorization header, not the userinfo."""
        seen: list[tuple[str, str]] = []

        def receive(request: Request) -> Response:
            seen.append((request.headers.get("authorization", ""), request.headers["host"]))
            return Response("", status=204)

        httpserver.expect_request("/hook").respond_with_handler(receive)
        hook = unsigned(httpserver.url_for("/hook").replace("//", "//ops:s3cret%21@", 1), clock)
        assert hook.deliver(notices(clock, ["t"])) == [Outcome.sent()]
        hook.close()
        expected = "Basic " + base64.b64encode(b"ops:s3cret!").decode()
        assert seen == [(expected, f"127.0.0.1:{httpserver.port}")]

    def test_the_environment_proxy_carries_the_posts(
        self, httpserver: HTTPServer, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With HTTP_PROXY set, the POST goes to the proxy, for the webhook's host."""
        hosts: list[str] = []

        def proxy(request: Request) -> Response:
            hosts.append(request.headers["host"])
            return Response("", status=204)

        httpserver.expect_request("/hook").respond_with_handler(proxy)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{httpserver.port}")
        hook = unsigned("http://hooks.example.invalid/hook", clock)
        assert hook.deliver(notices(clock, ["t"])) == [Outcome.sent()]
        hook.close()
        assert hosts == ["hooks.example.invalid"]

    def test_no_proxy_bypasses_it(
        self, httpserver: HTTPServer, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A host NO_PROXY names is reached directly, past a proxy that does not answer."""
        httpserver.expect_request("/hook").respond_with_data("", status=204)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        hook = sink(httpserver, clock)
        assert hook.deliver(notices(clock, ["t"])) == [Outcome.sent()]
        hook.close()


@contextmanager
def raw_receiver(answer: Callable[[socket.socket, bytes], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that reads what a client first sends, then *answer*s it.

    For what an HTTP server does not do on purpose: hold a request, hang up, refuse a tunnel.
    Yields the port; first lines of what arrived go to ``answer``'s second argument.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    released = threading.Event()

    def serve() -> None:
        with listener:
            while not released.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    answer(connection, connection.recv(65536))
                    released.wait(timeout=10)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[1]
    finally:
        released.set()
        listener.close()
        server.join(timeout=10)


def one_try(url: str, clock: FixedClock, *, timeout: float = 5.0) -> WebhookSink:
    """An unsigned webhook sink that tries each notice once."""
    return WebhookSink(
        "webhook",
        url=url,
        secret=None,
        timeout=timedelta(seconds=timeout),
        route=EVERYTHING,
        retry=Retry(deadline=timedelta(seconds=10), attempts=1),
        clock=clock,
        window=DAY,
        slice_name="day",
    )


class TestHttpcore:
    """The sink speaks to httpcore's pool itself: httpx's errors, proxies and signing kept."""

    def test_a_receiver_that_never_answers_times_out(self, clock: FixedClock) -> None:
        """No answer within the timeout is a transient "timed out", naming no URL."""
        with raw_receiver(lambda _connection, _request: None) as port:
            hook = one_try(f"http://127.0.0.1:{port}/hook?token=s3cret", clock, timeout=0.2)
            outcomes = hook.deliver(notices(clock, ["t"]))
            hook.close()
        assert outcomes == [Outcome.failed("webhook timed out")]

    def test_a_receiver_that_hangs_up_is_unreachable(self, clock: FixedClock) -> None:
        """A connection closed without an answer is transient, named by httpx's error name."""

        def hang_up(connection: socket.socket, _request: bytes) -> None:
            connection.shutdown(socket.SHUT_RDWR)

        with raw_receiver(hang_up) as port:
            hook = one_try(f"http://127.0.0.1:{port}/hook", clock)
            outcomes = hook.deliver(notices(clock, ["t"]))
            hook.close()
        assert outcomes == [Outcome.failed("webhook unreachable: RemoteProtocolError")]

    def test_an_https_webhook_tunnels_through_the_environment_proxy(
        self, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With HTTPS_PROXY set, an https webhook asks the proxy for a tunnel to its host."""
        asked: list[bytes] = []

        def refuse(connection: socket.socket, request: bytes) -> None:
            asked.append(request.split(b"\r\n", 1)[0])
            connection.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")

        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        with raw_receiver(refuse) as port:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
            hook = one_try("https://hooks.example.invalid/hook", clock)
            outcomes = hook.deliver(notices(clock, ["t"]))
            hook.close()
        assert asked == [b"CONNECT hooks.example.invalid:443 HTTP/1.1"]
        assert outcomes == [Outcome.failed("webhook unreachable: ProxyError")]

    def test_signatures_of_posts_in_flight_together_verify(
        self, threaded: HTTPServer, clock: FixedClock
    ) -> None:
        """Each of many POSTs signed at once verifies with standardwebhooks, for its own body."""
        receiver = Receiver()

        def slow(request: Request) -> Response:
            time.sleep(0.01)  # so that several are in flight at once
            return receiver(request)

        threaded.expect_request("/hook").respond_with_handler(slow)
        hook = sink(threaded, clock, concurrency=8)
        outcomes = hook.deliver(notices(clock, [f"t{i}" for i in range(40)]))
        hook.close()
        assert outcomes == [Outcome.sent()] * 40
        verifier = Webhook(SECRET)
        verified = [verifier.verify(body, headers) for headers, body, _ in receiver.requests]
        assert sorted(payload["token"]["name"] for payload in verified) == sorted(
            f"t{i}" for i in range(40)
        )

    def test_an_https_webhook_verified_by_the_ca_ssl_cert_file_names(
        self, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Over TLS, the receiver's certificate is checked against SSL_CERT_FILE, as httpx does."""
        for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            monkeypatch.delenv(name, raising=False)
        authority = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        server = HTTPServer(host="127.0.0.1", ssl_context=context)
        receiver = Receiver()
        server.expect_request("/hook").respond_with_handler(receiver)
        server.start()
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(authority.cert_pem.bytes())
        try:
            untrusted = sink(server, clock, retry=Retry(deadline=timedelta(seconds=5), attempts=1))
            refused = untrusted.deliver(notices(clock, ["t"]))
            untrusted.close()
            monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
            trusted = sink(server, clock)
            accepted = trusted.deliver(notices(clock, ["t"]))
            trusted.close()
        finally:
            server.clear()
            server.stop()
        assert refused == [Outcome.failed("webhook unreachable: ConnectError")]
        assert accepted == [Outcome.sent()]
        ((headers, body, _),) = receiver.requests
        assert Webhook(SECRET).verify(body, headers)["token"]["name"] == "t"

    def test_a_request_goes_out_in_one_send_when_its_answer_is_read(self) -> None:
        """What httpcore writes in parts (head, body) is held, then sent whole by the read."""
        with socket.create_server(("127.0.0.1", 0)) as listener:
            stream = _WholeRequests().connect_tcp("127.0.0.1", listener.getsockname()[1], 5)
            connection, _ = listener.accept()
            with connection:
                stream.write(b"POST /hook HTTP/1.1\r\ncontent-length: 2\r\n\r\n", 5)
                stream.write(b"{}", 5)
                assert selecting.select([connection], [], [], 0)[0] == []  # nothing sent yet
                connection.sendall(b"answer")
                assert stream.read(100, 5) == b"answer"
                assert connection.recv(100) == b"POST /hook HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"
            stream.close()
