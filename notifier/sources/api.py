"""What the sources that read a provider's HTTP API share: options, requests, pages, failures.

GitLab, GitHub and StackRox Central are read through :class:`ApiClient`: one connection pool
per source, every request bounded by the source's timeout, read-only (GET, or a provider's
read-only POST), a 429 or 503 answer's ``Retry-After`` waited out (bounded by the timeout,
twice at most), and every failure a :class:`notifier.sources.SourceError` that names the
provider's address and what it answered, never the token. Pages are followed by the RFC
8288 ``Link`` header (``rel="next"``) that GitHub and GitLab's keyset pagination send, or by
a provider's own next-page header (GitLab's ``X-Next-Page``).

The options every such kind takes are checked here: the API's URL, the token (a secret), a
CA bundle and the timeout.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from notifier.config.options import OptionError
from notifier.sources import SourceError

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({429, 503})
RETRIES = 2
MAX_PAGES = 100_000  # a provider that links pages in a loop is stopped here
_LINK = re.compile(r"<(?P<url>[^>]*)>\s*;\s*(?P<params>[^,]*)")


# --- options ------------------------------------------------------------------------------


def check_url(option: str, value: object, example: str) -> str:
    """An http(s) URL without credentials, query or fragment, without its trailing slash."""
    if not isinstance(value, str) or not value.strip():
        raise OptionError(option, f"is required: the server's URL, e.g. {example}")
    address = value.strip().rstrip("/")
    try:
        url = urlsplit(address)
        port_ok = url.port is None or url.port > 0
    except ValueError:
        url, port_ok = None, False
    if url is None or url.scheme not in {"http", "https"} or not url.hostname or not port_ok:
        raise OptionError(option, f"{address!r} is not an http(s) URL")
    if url.username is not None or url.password is not None:
        raise OptionError(option, "must not hold a user or password: give the token option")
    if url.query or url.fragment:
        raise OptionError(option, "must not hold a query or a fragment")
    return address


def check_token(option: str, value: object, what: str) -> str:
    """A required secret: *what* says which token is needed."""
    if not isinstance(value, str) or not value.strip():
        raise OptionError(option, f"is required: {what}")
    return value.strip()


def check_ca_file(option: str, value: object) -> Path | None:
    """A CA bundle to verify the server with, or None for the system's."""
    if value is None:
        return None
    if not isinstance(value, str) or not Path(value).is_file():
        raise OptionError(option, f"{value!r} is not a readable file")
    return Path(value)


# --- requests -----------------------------------------------------------------------------


