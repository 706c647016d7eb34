"""What every list route of the API shares: ``limit``, ``cursor`` and the ``Link`` header.

A list answers a JSON array of at most ``limit`` resources (100 unless asked, at most 1,000).
When more follow, the answer's ``Link`` header (RFC 8288) holds the next page's URL, the same
query with a ``cursor`` that starts after this page's last row (:mod:`notifier.db.keyset`).
A cursor is bound to its list's filters and sort: given with others, or garbled, it is
refused with 400 ``invalid_cursor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from notifier.db.keyset import CursorError
from notifier.tokens.listing import MAX_PAGE
from notifier.web.errors import ApiError, ApiProblem

T = TypeVar("T")

DEFAULT_PAGE = 100

Limit = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE, description=f"at most this many (1 to {MAX_PAGE})"),
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=2048,
        description="where the page starts: the cursor of the previous page's Link header",
    ),
]

PAGED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page of the list; the next page's URL in the Link header",
        "headers": {
            "Link": {
                "description": 'RFC 8288: `<url>; rel="next"` while more rows follow',
                "schema": {"type": "string"},
            }
        },
    },
    400: {"model": ApiError, "description": "A cursor made for another list, or not ours"},
}


@contextmanager
def cursor_checked() -> Iterator[None]:
    """400 ``invalid_cursor`` for a cursor the list refuses."""
    try:
        yield
    except CursorError as error:
        raise ApiProblem(400, "invalid_cursor", f"cursor: {error}", field="cursor") from None


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    """Point the answer's ``Link`` header at the next page, when there is one."""
    if cursor is None:
        return
    query = [
        (name, value) for name, value in request.query_params.multi_items() if name != "cursor"
    ]
    query.append(("cursor", cursor))
    response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'


def paged(
    request: Request,
    response: Response,
    read: Callable[[], tuple[list[T], str | None]],
) -> list[T]:
    """The page *read* returns, with the next page's link on *response*."""
    with cursor_checked():
        items, cursor = read()
    link_next(request, response, cursor)
    return items
