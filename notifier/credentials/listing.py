"""The list of every watched credential: the store's tokens merged with what the others found.

See :mod:`notifier.credentials`. Each part pages by its own keyset
(:class:`notifier.db.keyset.Merged`); filters are conditions in SQL on each part, with the
status rules of the tokens list (:class:`notifier.tokens.listing.Statuses`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    false,
    func,
    literal,
    or_,
    select,
)

from notifier.core.model import CredentialKind, WatchedToken
from notifier.core.policy import Policy, days_left
from notifier.credentials.found import FOUND, read_times
from notifier.db.database import Database
from notifier.db.keyset import Merged, Order, Part
from notifier.db.models import Token
from notifier.resources import CredentialResource, CredentialStatus
from notifier.tokens.listing import (
    DEFAULT_STATUSES,
    Statuses,
    TokenFilter,
    TokenLists,
    owned_and_expiring,
)
from notifier.tokens.views import STORE, token_status

_tokens = Token.__table__
_EARLIEST = datetime.min.replace(tzinfo=UTC)  # stands for None in a sort key
KINDS: tuple[str, ...] = tuple(kind.value for kind in CredentialKind)
STATUSES: tuple[CredentialStatus, ...] = get_args(CredentialStatus)
SortName = Literal["expires_at", "-expires_at", "name", "-name"]
SORTS: tuple[str, ...] = get_args(SortName)


# --- the list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialFilter:
    """Which credentials a list holds; every field narrows it. The defaults: all of them."""

    kinds: frozenset[str] = frozenset(KINDS)
    statuses: frozenset[CredentialStatus] = frozenset(STATUSES)
    source: str | None = None
    owner: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # every one must match
    expiring_within: timedelta | None = None  # expires after now, and within this
    expires_after: datetime | None = None  # expires at or after
    expires_before: datetime | None = None  # expires before
    search: str | None = None  # a prefix of the name (any case) or of the id

    def described(self) -> dict[str, Any]:
        """The filters as JSON-able values, for a cursor's fingerprint."""
        return {
            "kinds": sorted(self.kinds),
            "statuses": sorted(self.statuses),
            "source": self.source,
            "owner": self.owner,
            "labels": sorted(self.labels),
            "within": None
            if self.expiring_within is None
            else self.expiring_within.total_seconds(),
            "after": self.expires_after,
            "before": self.expires_before,
            "search": self.search,
        }

    def tokens(self) -> TokenFilter:
        """The same filter for the store's part: its tokens, but the revoked ones."""
        return TokenFilter(
            statuses=DEFAULT_STATUSES & self.statuses,
            owner=self.owner,
            labels=self.labels,
            expiring_within=self.expiring_within,
            expires_after=self.expires_after,
            expires_before=self.expires_before,
            search=self.search,
        )


def _sort_key(column: str) -> Any:
    """The key rows of both parts merge by, as each part's index orders them."""
    if column == "expires_at":

        def by_expiry(row: RowMapping) -> tuple[Any, ...]:
            expires = row["expires_at"]
            return (expires is None, expires or _EARLIEST, row["source"], row["id"])

        return by_expiry

    def by_name(row: RowMapping) -> tuple[Any, ...]:
        return (row["name"], row["source"], row["id"])

    return by_name


