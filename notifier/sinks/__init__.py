"""Sinks deliver notices somewhere: one module per kind, built through the registry.

A sink takes a batch and answers one :class:`Outcome` per notice, in order. It translates its
own errors at its edge (``Outcome.failed("webhook answered 500")``); the check pass alone
decides what a failure means for the delivery state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from notifier.policy import Notice


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a sink did with one notice."""

    ok: bool
    error: str | None = None
    permanent: bool = False  # retrying the same notice cannot succeed (4xx, bad address)

    @classmethod
    def sent(cls) -> Outcome:
        """The sink accepted the notice."""
        return _SENT

    @classmethod
    def failed(cls, error: str, *, permanent: bool = False) -> Outcome:
        """The sink could not deliver the notice, for *error*."""
        return cls(ok=False, error=error, permanent=permanent)


_SENT = Outcome(ok=True)


class Sink(Protocol):
    """Deliver notices somewhere."""

    name: str  # stable instance name: "log", "webhook:ops"; its delivery state is keyed by it

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Deliver *notices*; one outcome per notice, in order."""
        ...

    def close(self) -> None:
        """Release what the sink holds (connections, files)."""
        ...
