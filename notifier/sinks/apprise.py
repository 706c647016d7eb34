"""The apprise sink: Slack, Teams, Telegram, ntfy, Matrix and 100+ more, through Apprise.

An optional extra (``pip install apprise`` in notifier's environment, or
``pip install '.[apprise]'`` from a clone). Each notice is one message to every configured
URL; the result is read per URL, and a notice counts as delivered when every URL took it. A
retry resends to all of them, so give each channel its own instance (``apprise:slack``,
``apprise:ntfy``) when duplicates matter. Errors name the URL's scheme, never the URL, which
carries the channel's token.

Up to ``concurrency`` notices are sent at once, off the pass's thread, with the webhook's
retries, deadline and stop (notifier/sinks/retrying.py). Each send in flight has an Apprise
object of its own for each URL (a pool per URL, grown on demand), because Apprise keeps call
state on its objects. A URL whose plugin paces its own requests (``request_rate_per_sec``:
Slack waits 1.2 s between two, most plugins 5.5 s) has a pool of one, so the pacing Apprise
keeps on that object still holds: such a channel takes one message at a time, as before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Unpack

from notifier.config.options import KindOptions, OptionError, option_list
from notifier.core.model import Notice
from notifier.sinks import Outcome
from notifier.sinks.base import MessageSink, SinkParts, parts
from notifier.sinks.config import ROUTE_OPTIONS, check_templates
from notifier.sinks.registry import SinkContext
from notifier.sinks.retrying import (
    DEFAULT_CONCURRENCY,
    Retrier,
    Throttle,
    Transient,
    check_concurrency,
)
from notifier.sinks.templates import DEFAULT_TITLE, inline, load, token_context

OPTIONS = KindOptions(
    ("urls", "title", "template", "concurrency", *ROUTE_OPTIONS), secrets=frozenset({"urls"})
)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check that Apprise is installed and understands every URL, the templates, the concurrency."""
    urls = option_list("urls", options.get("urls"))
    if not urls:
        raise OptionError("urls", "is required: one or more Apprise URLs (json://, slack://, ...)")
    try:
        import apprise  # noqa: PLC0415 - an optional extra
    except ImportError:
        raise OptionError(
            "urls",
            "the apprise library is not installed: pip install apprise (in notifier's environment)",
        ) from None
    for url in urls:
        if apprise.Apprise.instantiate(url) is None:
            scheme = url.split("://", 1)[0]
            raise OptionError("urls", f"Apprise does not understand a {scheme}:// URL")
    return {
        "urls": urls,
        "concurrency": check_concurrency(options.get("concurrency")),
        **check_templates(options, [("title", None), ("template", "apprise.txt.j2")]),
    }


class _Channel:
    """One Apprise URL: a pool of Apprise objects, one per send in flight."""

    def __init__(self, url: str, capacity: int) -> None:
        self.scheme = url.split("://", 1)[0]
        self._url = url
        first = self._open()
        paced = any(getattr(service, "request_rate_per_sec", 0) > 0 for service in first)
        self._capacity = 1 if paced else capacity
        self._opened = 1
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle.put(first)
        self._lock = threading.Lock()

    def _open(self) -> Any:
        import apprise  # noqa: PLC0415 - an optional extra, checked at configuration

        target = apprise.Apprise()
        target.add(self._url)
        return target

    def take(self) -> Any:
        """An idle Apprise object for this URL; a new one while the pool may grow, else wait."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._opened < self._capacity
            if grow:
                self._opened += 1
        return self._open() if grow else self._idle.get()

    def give_back(self, target: Any) -> None:
        """Return *target* to the pool."""
        self._idle.put(target)


class AppriseSink(MessageSink):
    """Send each notice to a set of Apprise URLs, up to *concurrency* notices at once."""

    def __init__(self, name: str, *, options: dict[str, Any], **common: Unpack[SinkParts]) -> None:
        super().__init__(name, **common)
        concurrency = options.get("concurrency", DEFAULT_CONCURRENCY)
        self._title = inline(options.get("title"), DEFAULT_TITLE)
        self._body = load(options.get("template"), "apprise.txt.j2")
        self._channels = [_Channel(url, concurrency) for url in options["urls"]]
        self._throttle = Throttle(concurrency, sink=name)

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Send each notice to every URL, several notices at once; one outcome per notice."""
        retrier = Retrier(self._retry, sink=self.name, stop=self._stop, throttle=self._throttle)
        return retrier.run_all([partial(self._send, notice) for notice in notices])

    def _send(self, notice: Notice) -> None:
        context = token_context(notice, self._slice_name)
        title = self._title.render(context).strip()
        body = self._body.render(context).strip()
        refused = []
        for channel in self._channels:
            target = channel.take()
            try:
                if self._stop is not None and self._stop.is_set():
                    # It waited for a paced channel past a stop: not sent, the claim goes back.
                    raise Transient("stopping")
                if not target.notify(body=body, title=title):
                    refused.append(channel.scheme)
            finally:
                channel.give_back(target)
        if refused:
            raise Transient(f"apprise: the {', '.join(f'{s}://' for s in refused)} service failed")

    def close(self) -> None:
        """Nothing to release."""


def build(name: str, context: SinkContext) -> AppriseSink:
    """Build the apprise sink called *name*."""
    return AppriseSink(name, options=dict(context.options), **parts(context))
