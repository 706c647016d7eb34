"""Query parameters of the API: unknown ones and a scalar given twice are refused.

A query parameter no route declares (``?limt=10``) is refused with 422 naming it: ignored, it
would answer as if the filter applied. A parameter a route takes once (``active``,
``within``) is refused with 422 when it is given twice: which of ``?active=garbage&active=true``
counts would otherwise be the framework's choice, and a filter that reads one and a proxy
that checks the other disagree. Durations are checked here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Query, Request
from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from notifier.web.errors import ApiProblem
from notifier.web.schemas import DURATION_PATTERN, duration


def query_duration(text: str, name: str) -> timedelta:
    """The duration of query parameter *name*; 422 naming it when refused."""
    try:
        return duration(text)
    except ValueError as error:
        raise ApiProblem(422, "invalid_request", f"{name}: {error}", field=name) from None


# RFC 3339: a date, T (or a space), a time, then Z or an offset. Pydantic's own datetime
# would also take a number as Unix time (expires_after=2), which the document does not say.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def query_time(text: str | None, name: str) -> datetime | None:
    """The RFC 3339 time of query parameter *name*; 422 naming it when it is not one."""
    if text is None:
        return None
    problem = ApiProblem(
        422,
        "invalid_request",
        f"{name}: not an RFC 3339 time with its zone (e.g. 2027-01-31T00:00:00Z)",
        field=name,
    )
    if _RFC3339.fullmatch(text.strip()) is None:
        raise problem
    try:
        return datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise problem from None


# The filters every list of credentials takes (GET /tokens, GET /credentials), one each.
Owner = Annotated[str | None, Query(max_length=200, description="exactly this owner")]
Labels = Annotated[
    list[str] | None,
    Query(description="key=value: only those with this label (repeatable: all of them)"),
]
ExpiringWithin = Annotated[
    str | None,
    Query(
        max_length=64,
        description="a duration such as 7d: expires after now and within it",
        json_schema_extra={"pattern": DURATION_PATTERN},
    ),
]
ExpiresAfter = Annotated[
    str | None,
    Query(
        max_length=64,
        description="expires at or after this time (RFC 3339, with its zone)",
        json_schema_extra={"format": "date-time"},
    ),
]
ExpiresBefore = Annotated[
    str | None,
    Query(
        max_length=64,
        description="expires before this time (RFC 3339, with its zone)",
        json_schema_extra={"format": "date-time"},
    ),
]
Search = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="search: a name that starts with this, in any case, or an id that "
        "starts with it",
    ),
]


@dataclass(frozen=True, slots=True)
class ListFilters:
    """The checked values of the shared filters: labels, and the expiry bounds."""

    labels: tuple[tuple[str, str], ...]
    expiring_within: timedelta | None
    expires_after: datetime | None
    expires_before: datetime | None


def list_filters(
    label: list[str] | None,
    expiring_within: str | None,
    expires_after: str | None,
    expires_before: str | None,
) -> ListFilters:
    """The shared filters checked; 422 naming the parameter that is refused."""
    from notifier.tokens.listing import label_filters  # noqa: PLC0415 - with the lists

    try:
        labels = label_filters(label or [])
    except ValueError as error:
        raise ApiProblem(422, "invalid_request", str(error), field="label") from None
    return ListFilters(
        labels=labels,
        expiring_within=(
            None if expiring_within is None else query_duration(expiring_within, "expiring_within")
        ),
        expires_after=query_time(expires_after, "expires_after"),
        expires_before=query_time(expires_before, "expires_before"),
    )


def _queries(dependant: Dependant) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameters *dependant* (and what it depends on) takes, and the scalars."""
    names: set[str] = set()
    scalars: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        for param in current.query_params:
            names.add(param.alias)
            # The test FastAPI itself uses to read a parameter's one value or its list.
            if not field_annotation_is_sequence(param.field_info.annotation):
                scalars.add(param.alias)
        pending.extend(current.dependencies)
    return frozenset(names), frozenset(scalars)


class SingleValuedQuery:
    """A dependency of every route: an unknown query parameter, or a scalar twice, is 422.

    FastAPI ignores what a route does not declare, and keeps the last of repeated values, so
    ``?limt=10`` or ``?active=garbage&active=true`` would answer 200 as if the mistake were
    not there. Which parameters a route takes, and which are scalars, comes from its own
    declaration, looked up once per route.
    """

    def __init__(self) -> None:
        self._queries: dict[int, tuple[frozenset[str], frozenset[str]]] = {}

    def __call__(self, request: Request) -> None:
        """Raise 422 naming the first unknown parameter, or scalar parameter repeated."""
        route = request.scope.get("route")
        if not isinstance(route, APIRoute):  # pragma: no cover - every API route is one
            return
        known = self._queries.get(id(route))
        if known is None:
            known = self._queries.setdefault(id(route), _queries(route.dependant))
        names, scalars = known
        query = request.query_params
        unknown = sorted(name[:64] for name in set(query) - names)
        if unknown:
            takes = ", ".join(sorted(names)) or "none"
            raise ApiProblem(
                422,
                "invalid_request",
                f"{unknown[0]}: not a parameter of this route (it takes: {takes})",
                field=unknown[0],
            )
        for name in sorted(scalars):
            count = len(query.getlist(name))
            if count > 1:
                raise ApiProblem(
                    422,
                    "invalid_request",
                    f"{name}: given {count} times; it takes one value",
                    field=name,
                )
