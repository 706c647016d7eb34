"""Test helpers shipped with notifier: sinks that record or fail as told, and a policy builder.

These are notifier's public test helpers, in the manner of ``structlog.testing`` and httpx's
``MockTransport``: build the real objects (a ``Checker``, anything that takes a ``Sink`` or a
``Policy``) around them instead of patching notifier's modules.

- :class:`RecordingSink` accepts every notice and remembers it.
- :class:`FlakySink` fails the notices its script names (all of them until :meth:`recover`,
  the first *n*, or those of some tokens), transiently or for good, and records the rest.
- :func:`make_policy` builds a :class:`Policy` with the defaults the tests use (a 7-day
  detection window, a 24 h backoff, hourly passes, days in the warn line) and the fields a
  test names: ``make_policy(backoff_interval=timedelta(0))``.
- :class:`FixedClock` (from ``notifier.core.clock``) is the clock to pair them with.
- :func:`fill_tokens` bulk-inserts a fleet of made-up tokens (a million in seconds) for
  tests and benchmarks of the lists at scale; it imports the database layer when called.

Importing this module costs what importing the domain types does: no database, no HTTP, no
pytest.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Collection, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from notifier.core.clock import FixedClock
from notifier.core.model import Notice, NoticeKind, Threshold
from notifier.core.policy import Policy
from notifier.sinks import EVERYTHING, MESSAGE_KINDS, Outcome, Route

if TYPE_CHECKING:
    from notifier.db.database import Database

__all__ = ["FixedClock", "FlakySink", "RecordingSink", "fill_tokens", "make_policy"]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(eq=False)  # a sink is itself, not its contents: compared and hashed by identity
class RecordingSink:
    """A sink that accepts every notice and remembers it, batch by batch.

    It implements :class:`notifier.sinks.Sink`; subclass it and call ``super().deliver()``
    to look at the world from inside a delivery.
    """

    name: str = "recorder"
    route: Route = EVERYTHING
    _: KW_ONLY
    kinds: frozenset[NoticeKind] = MESSAGE_KINDS
    digest: bool = False
    received: list[Notice] = field(default_factory=list, init=False)  # accepted, in order
    batches: list[list[Notice]] = field(default_factory=list, init=False)  # one per call
    closed: bool = field(default=False, init=False)

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Accept every notice: record it and answer sent."""
        self.batches.append(list(notices))
        self.received.extend(notices)
        return [Outcome.sent()] * len(notices)

    def close(self) -> None:
        """Remember that the sink was closed."""
        self.closed = True


@dataclass(eq=False)
class FlakySink(RecordingSink):
    """A sink that fails the notices its script names and records the others.

    A notice fails while the sink is ``failing`` (until :meth:`recover`) and

    - ``failures``: it is among the first *failures* notices offered (``None``: no count);
    - ``tokens``: its token id is one of these (``None``: any token).

    With no script it fails everything until :meth:`recover`. Failures are transient unless
    ``permanent``; each says ``error``, as a sink translating a receiver's answer would.
    """

    name: str = "flaky"
    _: KW_ONLY
    failures: int | None = None
    tokens: Collection[str] | None = None
    permanent: bool = False
    error: str = "receiver answered 503"
    failing: bool = field(default=True, init=False)
    attempts: int = field(default=0, init=False)  # notices offered, failed or not
    failed: list[Notice] = field(default_factory=list, init=False)  # answered with a failure

    def recover(self) -> None:
        """From now on, deliver every notice."""
        self.failing = False

    def fails(self, notice: Notice) -> bool:
        """Whether the script fails *notice*, given what failed before it."""
        if not self.failing:
            return False
        if self.tokens is not None and notice.token_id not in self.tokens:
            return False
        return self.failures is None or len(self.failed) < self.failures

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Answer each notice as the script says; record the ones delivered."""
        outcomes: list[Outcome] = []
        for notice in notices:
            self.attempts += 1
            if self.fails(notice):
                self.failed.append(notice)
                outcomes.append(Outcome.failed(self.error, permanent=self.permanent))
            else:
                self.received.append(notice)
                outcomes.append(Outcome.sent())
        self.batches.append(list(notices))
        return outcomes


class PolicyFields(TypedDict, total=False):
    """The fields of :class:`Policy` a test may name."""

    detection_window: timedelta
    backoff_interval: timedelta
    pass_interval: timedelta
    log_slice: timedelta
    thresholds: tuple[Threshold, ...]
    notify_expired: bool


TEST_POLICY = Policy(
    detection_window=7 * DAY, backoff_interval=DAY, pass_interval=HOUR, log_slice=DAY
)


def make_policy(**overrides: Unpack[PolicyFields]) -> Policy:
    """The tests' policy with *overrides*; a test names only what it is about."""
    return replace(TEST_POLICY, **overrides)


