"""Lists of tokens at a fleet's scale: filters and sorts in SQL, keyset pages, counts.

The API's ``GET /tokens`` and ``/tokens/summary``, the web page and ``notifier tokens list``
read tokens through here. Every filter is a condition in SQL (a token's status too: the
same rules as :func:`notifier.tokens.views.token_status`, written for the database), every
sort pages by a keyset over an index (:mod:`notifier.db.keyset`), and counts are one
aggregate query, so no list reads more than its page and none holds every token in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from notifier.core.policy import Policy
from notifier.db.database import Database
from notifier.db.keyset import Order, page_after, stream_rows
from notifier.db.models import Token
from notifier.resources import TokenResource, TokenStatus
from notifier.tokens.views import STORE, token_resource

_tokens = Token.__table__
STATUSES: tuple[TokenStatus, ...] = get_args(TokenStatus)
# Every status but revoked: what a list shows unless it names statuses.
DEFAULT_STATUSES: frozenset[TokenStatus] = frozenset(STATUSES) - {"revoked"}
SORTS = ("expires_at", "name", "created_at")
# What ``sort`` takes: each of SORTS, ascending or (with "-") descending.
SortName = Literal["expires_at", "-expires_at", "name", "-name", "created_at", "-created_at"]
MAX_PAGE = 1000
BROAD_SEARCH = 20_000  # matches past which a search walks the sort's index (TokenLists._search)
SUMMARY_PAST_DAYS = 30
SUMMARY_FUTURE_DAYS = 90


def _order(sort: str) -> Order:
    descending = sort.startswith("-")
    column = sort.removeprefix("-")
    if column not in SORTS:
        raise ValueError(f"sort: {sort!r} is not one of {', '.join(sort_choices())}")
    return Order(
        name=sort,
        columns=(_tokens.c[column], _tokens.c.id),
        descending=descending,
        nullable=column == "expires_at",
    )


def sort_choices() -> list[str]:
    """What ``sort`` takes: each sortable column, ascending or (with ``-``) descending."""
    return list(get_args(SortName))


@dataclass(frozen=True)
class TokenFilter:
    """Which tokens a list holds. Every field narrows it; the defaults keep all but revoked."""

    statuses: frozenset[TokenStatus] = DEFAULT_STATUSES
    owner: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # every one must match
    source: str | None = None
    expiring_within: timedelta | None = None  # expires after now, and within this
    expires_after: datetime | None = None  # expires at or after
    expires_before: datetime | None = None  # expires before
    search: str | None = None  # a prefix of the name (any case) or of the id

    def described(self) -> dict[str, Any]:
        """The filters as JSON-able values, for a cursor's fingerprint."""
        return {
            "statuses": sorted(self.statuses),
            "owner": self.owner,
            "labels": sorted(self.labels),
            "source": self.source,
            "within": None
            if self.expiring_within is None
            else self.expiring_within.total_seconds(),
            "after": self.expires_after,
            "before": self.expires_before,
            "search": self.search,
        }


@dataclass(frozen=True)
class Statuses:
    """The SQL condition of each status at *now*, under *policy*, for the rows of *table*.

    *table* has ``expires_at`` and ``created_at``; where it has no ``revoked_at`` or
    ``superseded_by`` (the credentials other sources found), nothing in it is revoked or
    superseded.
    """

    now: datetime
    policy: Policy
    database: Database
    table: Table = _tokens
    conditions: dict[TokenStatus, ColumnElement[bool]] = field(init=False)

    def __post_init__(self) -> None:
        c, now = self.table.c, self.now
        revoked_at, superseded_by = c.get("revoked_at"), c.get("superseded_by")
        revoked: ColumnElement[bool]
        unrevoked: ColumnElement[bool]
        rotated: ColumnElement[bool]
        current: ColumnElement[bool]
        if revoked_at is None:
            revoked, unrevoked = false(), true()
        else:
            revoked = and_(revoked_at.is_not(None), revoked_at <= now)
            unrevoked = or_(revoked_at.is_(None), revoked_at > now)
        if superseded_by is None:
            rotated, current = false(), true()
        else:
            rotated, current = superseded_by.is_not(None), superseded_by.is_(None)
        live = and_(unrevoked, or_(c.expires_at.is_(None), c.expires_at > now))
        expired = and_(unrevoked, c.expires_at.is_not(None), c.expires_at <= now)
        superseded = and_(live, rotated)
        expiring = and_(live, current, self._inside_zone())
        active = and_(live, current, not_(self._inside_zone()))
        object.__setattr__(
            self,
            "conditions",
            {
                "revoked": revoked,
                "expired": expired,
                "superseded": superseded,
                "expiring": expiring,
                "active": active,
            },
        )

    def _inside_zone(self) -> ColumnElement[bool]:
        """Policy.zone(...).inside for a live token, not superseded: the expiring ones.

        In the window (expiring after now, within the horizon), and past a threshold: the
        widest fixed one, or the widest share of the token's lifetime. Without thresholds,
        within the detection window.
        """
        c, now, policy = self.table.c, self.now, self.policy
        expiry = c.expires_at
        in_window = and_(expiry.is_not(None), expiry > now, expiry <= now + policy.horizon)
        if not policy.thresholds:
            return and_(in_window, expiry <= now + policy.detection_window)
        reached: list[ColumnElement[bool]] = []
        fixed = [t.duration for t in policy.thresholds if t.duration is not None]
        if fixed:
            reached.append(expiry <= now + max(fixed))
        shares = [t.fraction for t in policy.thresholds if t.fraction is not None]
        if shares:
            reached.append(
                and_(
                    expiry > c.created_at,
                    self.database.share_of_lifetime_left(c.created_at, expiry, now, max(shares)),
                )
            )
        return and_(in_window, or_(*reached))

    def any_of(self, statuses: frozenset[TokenStatus]) -> ColumnElement[bool]:
        """A row of any of *statuses*."""
        if statuses >= set(STATUSES):
            return true()
        if not statuses:
            return false()
        return or_(*(self.conditions[status] for status in sorted(statuses)))


