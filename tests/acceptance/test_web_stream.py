"""The live stream over a real socket: in this process under uvicorn, and across processes."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL
from structlog.testing import capture_logs

from notifier.web.stream import StreamOptions
from tests.acceptance.conftest import cli
from tests.integration.test_web_api import V1, warned
from tests.web_tier import Served, Web, WebFactory

from .conftest import RunningServe

FAST = StreamOptions(
    poll=timedelta(milliseconds=200),
    keepalive=timedelta(seconds=1),
    recheck=timedelta(milliseconds=400),
)


@dataclass(frozen=True)
class Event:
    kind: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """Read an SSE response in a thread; hand out its events with bounded waits."""

    def __init__(self, url: str, secret: str, last_event_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {secret}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=10))
        self._request = self._client.build_request("GET", url, headers=headers)
        self._events: queue.Queue[Event | BaseException | None] = queue.Queue()
        self.status: int | None = None
        self.content_type: str | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            response = self._client.send(self._request, stream=True)
            self.status = response.status_code
            self.content_type = response.headers.get("content-type")
            kind, event_id = "message", None
            data: list[str] = []
            for line in response.iter_lines():
                if line == "":
                    if data or kind != "message":
                        self._events.put(Event(kind, "\n".join(data), event_id))
                    kind, data, event_id = "message", [], None
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
            response.close()
        except (httpx.HTTPError, RuntimeError) as error:
            self._events.put(error)
        self._events.put(None)  # the stream ended

    def next(self, kind: str, timeout: float = 15) -> Event:
        """The next event of *kind* (skipping others); fail after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._events.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                raise AssertionError(f"the stream ended before a {kind!r} event")
            if isinstance(item, BaseException):
                raise AssertionError(f"the stream failed: {item!r}")  # noqa: TRY004 - a test failure
            if item.kind == kind:
                return item
        raise AssertionError(f"no {kind!r} event within {timeout}s")

    def ended(self, timeout: float = 10) -> bool:
        """Whether the server closed the stream within *timeout* seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def readers() -> Iterator[Callable[..., EventReader]]:
    """Open streams with ``readers(url, secret)``; closed afterwards."""
    opened: list[EventReader] = []

    def open_reader(url: str, secret: str, last_event_id: str | None = None) -> EventReader:
        reader = EventReader(url, secret, last_event_id)
        opened.append(reader)
        return reader

    yield open_reader
    for reader in opened:
        reader.close()


ServeInThread = Callable[[Web, StreamOptions | None], Served]


class TestStreamInProcess:
    def test_an_acknowledgement_arrives_as_an_event(
        self,
        web: Web,
        serve_in_thread: ServeInThread,
        readers: Callable[..., EventReader],
    ) -> None:
        """After `ready`, an ack made through the API arrives as a notification event."""
        nid = warned(web)
        admin = web.token("*", name="admin")
        served = serve_in_thread(web, FAST)
        reader = readers(f"{served.base}{V1}/notifications/stream", admin.token)
        reader.next("ready")
        assert reader.status == 200
        assert reader.content_type == "text/event-stream; charset=utf-8"
        response = httpx.post(
            f"{served.base}{V1}/notifications/{nid}/ack",
            headers={"Authorization": f"Bearer {admin.token}"},
            timeout=5,
        )
        assert response.status_code == 200
        event = reader.next("notification")
        assert event.json()["id"] == nid
        assert event.json()["active"] is False
        assert event.id == "2026-01-01T00:00:00Z"

    def test_what_happened_before_is_not_replayed(
        self,
        web: Web,
        serve_in_thread: ServeInThread,
        readers: Callable[..., EventReader],
    ) -> None:
        """A new stream sends only later changes; with Last-Event-ID it resumes from there."""
        warned(web)
        admin = web.token("*", name="admin")
        served = serve_in_thread(web, FAST)
        url = f"{served.base}{V1}/notifications/stream"
        fresh = readers(url, admin.token)
        assert fresh.next("ready").json()["cursor"] == "2026-01-01T00:00:00Z"
        with pytest.raises(AssertionError, match="no 'notification' event"):
            fresh.next("notification", timeout=1)
        resumed = readers(url, admin.token, last_event_id="2025-12-31T23:59:00Z")
        assert resumed.next("notification").json()["token_name"] == "ci-deploy"

    def test_the_stream_needs_its_scope(
        self,
        web: Web,
        serve_in_thread: ServeInThread,
        readers: Callable[..., EventReader],
    ) -> None:
        """Without notifications:read the stream is refused with 403 before it starts."""
        served = serve_in_thread(web, FAST)
        reader = readers(f"{served.base}{V1}/notifications/stream", web.token("tokens:read").token)
        assert reader.ended()
        assert reader.status == 403

    def test_a_revoked_token_loses_its_stream(
        self,
        web: Web,
        serve_in_thread: ServeInThread,
        readers: Callable[..., EventReader],
    ) -> None:
        """Revoking the token ends its open stream with an `end` event."""
        token = web.token("notifications:read")
        served = serve_in_thread(web, FAST)
        reader = readers(f"{served.base}{V1}/notifications/stream", token.token)
        reader.next("ready")
        web.parts.tokens.revoke(token.id)
        assert reader.next("end").json() == {"reason": "the token is no longer valid"}
        assert reader.ended()

    def test_stopping_the_server_ends_the_streams(
        self,
        web: Web,
        serve_in_thread: ServeInThread,
        readers: Callable[..., EventReader],
    ) -> None:
        """The server stops promptly with a stream open, and writes the pending last uses."""
        token = web.token("notifications:read")
        served = serve_in_thread(web, FAST)
        reader = readers(f"{served.base}{V1}/notifications/stream", token.token)
        reader.next("ready")
        assert web.parts.tokens.get(token.id).last_used_at is None
        served.server.stop(timeout=10)
        assert served.server.thread is not None
        assert not served.server.thread.is_alive()
        assert reader.ended()
        assert web.parts.tokens.get(token.id).last_used_at == web.clock.now()


def _url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


class TestStreamAcrossProcesses:
    def test_a_pass_in_another_process_reaches_the_stream(
        self,
        env: dict[str, str],
        database_url: URL,
        serve_process: type[RunningServe],
        readers: Callable[..., EventReader],
    ) -> None:
        """`notifier check` in one process; `notifier serve` streams its notification."""
        environment = {
            **env,
            "NOTIFIER_DATABASE_URL": _url_text(database_url),
            "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0",
        }
        created = cli(
            "tokens", "create", "--name", "admin", "--permission", "*", "--json", env=environment
        )
        assert created.returncode == 0, created.stderr
        secret = json.loads(created.stdout)["token"]
        cli("tokens", "create", "--name", "ci-deploy", "--ttl", "2d", env=environment)
        running = serve_process(environment)
        base = f"http://127.0.0.1:{running.port}"
        running.wait_for(r"serve\.ready")
        reader = readers(f"{base}{V1}/notifications/stream", secret)
        reader.next("ready")
        check = cli("check", env=environment)
        assert check.returncode == 0, check.stderr
        notification = reader.next("notification").json()
        assert notification["token_name"] == "ci-deploy"
        assert notification["message"].endswith("will expire in less than 2 days.")
        assert running.stop() == 0


def refusal(url: str, headers: dict[str, str]) -> httpx.Response:
    """GET *url*, reading the body only when it is not a stream (a stream never ends)."""
    with httpx.Client(timeout=5) as client, client.stream("GET", url, headers=headers) as answer:
        if not answer.headers.get("content-type", "").startswith("text/event-stream"):
            answer.read()
        return answer


class TestStreamRefusals:
    @pytest.mark.parametrize(
        "cursor",
        [
            "0001-01-01T00:00:00+23:59",  # overflowed converting to UTC: a 500, logged twice
            "0001-01-01T00:00:00+00:00",  # overflowed the look-back: the stream died
            "9999-12-31T23:59:59-23:59",
            "yesterday",
        ],
    )
    def test_a_bad_last_event_id_is_400(
        self,
        web: Web,
        serve_in_thread: ServeInThread,
        cursor: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A Last-Event-ID that is no event id is refused with a 400 problem, nothing logged."""
        admin = web.token("*", name="admin")
        served = serve_in_thread(web, FAST)
        with capture_logs() as logs, caplog.at_level(logging.WARNING):
            response = refusal(
                f"{served.base}{V1}/notifications/stream",
                {"Authorization": f"Bearer {admin.token}", "Last-Event-ID": cursor},
            )
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert (body["error"], body["field"]) == ("invalid_cursor", "last-event-id")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # uvicorn's
        assert not [entry for entry in logs if entry["log_level"] == "error"]  # ours
        assert web.api.streams.held(f"token:{admin.id}") == 0

    def test_the_earliest_cursor_streams(
        self,
        web: Web,
        serve_in_thread: ServeInThread,
        readers: Callable[..., EventReader],
    ) -> None:
        """A cursor at 1970 resumes (everything since), and the stream keeps polling."""
        warned(web)
        admin = web.token("*", name="admin")
        served = serve_in_thread(web, FAST)
        reader = readers(
            f"{served.base}{V1}/notifications/stream", admin.token, "1970-01-01T00:00:00Z"
        )
        assert reader.next("notification").json()["token_name"] == "ci-deploy"
        assert not reader.ended(timeout=1)  # still polling after its look-back

    def test_streams_per_token_are_capped(
        self,
        make_web: WebFactory,
        serve_in_thread: ServeInThread,
        readers: Callable[..., EventReader],
    ) -> None:
        """Past NOTIFIER_API_MAX_STREAMS_PER_TOKEN a token's next stream is 429; others open."""
        web = make_web(NOTIFIER_API_MAX_STREAMS_PER_TOKEN="2")
        token = web.token("notifications:read")
        served = serve_in_thread(web, FAST)
        url = f"{served.base}{V1}/notifications/stream"
        held = [readers(url, token.token) for _ in range(2)]
        for reader in held:
            reader.next("ready")
        refused = refusal(url, {"Authorization": f"Bearer {token.token}"})
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert refused.headers["retry-after"] == "30"
        readers(url, web.token("notifications:read", name="other").token).next("ready")
        held[0].close()  # a slot is given back once the server sees the client gone
        deadline = time.monotonic() + 10
        while web.api.streams.held(f"token:{token.id}") > 1:
            assert time.monotonic() < deadline, "the closed stream kept its slot"
            time.sleep(0.05)
        readers(url, token.token).next("ready")

    def test_head_on_the_stream_answers_its_headers_and_ends(
        self, web: Web, serve_in_thread: ServeInThread
    ) -> None:
        """HEAD on the stream: 200 with the stream's headers, no body, and no slot kept."""
        token = web.token("notifications:read")
        served = serve_in_thread(web, FAST)
        response = httpx.head(
            f"{served.base}{V1}/notifications/stream",
            headers={"Authorization": f"Bearer {token.token}"},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.content == b""
        deadline = time.monotonic() + 5
        while web.api.streams.held(f"token:{token.id}"):
            assert time.monotonic() < deadline, "the HEAD kept its stream"
            time.sleep(0.05)
