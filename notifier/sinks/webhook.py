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
``httpx.HTTPTransport`` (thread-safe), and go out from the delivery's threads. The sink hands
each request to the transport rather than to an ``httpx.Client``: with one fixed URL, the
Client's work per request (merging URL, headers and cookies, the auth and redirect flows,
choosing a transport by URL) bought nothing and cost about a third of the CPU of a POST,
which is what bounds the rate against a fast receiver (docs/performance.md). What of it
matters is done once, here: credentials in the URL become a Basic ``authorization`` header,
and the proxy the environment names for the URL (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, ``NO_PROXY``) is chosen at start.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Unpack
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

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
        self._headers = {
            "user-agent": f"notifier/{notifier.__version__}",
            "content-type": "application/json",
        }
        if target.userinfo:  # what httpx.Client did with credentials in the URL
            credentials = f"{target.username}:{target.password}".encode()
            self._headers["authorization"] = f"Basic {base64.b64encode(credentials).decode()}"
        self._signer = Webhook(secret) if secret else None
        self._clock = clock
        self._window = window
        self._extensions = {"timeout": httpx.Timeout(timeout.total_seconds()).as_dict()}
        self._concurrency = concurrency
        self._throttle = Throttle(concurrency, sink=name)
        self._transport = self._open_transport()

    def _open_transport(self) -> httpx.HTTPTransport:
        connections = self._concurrency
        return httpx.HTTPTransport(
            proxy=self._proxy,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """POST the notices, several at once; one outcome per notice, sharing one deadline."""
        retrier = Retrier(self._retry, sink=self.name, stop=self._stop, throttle=self._throttle)
        transport = self._transport
        try:
            return retrier.run_all([partial(self._post, transport, notice) for notice in notices])
        finally:
            if retrier.abandoned:
                # The abandoned POSTs keep their pool, closed once the last of them ends; a
                # fresh one serves whatever comes next.
                self._transport = self._open_transport()
                retrier.close(transport.close)

    def _post(self, transport: httpx.HTTPTransport, notice: Notice) -> None:
        sent_at = self._clock.now()
        body = json.dumps(
            payload(notice, sent_at=sent_at, window=self._window, slice_name=self._slice_name),
            separators=(",", ":"),
        )
        headers = {
            **self._headers,
            "webhook-id": notice.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
        }
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(notice.id, sent_at, body)
        request = httpx.Request(
            "POST",
            self._url,
            content=body.encode("utf-8"),
            headers=headers,
            extensions=self._extensions,
        )
        try:
            response = transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TimeoutException:
            raise Transient("webhook timed out") from None
        except httpx.TransportError as error:
            raise Transient(f"webhook unreachable: {type(error).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:  # noqa: PLR2004
            return
        message = f"webhook answered {status}"
        if status in TRANSIENT_STATUSES or status >= 500:  # noqa: PLR2004
            raise Transient(
                message,
                retry_after=_retry_after(response),
                throttled=status == TOO_MANY_REQUESTS,
            )
        raise Permanent(message)

    def close(self) -> None:
        """Close the connection pool."""
        self._transport.close()


def _environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for *url* (as httpx.Client reads it), or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
        reference = parsedate_to_datetime(response.headers["date"])
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
