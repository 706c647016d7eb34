"""The live stream of notifications: Server-Sent Events fed by polling the database.

The pass that creates and updates notifications usually runs in another process (the daemon,
or ``notifier check``), perhaps on another host, so the stream cannot hear about changes
in-process. It polls instead: about once a second it reads the notifications seen,
acknowledged or resolved since its cursor, and sends each one whose state it has not sent yet.

The cursor is a time the writers stamped, not this process's clock. A writer stamps a row a
moment before it commits, so a row stamped just before the cursor may become visible just
after a poll; each poll therefore looks back :attr:`StreamOptions.lookback` (30 s) and skips
the rows whose state it already sent. Replicas whose clocks differ by more than that, or a
write transaction longer than that, can make the stream miss an update; the list endpoint is
always right, and the page reloads it whenever the stream reconnects.

PostgreSQL's LISTEN/NOTIFY would wake the stream at once, but the writers (the ui sink) would
have to NOTIFY, SQLite has nothing like it, and a one-second poll of an indexed column costs
little. See docs/web.md.

Events:

- ``ready``: sent once the stream is watching; ``data`` holds the cursor;
- ``notification``: a new or changed notification, as ``NotificationResource`` JSON; its
  ``id`` is the change's time, which a client sends back as ``Last-Event-ID`` to resume;
- ``: keep-alive`` comments every 15 s, so proxies keep the connection open;
- the stream ends when the token is revoked or expires, or when the server stops.

A ``Last-Event-ID`` that is not one of these cursors (not an RFC 3339 time with a zone, before
1970, or more than a day ahead of this server's clock) is refused before the stream starts:
see :func:`parse_event_id`. Each token may hold :class:`StreamSlots` streams open at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import anyio.to_thread
import structlog
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from notifier.core.limits import EARLIEST_TIME
from notifier.db.database import Database, DatabaseUnavailableError
from notifier.notifications import changed_since, latest_change
from notifier.resources import NotificationResource
from notifier.runtime.logs import rfc3339
from notifier.tokens.lifecycle import TokenNotFoundError, TokenStore
from notifier.web.auth import Principal

log = structlog.get_logger("notifier.web")

_STEP_S = 0.25  # how often a waiting stream checks whether the server is stopping
# How far ahead of this server's clock a cursor may be: the writers' clocks (other hosts) may
# run a little ahead, never a day.
CURSOR_AHEAD = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How the stream polls."""

    poll: timedelta = timedelta(seconds=1)
    lookback: timedelta = timedelta(seconds=30)
    keepalive: timedelta = timedelta(seconds=15)
    recheck: timedelta = timedelta(seconds=30)  # how often the caller's token is looked at again
    retry_ms: int = 2000  # the client's reconnection delay


def changed_at(notification: NotificationResource) -> datetime:
    """When *notification* last changed: seen, acknowledged or resolved."""
    stamps = [notification.last_seen, notification.acknowledged_at, notification.resolved_at]
    return max(stamp for stamp in stamps if stamp is not None)


class InvalidCursorError(ValueError):
    """A ``Last-Event-ID`` that is not a cursor this stream hands out."""


def parse_event_id(text: str | None, *, now: datetime) -> datetime | None:
    """The cursor a client resumes from (``Last-Event-ID``); None when absent.

    The ids are the change times the stream sends (RFC 3339 with a zone). Anything else is
    refused with :class:`InvalidCursorError` rather than ignored: a client that resumes from
    "now" instead of its own place would silently miss what changed in between. Aware times
    compare without converting, so ``0001-01-01T00:00:00+23:59`` is refused here instead of
    overflowing the first time the stream subtracts its look-back from it.
    """
    shown = (text or "").strip()
    if not shown:
        return None
    try:
        moment = datetime.fromisoformat(shown)
    except ValueError:
        raise InvalidCursorError(f"{shown!r} is not an event id of this stream") from None
    if moment.tzinfo is None:
        refusal: str | None = "has no timezone; event ids end in Z"
    elif moment < EARLIEST_TIME:
        refusal = "is before 1970"
    elif moment > now + CURSOR_AHEAD:
        refusal = "is more than a day ahead of the server's clock"
    else:
        refusal = None
    if refusal is not None:
        raise InvalidCursorError(f"{shown!r} {refusal}")
    return moment.astimezone(UTC)


class StreamSlots:
    """How many streams each token holds open in this process, at most *limit* at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Count one more stream for *key*; False (and nothing counted) when it has *limit*."""
        with self._lock:
            held = self._open.get(key, 0)
            if held >= self.limit:
                return False
            self._open[key] = held + 1
            return True

    def give_back(self, key: str) -> None:
        """One stream of *key* ended."""
        with self._lock:
            held = self._open.get(key, 0) - 1
            if held > 0:
                self._open[key] = held
            else:
                self._open.pop(key, None)

    def held(self, key: str) -> int:
        """The streams *key* holds open now."""
        with self._lock:
            return self._open.get(key, 0)


