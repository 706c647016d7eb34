"""What the HTTP API works with: the store, the database, the gate's parts and its limits.

The composition root (:func:`notifier.runtime.compose.web_api`) builds one :class:`WebApi` per
process from the settings and hands it to :func:`notifier.web.app.create_app`; the routes
(:mod:`notifier.web.routes`) and the server (:class:`notifier.web.server.WebServer`) use it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

from notifier.core.clock import Clock
from notifier.credentials.listing import CredentialLists
from notifier.db.database import Database
from notifier.tokens.lifecycle import TokenStore
from notifier.web.auth import Authenticator
from notifier.web.server import ListenerLimits
from notifier.web.stream import StreamOptions, StreamSlots

PREFIX = "/api/v1"  # every route of the API is under it


@dataclass
class WebApi:
    """The API's collaborators and limits, built once per process by the composition root."""

    database: Database
    authenticator: Authenticator  # its token store and clock are the API's
    credentials: CredentialLists  # every watched credential, the store's tokens among them
    default_ttl: timedelta
    detection_window: timedelta
    stream: StreamOptions = field(default_factory=StreamOptions)
    closing: threading.Event = field(default_factory=threading.Event)
    streams: StreamSlots = field(default_factory=lambda: StreamSlots(5))
    listener: ListenerLimits = field(default_factory=ListenerLimits)

    @property
    def tokens(self) -> TokenStore:
        """The token store the API reads and writes: the one that authenticates its callers."""
        return self.authenticator.store

    @property
    def clock(self) -> Clock:
        """The clock of every decision the API takes."""
        return self.authenticator.clock

    def close(self) -> None:
        """End the live streams and write the pending last-use times; the server is stopping."""
        self.closing.set()
        self.authenticator.last_use.flush()