class ListFilter(Protocol):
    """The filters every list of credentials shares (TokenFilter, CredentialFilter)."""

    @property
    def owner(self) -> str | None:
        """Exactly this owner."""

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        """Every one of these labels."""

    @property
    def expiring_within(self) -> timedelta | None:
        """Expires after now and within this."""

    @property
    def expires_after(self) -> datetime | None:
        """Expires at or after this."""

    @property
    def expires_before(self) -> datetime | None:
        """Expires before this."""


def owned_and_expiring(
    table: Table, wanted: ListFilter, now: datetime
) -> list[ColumnElement[bool]]:
    """The owner, label and expiry conditions of *wanted* on *table*'s columns, at *now*."""
    c = table.c
    conditions: list[ColumnElement[bool]] = []
    if wanted.owner is not None:
        conditions.append(c.owner == wanted.owner)
    for key, value in wanted.labels:
        conditions.append(c.labels[key].as_string() == value)
    if wanted.expiring_within is not None:
        conditions.extend([c.expires_at > now, c.expires_at <= now + wanted.expiring_within])
    if wanted.expires_after is not None:
        conditions.append(c.expires_at >= wanted.expires_after)
    if wanted.expires_before is not None:
        conditions.append(c.expires_at < wanted.expires_before)
    return conditions


