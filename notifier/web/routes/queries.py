"""Query parameters of the API: a scalar given twice is refused, durations are checked.

A query parameter a route takes once (``active``, ``within``) is refused with 422 when it is
given twice: which of ``?active=garbage&active=true`` counts would otherwise be the framework's
choice, and a filter that reads one and a proxy that checks the other disagree.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request
from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from notifier.web.errors import ApiProblem
from notifier.web.schemas import duration


def query_duration(text: str, name: str) -> timedelta:
    """The duration of query parameter *name*; 422 naming it when refused."""
    try:
        return duration(text)
    except ValueError as error:
        raise ApiProblem(422, "invalid_request", f"{name}: {error}", field=name) from None


def _scalar_queries(dependant: Dependant) -> frozenset[str]:
    """The query parameters *dependant* (and what it depends on) takes one value of."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(
            param.alias
            for param in current.query_params
            # The test FastAPI itself uses to read a parameter's one value or its list.
            if not field_annotation_is_sequence(param.field_info.annotation)
        )
        pending.extend(current.dependencies)
    return frozenset(names)


class SingleValuedQuery:
    """A dependency of every route: a scalar query parameter given twice is 422.

    FastAPI keeps the last of repeated values, so ``?active=garbage&active=true`` would
    answer 200 as if the garbage were not there. Which parameters are scalars comes from each
    route's own declaration, looked up once per route.
    """

    def __init__(self) -> None:
        self._scalars: dict[int, frozenset[str]] = {}

    def __call__(self, request: Request) -> None:
        """Raise 422 naming the first scalar parameter the query repeats."""
        route = request.scope.get("route")
        if not isinstance(route, APIRoute):  # pragma: no cover - every API route is one
            return
        names = self._scalars.get(id(route))
        if names is None:
            names = self._scalars.setdefault(id(route), _scalar_queries(route.dependant))
        query = request.query_params
        for name in sorted(names):
            count = len(query.getlist(name))
            if count > 1:
                raise ApiProblem(
                    422,
                    "invalid_request",
                    f"{name}: given {count} times; it takes one value",
                    field=name,
                )
