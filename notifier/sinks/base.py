"""What the message sinks (webhook, email, apprise) share: their name, route, retries, stop.

Each is built from the same parts of a :class:`~notifier.sinks.registry.SinkContext`
(:func:`parts`), and keeps them the same way; a sink adds only what is its own.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, NotRequired, TypedDict, Unpack

from notifier.sinks import MESSAGE_KINDS

if TYPE_CHECKING:
    from notifier.sinks import Route
    from notifier.sinks.registry import Retry, SinkContext


class SinkParts(TypedDict):
    """The parts every message sink takes."""

    route: Route
    retry: Retry
    slice_name: str  # the unit of "less than X <slice>s"
    stop: NotRequired[threading.Event | None]  # the daemon's stop request (SIGTERM)


class MessageSink:
    """A sink that sends messages about expiring, expired and renewed tokens."""

    kinds = MESSAGE_KINDS
    digest = False

    def __init__(self, name: str, **parts: Unpack[SinkParts]) -> None:
        self.name = name
        self.route = parts["route"]
        self._retry = parts["retry"]
        self._slice_name = parts["slice_name"]
        self._stop = parts.get("stop")


def parts(context: SinkContext) -> SinkParts:
    """The message sink's parts of *context*."""
    return SinkParts(
        route=context.route, retry=context.retry, slice_name=context.slice_name, stop=context.stop
    )