_WORDS = (
    "ci", "deploy", "backup", "metrics", "scanner", "prod", "staging", "billing", "search",
    "ingest", "mirror", "release", "audit", "export", "sync", "nightly", "runner", "gateway",
)  # fmt: skip
_FILL_BATCH = 10_000
_NEVER, _REVOKED, _SUPERSEDED = 50, 100, 200  # one token in so many


def fill_tokens(
    database: Database,
    count: int,
    *,
    now: datetime,
    seed: int = 14,
    owners: int = 1000,
    horizon: timedelta = timedelta(days=400),
) -> None:
    """Insert *count* made-up tokens into *database*'s tokens table, reproducibly by *seed*.

    Names are two of :data:`_WORDS` and a number (``ci-deploy-123456``, unique); owners
    ``owner-N@example.com`` of *owners*; labels ``team`` and ``env``. Expiries spread evenly
    from 60 days before *now* to *horizon* after it; one in fifty never expires, one in a
    hundred is revoked and one in two hundred superseded. The secrets' hashes are left out:
    these tokens are watched, never presented. One transaction, by the database's bulk
    path, with the secondary indexes built after the rows (a million in about 15 s), then
    the planner's statistics refreshed (PostgreSQL), as ``tokens import`` does.
    """
    from notifier.db.models import Token  # noqa: PLC0415 - the database layer, when used

    table = Token.__table__
    load = database.load(table)
    rows = _made_up(count, now=now, seed=seed, owners=owners, horizon=horizon)
    with (
        database.write() as connection,
        database.indexes_aside(connection, table),
        load.writing(connection) as append,
    ):
        for batch in _batches(rows):
            append(batch)
    # As an import does: PostgreSQL's planner needs the statistics of the new rows.
    database.refresh_statistics([table.name], count=table.name)


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == _FILL_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _made_up(
    count: int, *, now: datetime, seed: int, owners: int, horizon: timedelta
) -> Iterator[dict[str, Any]]:
    from notifier.core.ids import ID_LENGTH  # noqa: PLC0415

    draw = random.Random(seed)  # noqa: S311 - made-up data, reproducible, not secret
    start = now - timedelta(days=60)
    span = (now + horizon - start).total_seconds()
    pairs = [f"{a}-{b}" for a in _WORDS for b in _WORDS if a != b]
    ids = base64.b32encode(draw.randbytes(count * ID_LENGTH * 5 // 8 + 5)).decode().lower()
    permissions = ["tokens:read"]
    for number in range(count):
        token_id = ids[number * ID_LENGTH : (number + 1) * ID_LENGTH]
        created_at = start - timedelta(days=draw.randrange(1, 365))
        yield {
            "id": token_id,
            "name": f"{pairs[draw.randrange(len(pairs))]}-{number}",
            "role": "Admin" if number % 10 == 0 else "Analyst",
            "permissions": permissions,
            "owner": f"owner-{draw.randrange(owners)}@example.com",
            "labels": {"team": f"team-{number % 40}", "env": ("prod", "dev")[number % 2]},
            "created_at": created_at,
            "expires_at": (
                None
                if number % _NEVER == _NEVER - 1
                else start + timedelta(seconds=draw.random() * span)
            ),
            "revoked_at": created_at + timedelta(days=1) if number % _REVOKED == 7 else None,  # noqa: PLR2004
            "superseded_by": "x" + token_id[1:] if number % _SUPERSEDED == 3 else None,  # noqa: PLR2004
        }
