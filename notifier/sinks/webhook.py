"""The webhook sink: one signed JSON POST per notice, up to ``concurrency`` of them at once.

Signing follows the Standard Webhooks spec: ``webhook-id`` is the notice id (a retry reuses
it, so receivers deduplicate), ``webhook-timestamp`` the send time in Unix seconds, and
``webhook-signature`` is ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` keyed by
the secret; receivers reject stale timestamps, which makes a replay useless.

2xx is success. 408, 425, 429, 5xx and network errors are transient and retried (honouring
Retry-After); any other status is permanent. A 429 also halves the POSTs in flight, and a
Retry-After pauses every POST of the instance until then (notifier/sinks/retrying.py has the
rule). Errors never carry the URL, which may hold a token of its own. A stop request ends a
delivery at once, even with POSTs in flight.

The POSTs of an instance share one pool of ``concurrency`` keep-alive connections, an
``httpcore.ConnectionPool`` (thread-safe; httpx's own transport underneath), and go out from
the delivery's threads. The sink hands each request to that pool rather than to an
``httpx.Client`` or ``httpx.HTTPTransport``: with one fixed URL, the Client's work per request
(merging URL, headers and cookies, the auth and redirect flows, choosing a transport by URL)
and the transport's (an ``httpx.Request`` converted to httpcore's and the response wrapped
back) bought nothing and cost CPU (the Client about a third of a POST, the transport about
a fifth of what was left), which is what bounds the rate against a fast receiver
(docs/performance.md). What of it matters is done once, here, as
httpx does it: credentials in the URL become a Basic ``authorization`` header, the proxy the
environment names for the URL (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``)
is chosen at start and built as ``httpx.HTTPTransport`` builds it, and httpcore's errors are
told apart as httpx tells them: a timeout, or the receiver unreachable (named by the error's
class, the same names as httpx's). The pool's connections write each request in one send
(:class:`_WholeRequest`), not its head and body apart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import ssl
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Unpack
from urllib.parse import urlsplit

import httpcore
import httpx

import notifier
from notifier.config.options import KindOptions, OptionError, option_duration
from notifier.core.clock import Clock
from notifier.core.model import Notice
from notifier.sinks import Outcome
from notifier.sinks.base import MessageSink, SinkParts, parts
from notifier.sinks.config import ROUTE_OPTIONS
from notifier.sinks.payload import payload
from notifier.sinks.registry import SinkContext
from notifier.sinks.retrying import (
    DEFAULT_CONCURRENCY,
    Permanent,
    Retrier,
    Throttle,
    Transient,
    check_concurrency,
)

TRANSIENT_STATUSES = frozenset({408, 425, 429})
TOO_MANY_REQUESTS = 429
KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept: httpx's default
# httpcore's errors that httpx calls a TransportError, other than a timeout: the receiver (or
# the proxy) could not be reached or spoke no HTTP we understand.
UNREACHABLE = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)
OPTIONS = KindOptions(
    ("url", "secret", "timeout", "concurrency", *ROUTE_OPTIONS), frozenset({"url", "secret"})
)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check a webhook's URL, signing secret, timeout and concurrency."""
    secret = options.get("secret")
    if secret is not None:
        if not isinstance(secret, str):
            raise OptionError("secret", "expected text")
        try:
            webhook_secret_key(secret)
        except ValueError as error:
            raise OptionError("secret", str(error)) from None
    return {
        "url": _http_url("url", options.get("url")),
        "secret": secret,
        "timeout": option_duration("timeout", options.get("timeout"), "10s"),
        "concurrency": check_concurrency(options.get("concurrency")),
    }


def _http_url(option: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OptionError(option, "is required")
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise OptionError(option, "expected an http:// or https:// URL")
    return value.strip()


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after an optional ``whsec_``."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected whsec_ followed by base64 (openssl rand -base64 32)") from None
    if len(key) < 16:  # noqa: PLR2004 - the Standard Webhooks minimum is 24 bytes; 16 is a floor
        raise ValueError("too short: use at least 24 random bytes (openssl rand -base64 32)")
    return key


