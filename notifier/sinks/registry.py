"""The sink kinds, their instance names (``kind`` or ``kind:label``), and their construction.

A new kind is one module with its options (``OPTIONS``, ``check_options(options)``) and a
``build(name, context)`` function, and one line here.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

from notifier.sinks import EVERYTHING, Route

if TYPE_CHECKING:
    from notifier.core.clock import Clock
    from notifier.db.database import Database
    from notifier.sinks import Sink

# kind -> one-line summary, for settings messages and docs
SINK_KINDS: dict[str, str] = {
    "log": "the warn line, at WARNING level",
    "ui": "notifications shown by `notifications list` and the web page",
    "webhook": "a signed JSON POST per notice",
    "email": "one digest per recipient per pass, over SMTP",
    "apprise": "Slack, Teams, Telegram, ntfy, Matrix and 100+ more, through Apprise",
}
_MODULES: dict[str, str] = {
    "log": "notifier.sinks.log",
    "ui": "notifier.sinks.ui",
    "webhook": "notifier.sinks.webhook",
    "email": "notifier.sinks.email",
    "apprise": "notifier.sinks.apprise",
}
_NAME = re.compile(r"([a-z]+)(?::([a-z0-9][a-z0-9_-]{0,31}))?")


class SinkNameError(ValueError):
    """A sink name that is malformed or of an unknown kind."""


def parse_sink_name(name: str) -> tuple[str, str | None]:
    """Split ``kind[:label]`` and check the kind exists."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise SinkNameError(
            f"{name!r} is not a sink name (kind or kind:label, lowercase, e.g. log, webhook:ops)"
        )
    kind, label = match.groups()
    if kind not in SINK_KINDS:
        raise SinkNameError(f"unknown sink {kind!r} (known: {', '.join(SINK_KINDS)})")
    return kind, label


@dataclass(frozen=True, slots=True)
class Retry:
    """How a sink retries transient failures within one pass."""

    deadline: timedelta = timedelta(minutes=2)
    attempts: int = 5
    wait_initial: timedelta = timedelta(milliseconds=200)
    wait_max: timedelta = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink may need to build itself."""

    database: Database
    clock: Clock
    slice_name: str
    route: Route = EVERYTHING
    options: Mapping[str, Any] = field(default_factory=dict)
    retry: Retry = field(default_factory=Retry)
    window: timedelta = timedelta(hours=168)
    # The daemon's stop request (SIGTERM): network sinks end their retries and sends on it.
    stop: threading.Event | None = None


def sink_module(kind: str) -> ModuleType:
    """The module of the sink *kind*, imported when first asked for."""
    return importlib.import_module(_MODULES[kind])


def build_sink(name: str, context: SinkContext) -> Sink:
    """Build the sink instance called *name*."""
    kind, _label = parse_sink_name(name)
    builder: Callable[[str, SinkContext], Sink] = sink_module(kind).build
    return builder(name, context)
