"""Every failure of the HTTP API as one JSON shape, and the handlers that turn errors into it.

The shape is ``{"error": code, "message": text, "field": name | null}``: ``code`` is stable for
programs (``unauthorized``, ``forbidden``, ``rate_limited``, ``not_found``, ``invalid_json``,
``invalid_request``, ``payload_too_large``, ``unavailable``, ``internal``), ``message`` says what
is wrong for a person, and ``field`` names the field at fault when there is one. No response
carries a stack trace: an unexpected exception is logged with its traceback and answered with
a plain 500, once (:class:`notifier.web.middleware.CatchUnexpected`: Starlette's own handler
would hand the exception on to uvicorn, which logs the traceback a second time).

```
ApiProblem            raised by the API's own code: status, code, message, field, headers
RequestValidationError  FastAPI's: malformed JSON (400) or a field refused by a model (422)
HTTPException         Starlette's: an unknown path (404) or method (405)
DatabaseUnavailableError  503 with Retry-After; the caller tries again later
Exception             500, logged as api.failed
```
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from notifier.db.database import DatabaseUnavailableError

log = structlog.get_logger("notifier.web")

RETRY_UNAVAILABLE_S = 5
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ApiError(BaseModel):
    """The body of every error answer of the API."""

    model_config = ConfigDict(frozen=True)

    error: str  # a stable code: unauthorized, forbidden, rate_limited, not_found, ...
    message: str  # what is wrong, for a person
    field: str | None = None  # the field at fault, dotted (labels.team), when one is


class ApiProblem(Exception):  # noqa: N818 - it is a problem report (RFC 9457's word), not a bug
    """A refusal the API answers with :class:`ApiError`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The JSON answer."""
        body = ApiError(error=self.code, message=self.message, field=self.field).model_dump()
        return JSONResponse(body, status_code=self.status, headers={**NO_STORE, **self.headers})


NO_STORE = {"Cache-Control": "no-store"}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ApiError, "description": "No such id"}}


def not_found(error: LookupError) -> ApiProblem:
    """404 for a lookup that found nothing; the store's message names the id."""
    return ApiProblem(404, "not_found", str(error.args[0]) if error.args else "not found")


@contextmanager
def missing_as_404(*missing: type[LookupError]) -> Iterator[None]:
    """Answer 404 when the block raises one of *missing* (the store's "no such id")."""
    try:
        yield
    except missing as error:
        raise not_found(error) from None


def caller_gone() -> ApiProblem:
    """401 for a caller whose token was deleted since the gate admitted it."""
    return ApiProblem(401, "unauthorized", "the token is not valid")


def unavailable(path: object, error: Exception) -> JSONResponse:
    """503 with ``Retry-After``: the database does not answer; logged as ``api.unavailable``."""
    log.error("api.unavailable", path=path, reason=str(error))
    return ApiProblem(
        503,
        "unavailable",
        "the database does not answer; try again shortly",
        headers={"Retry-After": str(RETRY_UNAVAILABLE_S)},
    ).response()


def failed(method: object, path: object, error: Exception) -> JSONResponse:
    """500 for an unexpected exception, logged once as ``api.failed`` with its traceback."""
    # The traceback goes to the log, never into the answer.
    log.error("api.failed", method=method, path=path, error=type(error).__name__, exc_info=error)
    return ApiProblem(500, "internal", "an internal error occurred; it has been logged").response()


# Each status the API answers with an ApiError, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiError, "description": "Malformed JSON, or a Last-Event-ID of no event"},
    401: {"model": ApiError, "description": "No token, or an unknown, expired or revoked one"},
    403: {"model": ApiError, "description": "The token lacks the scope, or the address is refused"},
    413: {"model": ApiError, "description": "The body is larger than 64 KiB"},
    415: {"model": ApiError, "description": "The body is not sent as application/json"},
    422: {"model": ApiError, "description": "A field was refused; `field` names it"},
    429: {"model": ApiError, "description": "Over the rate limit; see Retry-After"},
    503: {"model": ApiError, "description": "The database does not answer; see Retry-After"},
}


def _location(loc: Sequence[int | str]) -> str | None:
    """``("body", "labels", "team")`` -> ``labels.team``; ``("query", "within")`` -> ``within``.

    A query parameter given several times is named without the position of the value
    refused (``status``, not ``status.1``): the query has one field of that name.
    """
    parts = [str(part) for part in loc]
    if parts and parts[0] == "query":
        parts = parts[1:2]
    elif parts and parts[0] in {"body", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or None


def _describe(error: Mapping[str, Any]) -> tuple[str | None, str]:
    field = _location(error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return field, f"{field}: unknown field"
    if kind == "missing":
        return field, f"{field or 'body'}: is required"
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    return field, f"{field}: {message}" if field else message


def _validation_failed(request: Request, error: Exception) -> JSONResponse:
    del request
    assert isinstance(error, RequestValidationError)  # noqa: S101 - registered for this type
    errors = list(error.errors())
    if any(item.get("type") == "json_invalid" for item in errors):
        first = next(item for item in errors if item.get("type") == "json_invalid")
        detail = first.get("ctx", {}).get("error", "")
        return ApiProblem(
            400, "invalid_json", f"the body is not valid JSON: {detail}".strip()
        ).response()
    described = [_describe(item) for item in errors] or [(None, "the request is invalid")]
    return ApiProblem(
        422, "invalid_request", "; ".join(text for _, text in described), field=described[0][0]
    ).response()


def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)  # noqa: S101 - registered for this type
    if error.status_code == 404:  # noqa: PLR2004
        message = f"nothing at {request.url.path}"
        code = "not_found"
    elif error.status_code == 405:  # noqa: PLR2004
        message = f"{request.method} is not allowed on {request.url.path}"
        code = "method_not_allowed"
        allow = {"Allow": allowed_methods(request)}
        return ApiProblem(405, code, message, headers=allow).response()
    elif error.status_code == 413:  # noqa: PLR2004 - a streamed body past the limit
        message = str(error.detail)
        code = "payload_too_large"
    elif error.status_code == 400:  # noqa: PLR2004 - FastAPI could not parse the body at all
        message = f"the body could not be read: {error.detail}"
        code = "invalid_json"
    else:
        message = str(error.detail)
        code = "http_error"
    return ApiProblem(error.status_code, code, message, headers=error.headers).response()


def allowed_methods(request: Request) -> str:
    """Every method some route of the app takes at the request's path (HEAD wherever GET).

    Starlette's own 405 names the methods of the first route that matched the path alone, so
    ``/api/v1/tokens`` (GET and POST, two routes) would say ``Allow: GET``.
    """
    # Asked of the routes method by method: a route (or an included router, which FastAPI
    # keeps whole) says only whether it takes the request, not which methods it would take.
    routes = request.app.router.routes
    methods = {
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    }
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _problem(request: Request, error: Exception) -> JSONResponse:
    del request
    assert isinstance(error, ApiProblem)  # noqa: S101 - registered for this type
    return error.response()


def _unavailable(request: Request, error: Exception) -> JSONResponse:
    return unavailable(request.url.path, error)


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    return failed(request.method, request.url.path, error)


def install(app: FastAPI) -> None:
    """Answer every error of *app* with :class:`ApiError`."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ApiProblem, _problem)
    app.add_exception_handler(DatabaseUnavailableError, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