class WebhookSink(MessageSink):
    """POST each notice as JSON to one URL, up to *concurrency* at once."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        secret: str | None,
        timeout: timedelta,
        clock: Clock,
        window: timedelta,
        concurrency: int = DEFAULT_CONCURRENCY,
        **common: Unpack[SinkParts],
    ) -> None:
        super().__init__(name, **common)
        target = httpx.URL(url)
        self._url = target.copy_with(userinfo=b"")
        self._proxy = _environment_proxy(self._url)
        self._target = httpcore.URL(
            scheme=self._url.raw_scheme,
            host=self._url.raw_host,
            port=self._url.port,
            target=self._url.raw_path,
        )
        # What every POST carries, as bytes for httpcore; host as httpx.Request writes it.
        self._headers = [
            (b"host", httpx.Request("POST", self._url).headers["host"].encode("ascii")),
            (b"user-agent", f"notifier/{notifier.__version__}".encode("ascii")),
            (b"content-type", b"application/json"),
        ]
        if target.userinfo:  # what httpx.Client did with credentials in the URL
            credentials = f"{target.username}:{target.password}".encode()
            self._headers.append((b"authorization", b"Basic " + base64.b64encode(credentials)))
        # An HMAC keyed once and copied per notice: what standardwebhooks' Webhook.sign
        # computes, without keying the hash afresh for every notice.
        self._signer = (
            hmac.new(webhook_secret_key(secret), digestmod=hashlib.sha256) if secret else None
        )
        self._clock = clock
        self._window = window
        self._extensions = {"timeout": httpx.Timeout(timeout.total_seconds()).as_dict()}
        self._concurrency = concurrency
        self._throttle = Throttle(concurrency, sink=name)
        self._ssl_context = httpx.create_ssl_context()  # as httpx.HTTPTransport's default
        self._backend = _WholeRequests()
        self._pool = self._open_pool()

    def _open_pool(self) -> httpcore.ConnectionPool:
        """``concurrency`` keep-alive connections, through the proxy if any, as httpx builds."""
        connections = self._concurrency
        if self._proxy is None:
            return httpcore.ConnectionPool(
                ssl_context=self._ssl_context,
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=KEEPALIVE_EXPIRY,
                network_backend=self._backend,
            )
        proxy = httpx.Proxy(self._proxy)  # raises ValueError on a scheme it does not know
        proxy_url = httpcore.URL(
            scheme=proxy.url.raw_scheme,
            host=proxy.url.raw_host,
            port=proxy.url.port,
            target=proxy.url.raw_path,
        )
        if proxy.url.scheme in {"socks5", "socks5h"}:
            return httpcore.SOCKSProxy(  # needs socksio, as httpx's SOCKS support does
                proxy_url=proxy_url,
                proxy_auth=proxy.raw_auth,
                ssl_context=self._ssl_context,
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=KEEPALIVE_EXPIRY,
                network_backend=self._backend,
            )
        return httpcore.HTTPProxy(
            proxy_url=proxy_url,
            proxy_auth=proxy.raw_auth,
            proxy_headers=proxy.headers.raw,
            ssl_context=self._ssl_context,
            proxy_ssl_context=proxy.ssl_context,
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=self._backend,
        )

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """POST the notices, several at once; one outcome per notice, sharing one deadline."""
        retrier = Retrier(self._retry, sink=self.name, stop=self._stop, throttle=self._throttle)
        pool = self._pool
        try:
            return retrier.run_all([partial(self._post, pool, notice) for notice in notices])
        finally:
            if retrier.abandoned:
                # The abandoned POSTs keep their pool, closed once the last of them ends; a
                # fresh one serves whatever comes next.
                self._pool = self._open_pool()
                retrier.close(pool.close)
            else:
                _close_idle(pool, keep=self._throttle.limit)

    def _post(self, pool: httpcore.ConnectionPool, notice: Notice) -> None:
        sent_at = self._clock.now()
        timestamp = str(int(sent_at.timestamp()))
        body = json.dumps(
            payload(notice, sent_at=sent_at, window=self._window, slice_name=self._slice_name),
            separators=(",", ":"),
        )
        content = body.encode("utf-8")
        headers = [
            *self._headers,
            (b"content-length", str(len(content)).encode("ascii")),
            (b"webhook-id", notice.id.encode("ascii")),
            (b"webhook-timestamp", timestamp.encode("ascii")),
        ]
        if self._signer is not None:
            # Standard Webhooks: v1, then base64 of HMAC-SHA256(key, "id.timestamp.body").
            signature = self._signer.copy()
            signature.update(f"{notice.id}.{timestamp}.".encode("ascii") + content)
            headers.append((b"webhook-signature", b"v1," + base64.b64encode(signature.digest())))
        request = httpcore.Request(
            b"POST", self._target, headers=headers, content=content, extensions=self._extensions
        )
        try:
            response = pool.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpcore.TimeoutException:
            raise Transient("webhook timed out") from None
        except UNREACHABLE as error:
            raise Transient(f"webhook unreachable: {type(error).__name__}") from None
        status = response.status
        if 200 <= status < 300:  # noqa: PLR2004
            return
        message = f"webhook answered {status}"
        if status in TRANSIENT_STATUSES or status >= 500:  # noqa: PLR2004
            raise Transient(
                message,
                retry_after=_retry_after(response.headers),
                throttled=status == TOO_MANY_REQUESTS,
            )
        raise Permanent(message)

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()


def _close_idle(pool: httpcore.ConnectionPool, *, keep: int) -> None:
    """Close the pool's idle connections past *keep*, between deliveries (none in flight).

    A first delivery opens a connection per send in flight, up to ``concurrency``, before the
    sends are measured; against a receiver that answers at once the limit then comes down to
    two, and httpcore's pool looks at every idle connection (a ``poll`` each) twice per
    request until their keep-alive runs out: more CPU than the POSTs. The pool drops a closed
    connection itself.
    """
    idle = [connection for connection in pool.connections if connection.is_idle()]
    for connection in idle[keep:]:
        connection.close()


class _WholeRequests(httpcore.NetworkBackend):
    """httpcore's own sockets, each writing a whole request at once (:class:`_WholeRequest`)."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _WholeRequest(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _WholeRequest(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _WholeRequest(httpcore.NetworkStream):
    """A connection that holds what is written until the answer is read, then sends it at once.

    httpcore writes a request's head and its body apart: two sends, two TCP segments, and two
    wake-ups of the receiver, where the send itself is the most costly call of a POST against
    a near receiver. A client of HTTP/1.1 reads only once the request is written, so the first
    read sends it all first. A write error then is passed over, as httpcore passes it over
    while it writes a request: the receiver may have closed early with an answer to read.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._held: list[bytes] = []
        self._timeout: float | None = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._held.append(buffer)
            self._timeout = timeout

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:
            held, self._held = b"".join(self._held), []
            with contextlib.suppress(httpcore.WriteError):
                self._stream.write(held, self._timeout)
        return self._stream.read(max_bytes, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # Nothing is held here: a tunnel's CONNECT was answered (read) before it.
        return _WholeRequest(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for *url* (as httpx.Client reads it), or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _retry_after(raw_headers: Sequence[tuple[bytes, bytes]]) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    headers = httpx.Headers(raw_headers)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
        reference = parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError):
        return None  # no usable date to count from: let the exponential backoff decide
    return max((moment - reference).total_seconds(), 0.0)


def build(name: str, context: SinkContext) -> WebhookSink:
    """Build the webhook sink called *name*."""
    options = context.options
    return WebhookSink(
        name,
        url=options["url"],
        secret=options.get("secret"),
        timeout=options["timeout"],
        clock=context.clock,
        window=context.window,
        concurrency=options.get("concurrency", DEFAULT_CONCURRENCY),
        **parts(context),
    )