class CredentialLists:
    """Pages and streams of every watched credential, at the time *now* says."""

    def __init__(self, database: Database, policy: Policy, *, store: bool = True) -> None:
        self.database = database
        self.policy = policy
        self.store = store  # whether the store is one of the configured sources
        self._tokens = TokenLists(database, policy)

    def _merged(self, wanted: CredentialFilter, now: datetime, sort: str) -> Merged:
        if sort not in SORTS:
            raise ValueError(f"sort: {sort!r} is not one of {', '.join(SORTS)}")
        descending = sort.startswith("-")
        column = sort.removeprefix("-")
        nullable = column == "expires_at"
        parts: list[Part] = []
        if self._store_wanted(wanted):
            token_columns = (_tokens.c[column], _tokens.c.id)
            parts.append(
                Part(
                    "store",
                    select(_tokens, literal(STORE).label("source")).where(
                        *self._tokens.conditions(wanted.tokens(), now)
                    ),
                    Order(sort, token_columns, descending=descending, nullable=nullable),
                )
            )
        if wanted.source != STORE:
            c = FOUND.c
            parts.append(
                Part(
                    "found",
                    select(FOUND).where(*self._found_conditions(wanted, now)),
                    Order(
                        sort, (c[column], c.source, c.id), descending=descending, nullable=nullable
                    ),
                )
            )
        return Merged(sort, parts, _sort_key(column), descending=descending)

    def _store_wanted(self, wanted: CredentialFilter) -> bool:
        return (
            self.store
            and wanted.source in {None, STORE}
            and CredentialKind.TOKEN.value in wanted.kinds
            and bool(wanted.tokens().statuses)
        )

    def _found_conditions(
        self, wanted: CredentialFilter, now: datetime
    ) -> list[ColumnElement[bool]]:
        c, database = FOUND.c, self.database
        conditions: list[ColumnElement[bool]] = [c.kind.in_(sorted(wanted.kinds))]
        if set(wanted.statuses) != set(STATUSES):
            statuses = Statuses(now, self.policy, database, FOUND)
            conditions.append(statuses.any_of(frozenset(wanted.statuses)))
        if wanted.source is not None:
            conditions.append(c.source == wanted.source)
        conditions.extend(owned_and_expiring(FOUND, wanted, now))
        if wanted.search is not None:
            # Other sources find thousands, not millions: a search scans their names.
            folded = database.fold_case(wanted.search)
            conditions.append(
                or_(
                    database.starts_with(func.lower(c.name), folded, indexed=False),
                    database.starts_with(c.id, wanted.search, indexed=False),
                )
            )
        if not wanted.kinds:
            conditions.append(false())
        return conditions

    def page(
        self,
        wanted: CredentialFilter,
        *,
        now: datetime,
        sort: str = "expires_at",
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[CredentialResource], str | None]:
        """One page of the credentials *wanted* holds, and the next page's cursor (None: last).

        Raises :class:`notifier.db.keyset.CursorError` for a cursor made for another list,
        and ValueError for an unknown sort.
        """
        merged = self._merged(wanted, now, sort)
        page = merged.page(
            self.database,
            {"list": wanted.described(), "store": self.store},
            limit=limit,
            cursor=cursor,
        )
        seen = read_times(self.database) if page.rows else {}
        return [self._resource(row, now, seen) for row in page.rows], page.next_cursor

    def stream(
        self,
        wanted: CredentialFilter,
        *,
        now: datetime,
        sort: str = "expires_at",
        limit: int | None = None,
        batch: int = 1000,
    ) -> Iterator[CredentialResource]:
        """Every credential *wanted* holds (at most *limit*), read a page at a time."""
        seen = read_times(self.database)
        rows = self._merged(wanted, now, sort).stream(self.database, batch=batch)
        for count, row in enumerate(rows):
            if limit is not None and count >= limit:
                return
            yield self._resource(row, now, seen)

    def _resource(
        self, row: RowMapping, now: datetime, seen: dict[str, datetime]
    ) -> CredentialResource:
        store = "superseded_by" in row  # a row of tokens, not of credentials
        token = WatchedToken(
            source=STORE if store else row["source"],
            token_id=row["id"],
            name=row["name"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"] if store else None,
            owner=row["owner"],
            created_at=row["created_at"],
            labels=row["labels"] or {},
            credential_kind=CredentialKind.TOKEN if store else CredentialKind(row["kind"]),
        )
        status = token_status(token, row["superseded_by"] if store else None, now, self.policy)
        expires = token.expires_at
        return CredentialResource(
            kind=token.credential_kind.value,
            source=token.source,
            id=token.token_id,
            name=token.name,
            owner=token.owner,
            labels=dict(token.labels),
            expires_at=expires,
            days_left=(
                days_left(expires, now, self.policy.log_slice)
                if expires is not None and expires > now
                else None
            ),
            status="expired" if status == "revoked" else status,
            first_seen=row["created_at"] if store else row["first_seen"],
            seen_at=None if store else seen.get(token.source),
        )
