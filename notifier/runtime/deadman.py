"""The dead-man's switch: fetch ``NOTIFIER_HEARTBEAT_URL`` after each successful pass.

In the healthchecks.io style a monitor expects a ping every so often and alerts when none
comes, so a daemon that died, hangs, or cannot reach its database is noticed by its silence.
The ping has a short timeout and never raises: a monitor that is down must not fail a pass.
The URL is a secret (whoever has it can fake the all-clear), so only its host is logged.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import structlog

import notifier

TIMEOUT = httpx.Timeout(5.0)  # the whole ping: a slow monitor must not hold up a pass thread

log = structlog.get_logger("notifier.heartbeat")


class Heartbeat:
    """Ping one URL, and log (not raise) what went wrong."""

    def __init__(self, url: str, *, timeout: httpx.Timeout = TIMEOUT) -> None:
        self._url = url
        self._host = urlsplit(url).hostname or "?"
        self._timeout = timeout

    @property
    def host(self) -> str:
        """The host pinged, which is safe to log."""
        return self._host

    def ping(self) -> bool:
        """Fetch the URL once; True if it answered 2xx."""
        try:
            with httpx.Client(
                timeout=self._timeout,
                follow_redirects=True,
                headers={"User-Agent": f"notifier/{notifier.__version__}"},
            ) as client:
                response = client.get(self._url)
        except httpx.HTTPError as error:
            # httpx's messages could quote the URL: take it out before logging.
            reason = f"{type(error).__name__}: {error}".replace(self._url, "<url>")
            log.warning("heartbeat.failed", host=self._host, reason=reason)
            return False
        if not response.is_success:
            log.warning("heartbeat.failed", host=self._host, status=response.status_code)
            return False
        log.info("heartbeat.sent", host=self._host)
        return True
