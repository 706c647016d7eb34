"""Token sources: where a pass finds the credentials it watches.

A source only lists credentials: those of a window (now - lookback, now + horizon], and
those of given ids (to see what became of a token a sink was told about). It knows nothing
of sinks or of the delivery state; the ledger (notifier/delivery/ledger) matches what it
lists with what each sink was told. ``store`` is the daemon's own table, which the ledger
joins with the state inside the database; ``sql`` and ``file`` read tokens that live in
other systems, ``vault`` Vault/OpenBao tokens and leases, ``x509`` certificates in files and
on TLS endpoints. Each token is keyed by (source name, id), so ids from different sources
never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from notifier.core.model import WatchedToken
from notifier.core.policy import in_window


class SourceError(Exception):
    """A source could not be read this pass (unreachable, a missing column, bad rows)."""


class TokenSource(Protocol):
    """Tell a pass which tokens expire soon."""

    name: str  # "store", "sql:billing": the source part of every state key

    def window(self, now: datetime, horizon: timedelta, lookback: timedelta) -> list[WatchedToken]:
        """The tokens expiring in (now - lookback, now + horizon].

        The lookback keeps recently expired tokens in view for their expired notice. Raise
        :class:`SourceError` if the source cannot be read.
        """
        ...

    def by_ids(self, token_ids: Sequence[str]) -> dict[str, WatchedToken]:
        """The tokens of *token_ids* the source still has, by id."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class PartlyReadable(Protocol):
    """A source of many places (files, endpoints), some of which may fail while others read."""

    def problems(self) -> Sequence[str]:
        """What the last window could not read; the rest of the window was read."""
        ...


@runtime_checkable
class Inventory(Protocol):
    """A source that reads everything it watches each pass, not just the window."""

    def found(self) -> Sequence[WatchedToken]:
        """Every credential the last window read, expiring soon or not."""
        ...


class ReadsWhole:
    """What a source that reads everything it watches on every pass shares (an Inventory).

    The source gives :meth:`snapshot`; the window, the lookup by ids and what was found all
    come from the last snapshot, which the window takes. A lookup before any window takes
    one itself. :meth:`in_view` says which credentials a window holds.
    """

    name: str
    _last: dict[str, WatchedToken] | None = None

    def snapshot(self, now: datetime) -> dict[str, WatchedToken]:
        """Everything the source watches, read at *now*, by id; :class:`SourceError` if not."""
        raise NotImplementedError

    def in_view(
        self, token: WatchedToken, now: datetime, horizon: timedelta, lookback: timedelta
    ) -> bool:
        """Whether the window holds *token*: it expires in (now - lookback, now + horizon]."""
        return in_window(token, now, horizon, lookback)

    def window(self, now: datetime, horizon: timedelta, lookback: timedelta) -> list[WatchedToken]:
        """Read everything; what the window holds."""
        self._last = self.snapshot(now)
        return [t for t in self._last.values() if self.in_view(t, now, horizon, lookback)]

    def by_ids(self, token_ids: Sequence[str]) -> dict[str, WatchedToken]:
        """The credentials of *token_ids* as the last window read them (gone ones left out)."""
        if self._last is None:
            self._last = self.snapshot(datetime.now(UTC))
        current = self._last
        return {token_id: current[token_id] for token_id in token_ids if token_id in current}

    def found(self) -> list[WatchedToken]:
        """Everything the last window read, in the window or not."""
        return list((self._last or {}).values())