class ApiClient:
    """A provider's API, read with a token, for one source.

    *base* is the API's root (``https://gitlab.example.com/api/v4``); paths are relative to
    it, and a next-page URL may be absolute (it must then be on the same host).
    """

    def __init__(
        self,
        *,
        base: str,
        headers: Mapping[str, str],
        timeout: timedelta,
        ca_file: Path | None = None,
        error_text: Callable[[httpx.Response], str] | None = None,
        retryable: Callable[[httpx.Response], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # httpx only for a pass that reads an API: the settings import the sources (#13).
        import httpx  # noqa: PLC0415

        self.base = base.rstrip("/") + "/"
        self._host = urlsplit(self.base).netloc
        self._timeout = timeout.total_seconds()
        self._sleep = sleep
        self._error_text = error_text or _error_text
        # Which answers are waited out and retried: 429 and 503, and what the provider adds
        # (GitHub's 403 with x-ratelimit-remaining: 0).
        self._retryable = retryable or (lambda _: False)
        # httpx deprecates verify=<path>: a context of the system's defaults, trusting the file.
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._client = httpx.Client(
            headers=dict(headers),
            timeout=self._timeout,
            verify=verify,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def url(self, path: str) -> str:
        """The absolute URL of *path* (relative to the API's root, or already absolute)."""
        return urljoin(self.base, path.lstrip("/")) if "://" not in path else path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """The answer to one request, after waiting out 429/503 answers' Retry-After.

        A connection failure or a timeout is a :class:`SourceError`; any status is returned,
        for the caller to tell what it means (:meth:`check` fails on the unexpected ones).
        """
        import httpx  # noqa: PLC0415 - loaded by __init__ already; see there

        url = self.url(path)
        if urlsplit(url).netloc != self._host:
            raise SourceError(f"{self.base}: a next page on another host ({url}) is not followed")
        for attempt in range(RETRIES + 1):
            try:
                response = self._client.request(method, url, params=params, json=json)
            except httpx.HTTPError as error:
                raise SourceError(f"{self.shown(url)}: {type(error).__name__}: {error}") from None
            waits = response.status_code in RETRY_STATUSES or self._retryable(response)
            if not waits or attempt == RETRIES:
                return response
            self._sleep(self.retry_after(response))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """The JSON document at *path*; a :class:`SourceError` for any answer but 2xx."""
        response = self.request("GET", path, params=params)
        return self.document(self.check(response))

    def check(self, response: httpx.Response) -> httpx.Response:
        """*response* if it is a success; else a :class:`SourceError` saying what it was."""
        if response.is_success:
            return response
        where = self.shown(str(response.request.url))
        status = response.status_code
        if status == 401:  # noqa: PLR2004
            raise SourceError(f"{where}: 401 the token was refused (expired, revoked or wrong)")
        if status == 403:  # noqa: PLR2004
            raise SourceError(
                f"{where}: 403 the token may not read this: {self._error_text(response)}"
            )
        raise SourceError(f"{where}: {status} {self._error_text(response)}")

    def document(self, response: httpx.Response) -> Any:
        """The JSON of *response*; a :class:`SourceError` when it is not JSON."""
        try:
            return response.json()
        except ValueError:
            raise SourceError(
                f"{self.shown(str(response.request.url))}: the answer is not JSON"
            ) from None

    def pages(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        next_page: Callable[[httpx.Response], str | None] | None = None,
    ) -> Iterator[Any]:
        """The JSON document of each page from *path*, following *next_page* (default: Link).

        *next_page* gives the next page's URL or path from an answer, None on the last.
        """
        follow = next_page or link_next
        url: str | None = path
        query = params
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self.check(self.request("GET", url, params=query))
            yield self.document(response)
            url, query = follow(response), None  # a next link holds its own query
        raise SourceError(f"{self.base}: more than {MAX_PAGES} pages; stopped")

    def retry_after(self, response: httpx.Response) -> float:
        """How long the server asked to wait, bounded by the timeout (1 s when unsaid).

        ``Retry-After`` is seconds or an HTTP date; GitHub's ``x-ratelimit-reset`` (Unix
        seconds) stands in when a 429 carries no Retry-After.
        """
        text = response.headers.get("Retry-After")
        wait = 1.0
        if text is not None:
            wait = _seconds_or_date(text)
        elif (reset := response.headers.get("x-ratelimit-reset")) is not None:
            try:
                wait = float(reset) - time.time()
            except ValueError:
                wait = 1.0
        return min(max(wait, 0.0), self._timeout)

    def shown(self, url: str) -> str:
        """*url* without its query (which may hold a page cursor, never a secret here)."""
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


def link_next(response: httpx.Response) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header, or None."""
    header = response.headers.get("Link")
    if not header:
        return None
    for match in _LINK.finditer(header):
        for param in match["params"].split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return match["url"]
    return None


def _seconds_or_date(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # noqa: PLC0415 - rare

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return 1.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


def _error_text(response: httpx.Response) -> str:
    """What a provider said went wrong: its ``message`` or ``error`` field, else the reason."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        for key in ("message", "error", "error_description", "errors"):
            value = document.get(key)
            if value:
                text = value if isinstance(value, str) else str(value)
                return " ".join(text.split())[:300]
    return response.reason_phrase


def parse_time(value: object, *, where: str, field: str) -> datetime | None:
    """An RFC 3339 time from a provider (None for null or empty), in UTC.

    Nanoseconds (Go's RFC 3339) are cut to microseconds; a time without a zone is UTC.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SourceError(f"{where}: {field}: {value!r} is not a time")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SourceError(f"{where}: {field}: {value!r} is not a time") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