class TokenLists:
    """Pages, streams and counts of the tokens table, at the time *now* says."""

    def __init__(
        self, database: Database, policy: Policy, *, broad_search: int = BROAD_SEARCH
    ) -> None:
        self.database = database
        self.policy = policy
        self.broad_search = broad_search

    # --- the conditions -------------------------------------------------------------------

    def conditions(
        self, wanted: TokenFilter, now: datetime, *, statuses: bool = True
    ) -> list[ColumnElement[bool]]:
        """The conditions of the tokens *wanted* holds at *now* (its statuses unless told not)."""
        conditions: list[ColumnElement[bool]] = []
        if statuses:
            conditions.append(Statuses(now, self.policy, self.database).any_of(wanted.statuses))
        if wanted.source is not None and wanted.source != STORE:
            conditions.append(false())  # the store holds only its own tokens
        conditions.extend(owned_and_expiring(_tokens, wanted, now))
        if wanted.search is not None:
            conditions.append(self._search(wanted.search))
        return conditions

    def _search(self, text: str) -> ColumnElement[bool]:
        """A name that starts with *text* in any case, or an id that starts with it.

        A narrow search reads its matches from the search indexes, then sorts them. A broad
        one (``ci`` among a million: tens of thousands) would sort far more than a page: past
        :data:`BROAD_SEARCH` matches (about where sorting the matches costs what walking to
        a page of them does, sqrt(page x rows)) the list walks its sort's index instead and
        keeps the matches it meets. SQLite's
        planner, without statistics of a prefix's rows, is told which; PostgreSQL's knows.
        """
        database = self.database
        folded = database.fold_case(text)

        def matching(*, indexed: bool) -> ColumnElement[bool]:
            return or_(
                database.starts_with(func.lower(_tokens.c.name), folded, indexed=indexed),
                database.starts_with(_tokens.c.id, text, indexed=indexed),
            )

        broad = self.broad_search
        probe = select(literal(1)).where(matching(indexed=True)).limit(broad).subquery()
        with database.read() as connection:
            found = connection.execute(select(func.count()).select_from(probe)).scalar_one()
        return matching(indexed=found < broad)

    def _query(self, wanted: TokenFilter, now: datetime) -> Select[Any]:
        return select(_tokens).where(*self.conditions(wanted, now))

    # --- reading --------------------------------------------------------------------------

    def page(
        self,
        wanted: TokenFilter,
        *,
        now: datetime,
        sort: str = "expires_at",
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TokenResource], str | None]:
        """One page of the tokens *wanted* holds, and the cursor of the next (None: last).

        Raises :class:`notifier.db.keyset.CursorError` for a cursor made for another list,
        and ValueError for an unknown sort.
        """
        page = page_after(
            self.database,
            self._query(wanted, now),
            _order(sort),
            wanted.described(),
            limit=limit,
            cursor=cursor,
        )
        tokens = [token_resource(row, now, self.policy) for row in page.rows]
        return tokens, page.next_cursor

    def stream(
        self,
        wanted: TokenFilter,
        *,
        now: datetime,
        sort: str = "expires_at",
        limit: int | None = None,
        batch: int = MAX_PAGE,
    ) -> Iterator[TokenResource]:
        """Every token *wanted* holds (at most *limit*), read a page at a time."""
        order = _order(sort)
        for row in stream_rows(
            self.database, self._query(wanted, now), order, batch=batch, limit=limit
        ):
            yield token_resource(row, now, self.policy)

    # --- counting -------------------------------------------------------------------------

    def summary(self, wanted: TokenFilter, *, now: datetime) -> dict[str, Any]:
        """Counts by status, and expiries per UTC day from 30 days ago to 90 days ahead.

        Every filter of *wanted* but its statuses narrows both. A day counts the tokens not
        revoked nor superseded whose expiry falls on it: the expired ones for past days.
        """
        status = Statuses(now, self.policy, self.database)
        where = self.conditions(wanted, now, statuses=False)
        counts = [
            func.coalesce(func.sum(case((condition, 1), else_=0)), 0).label(name)
            for name, condition in status.conditions.items()
        ]
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        first, end = (
            today - timedelta(days=SUMMARY_PAST_DAYS),
            today + timedelta(days=SUMMARY_FUTURE_DAYS + 1),
        )
        c = _tokens.c
        day = self.database.utc_day(c.expires_at).label("day")
        per_day = (
            select(day, func.count().label("count"))
            .where(
                *where,
                or_(c.revoked_at.is_(None), c.revoked_at > now),
                c.superseded_by.is_(None),
                c.expires_at >= first,
                c.expires_at < end,
            )
            .group_by(day)
        )
        with self.database.read() as connection:
            totals = connection.execute(select(*counts).where(*where)).mappings().one()
            days = {row.day: row.count for row in connection.execute(per_day)}
        by_status = {name: int(totals[name]) for name in STATUSES}
        return {
            "now": now,
            "by_status": by_status,
            "total": sum(by_status.values()),
            "days": [
                {
                    "date": (first + timedelta(days=offset)).date().isoformat(),
                    "expiring": days.get((first + timedelta(days=offset)).date().isoformat(), 0),
                }
                for offset in range((end - first).days)
            ],
        }


MAX_LABEL_FILTERS = 20  # labels one list may require
MAX_LABEL_FILTER = 500  # characters of one key=value


def label_filters(texts: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``key=value`` texts as pairs; ValueError naming the first that is not one."""
    if len(texts) > MAX_LABEL_FILTERS:
        raise ValueError(f"label: at most {MAX_LABEL_FILTERS} labels, not {len(texts)}")
    pairs: list[tuple[str, str]] = []
    for text in texts:
        if len(text) > MAX_LABEL_FILTER:
            raise ValueError(f"label: longer than {MAX_LABEL_FILTER} characters")
        key, equals, value = text.partition("=")
        if not equals or not key:
            raise ValueError(f"label: {text!r} is not key=value")
        pairs.append((key, value))
    return tuple(pairs)


def statuses_of(texts: Sequence[str]) -> frozenset[TokenStatus]:
    """The statuses named; ValueError naming one that is not a status."""
    chosen: set[TokenStatus] = set()
    for text in texts:
        if text not in STATUSES:
            raise ValueError(f"status: {text!r} is not one of {', '.join(STATUSES)}")
        chosen.add(text)
    return frozenset(chosen)
