"""Sinks deliver notices somewhere: one module per kind, built through the registry.

A sink takes a batch and answers one :class:`Outcome` per notice, in order. It translates its
own errors at its edge (``Outcome.failed("webhook answered 500", permanent=False)``); the check
pass alone decides what a failure means for the delivery state. A notice a stop request
(SIGTERM) kept from being sent is ``Outcome.interrupted()``: neither sent nor failed, and the
pass gives its claim back.

Each sink instance has a :class:`Route`: which owners, labels, sources and kinds it hears
about. A notice its route leaves out is recorded as skipped, and the sink never sees it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from notifier.core.model import Notice, NoticeKind

# What a channel delivers; "resolved" is internal (the UI sink closes its notification).
MESSAGE_KINDS = frozenset({NoticeKind.EXPIRING, NoticeKind.EXPIRED, NoticeKind.RENEWED})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a sink did with one notice."""

    ok: bool
    error: str | None = None
    permanent: bool = False  # retrying the same notice cannot succeed (4xx, bad address)
    stopped: bool = False  # a stop request came first: not sent, and its claim goes back

    @classmethod
    def sent(cls) -> Outcome:
        """The sink accepted the notice."""
        return _SENT

    @classmethod
    def failed(cls, error: str, *, permanent: bool = False) -> Outcome:
        """The sink could not deliver the notice, for *error*."""
        return cls(ok=False, error=error, permanent=permanent)

    @classmethod
    def interrupted(cls) -> Outcome:
        """A stop request came before the notice was sent (or while it was in flight)."""
        return _INTERRUPTED


_SENT = Outcome(ok=True)
_INTERRUPTED = Outcome(ok=False, error="interrupted: the daemon is stopping", stopped=True)


@dataclass(frozen=True, slots=True)
class Route:
    """Which notices a sink instance hears about; empty parts match everything.

    - ``owners``: glob patterns matched against the token's owner, case-insensitively
      (``*@platform.example.com``); a token without an owner matches only ``-``.
    - ``labels``: every ``key: pattern`` must match the token's label (glob).
    - ``sources``: glob patterns of source names (``store``, ``sql:*``).
    - ``kinds``: expiring, expired, renewed.
    """

    owners: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    kinds: frozenset[NoticeKind] = MESSAGE_KINDS

    def accepts(self, notice: Notice) -> bool:
        """Say whether a notice belongs to this route."""
        if notice.kind not in self.kinds:
            return False
        if self.sources and not any(fnmatch.fnmatchcase(notice.source, p) for p in self.sources):
            return False
        if self.owners:
            owner = (notice.owner or "-").lower()
            if not any(fnmatch.fnmatchcase(owner, pattern.lower()) for pattern in self.owners):
                return False
        return all(
            key in notice.labels and fnmatch.fnmatchcase(notice.labels[key], pattern)
            for key, pattern in self.labels.items()
        )


EVERYTHING = Route()


class Sink(Protocol):
    """Deliver notices somewhere."""

    name: str  # stable instance name: "log", "webhook:ops"; its delivery state is keyed by it
    route: Route  # what it hears about
    kinds: frozenset[NoticeKind]  # what it can deliver at all
    digest: bool  # True: one delivery per pass with every notice (one email per recipient)

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Deliver *notices*; one outcome per notice, in order."""
        ...

    def close(self) -> None:
        """Release what the sink holds (connections, files)."""
        ...


def accepts(sink: Sink, notice: Notice) -> bool:
    """Whether *sink* takes *notice*: a kind it delivers, on its route."""
    if notice.kind not in sink.kinds:
        return False
    return notice.kind is NoticeKind.RESOLVED or sink.route.accepts(notice)
