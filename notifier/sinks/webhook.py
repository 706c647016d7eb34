"""The webhook sink: one signed JSON POST per notice.

Signing follows the Standard Webhooks spec: ``webhook-id`` is the notice id (a retry reuses
it, so receivers deduplicate), ``webhook-timestamp`` the send time in Unix seconds, and
``webhook-signature`` is ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` keyed by
the secret; receivers reject stale timestamps, which makes a replay useless.

2xx is success. 408, 429, 5xx and network errors are transient and retried (honouring
Retry-After); any other status is permanent. Errors never carry the URL, which may hold a
token of its own. A stop request ends a delivery at once, even with a POST in flight (see
notifier/sinks/retrying.py).
"""

from __future__ import annotations

import base64
import binascii
import json
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
from notifier.sinks.retrying import Permanent, Retrier, Transient

TRANSIENT_STATUSES = frozenset({408, 425, 429})
OPTIONS = KindOptions(("url", "secret", "timeout", *ROUTE_OPTIONS), frozenset({"url", "secret"}))


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check a webhook's URL, signing secret and timeout."""
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
    """POST each notice as JSON to one URL."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        secret: str | None,
        timeout: timedelta,
        clock: Clock,
        window: timedelta,
        **common: Unpack[SinkParts],
    ) -> None:
        super().__init__(name, **common)
        self._url = url
        self._signer = Webhook(secret) if secret else None
        self._clock = clock
        self._window = window
        self._timeout = timeout.total_seconds()
        self._client = self._open_client()

    def _open_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self._timeout,
            follow_redirects=False,
            headers={"user-agent": f"notifier/{notifier.__version__}"},
        )

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """POST each notice; one outcome per notice, sharing one retry deadline."""
        retrier = Retrier(self._retry, sink=self.name, stop=self._stop)
        client = self._client
        try:
            return [retrier.run(partial(self._post, client, notice)) for notice in notices]
        finally:
            if retrier.abandoned:
                # The abandoned POST keeps its client, closed once it ends; a fresh one serves
                # whatever comes next.
                self._client = self._open_client()
                retrier.close(client.close)
            else:
                retrier.close()

    def _post(self, client: httpx.Client, notice: Notice) -> None:
        sent_at = self._clock.now()
        body = json.dumps(
            payload(notice, sent_at=sent_at, window=self._window, slice_name=self._slice_name),
            separators=(",", ":"),
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": notice.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
        }
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(notice.id, sent_at, body)
        try:
            response = client.post(self._url, content=body.encode("utf-8"), headers=headers)
        except httpx.TimeoutException:
            raise Transient("webhook timed out") from None
        except httpx.TransportError as error:
            raise Transient(f"webhook unreachable: {type(error).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:  # noqa: PLR2004
            return
        message = f"webhook answered {status}"
        if status in TRANSIENT_STATUSES or status >= 500:  # noqa: PLR2004
            raise Transient(message, retry_after=_retry_after(response))
        raise Permanent(message)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


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
        **parts(context),
    )