class SlotStreamingResponse(StreamingResponse):
    """A streaming answer that gives its slot back however it ends.

    The slot is released when the answer is over, sent to the end, cut by the client, or
    failed; the generator's own ``finally`` would not run for a stream that never started.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        release: Callable[[], None],
        media_type: str,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then give the slot back."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _event(kind: str, data: str, event_id: str | None = None) -> bytes:
    lines = [f"event: {kind}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode("utf-8")


@dataclass
class Watch:
    """What one stream has sent: each notification's state and its change time, and the cursor."""

    cursor: datetime | None
    sent: dict[str, tuple[str, datetime]] = field(default_factory=dict)

    def remember(self, row: NotificationResource) -> None:
        """Count *row*'s present state as sent."""
        self.sent[row.id] = (row.model_dump_json(), changed_at(row))

    def news(self, rows: list[NotificationResource], lookback: timedelta) -> list[bytes]:
        """The events for the rows whose state was not sent yet; moves the cursor."""
        events: list[bytes] = []
        for row in rows:
            state = row.model_dump_json()
            known = self.sent.get(row.id)
            if known is not None and known[0] == state:
                continue
            moment = changed_at(row)
            self.sent[row.id] = (state, moment)
            if self.cursor is None or moment > self.cursor:
                self.cursor = moment
            events.append(_event("notification", state, rfc3339(moment)))
        if self.cursor is not None:
            # Rows older than the look-back are not read again, so their states can go.
            horizon = self.cursor - lookback
            for notification_id in [key for key, (_, at) in self.sent.items() if at < horizon]:
                del self.sent[notification_id]
        return events


class StreamHost(Protocol):
    """Where streams read from, how they poll, and the event that ends them all (the API)."""

    database: Database
    stream: StreamOptions
    closing: threading.Event  # set when the server stops

    @property
    def tokens(self) -> TokenStore:
        """Where the stream looks whether its caller's token is still valid."""


@dataclass(frozen=True, slots=True)
class NotificationStream:
    """Produce the SSE bytes for one client."""

    host: StreamHost
    principal: Principal

    async def events(self, watch: Watch) -> AsyncIterator[bytes]:
        """The stream from *watch*: ready, then notifications as they change, until stopped."""
        options = self.host.stream
        cursor_text = rfc3339(watch.cursor) if watch.cursor is not None else None
        log.info("stream.opened", token_id=self.principal.token_id or "bootstrap")
        yield f"retry: {options.retry_ms}\n\n".encode()
        yield _event("ready", json.dumps({"cursor": cursor_text}))
        quiet = 0.0
        since_recheck = 0.0
        try:
            while not self.host.closing.is_set():
                if not await self._wait(options.poll.total_seconds()):
                    break
                quiet += options.poll.total_seconds()
                since_recheck += options.poll.total_seconds()
                if since_recheck >= options.recheck.total_seconds():
                    since_recheck = 0.0
                    if not await anyio.to_thread.run_sync(self._still_valid):
                        yield _event("end", json.dumps({"reason": "the token is no longer valid"}))
                        break
                try:
                    rows = await anyio.to_thread.run_sync(self._poll, watch)
                except DatabaseUnavailableError as error:
                    log.warning("stream.poll_failed", reason=str(error))
                    rows = []
                for chunk in watch.news(rows, options.lookback):
                    quiet = 0.0
                    yield chunk
                if quiet >= options.keepalive.total_seconds():
                    quiet = 0.0
                    yield b": keep-alive\n\n"
        finally:
            log.info("stream.closed", token_id=self.principal.token_id or "bootstrap")

    async def _wait(self, seconds: float) -> bool:
        """Sleep *seconds* in short steps; False as soon as the server is stopping."""
        left = seconds
        while left > 0:
            if self.host.closing.is_set():
                return False
            step = min(_STEP_S, left)
            await anyio.sleep(step)
            left -= step
        return not self.host.closing.is_set()

    def start(self, resume_from: datetime | None) -> Watch:
        """Resume after *resume_from*, or start now: what already happened is not re-sent.

        Called before the answer starts, so that a database that does not answer is a 503.
        """
        if resume_from is not None:
            # Rows changed shortly before the cursor are sent again: the client's list is
            # keyed by id, so a repeat costs nothing, while a gap would lose an update.
            return Watch(cursor=resume_from)
        cursor = latest_change(self.host.database)
        watch = Watch(cursor=cursor)
        if cursor is not None:
            for row in changed_since(self.host.database, cursor - self.host.stream.lookback):
                watch.remember(row)
        return watch

    def _poll(self, watch: Watch) -> list[NotificationResource]:
        since = (
            watch.cursor - self.host.stream.lookback
            if watch.cursor is not None
            else datetime.min.replace(tzinfo=UTC)
        )
        return changed_since(self.host.database, since)

    def _still_valid(self) -> bool:
        token_id = self.principal.token_id
        if token_id is None:
            return True
        try:
            status = self.host.tokens.get(token_id).status
        except TokenNotFoundError:
            return False
        except DatabaseUnavailableError:
            return True  # not known to be revoked; the next look decides
        return status not in {"revoked", "expired"}
