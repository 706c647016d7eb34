"""The log sink: the documented warn line, at WARNING level, through structlog.

In text format the line is exactly the sentence (after a timestamp); in json and logfmt the
sentence is the message and the token's fields ride beside it. Renewed notices, which close
the loop, are logged at INFO.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from notifier.config.options import KindOptions
from notifier.core.messages import sentence
from notifier.core.model import Notice, NoticeKind
from notifier.runtime import logs
from notifier.sinks import EVERYTHING, MESSAGE_KINDS, Outcome, Route
from notifier.sinks.config import ROUTE_OPTIONS, route_only
from notifier.sinks.registry import SinkContext

OPTIONS = KindOptions(ROUTE_OPTIONS)  # the route alone
check_options = route_only


class LogSink:
    """Write each notice as a warn line."""

    kinds = MESSAGE_KINDS
    digest = False

    def __init__(self, name: str, slice_name: str, route: Route = EVERYTHING) -> None:
        self.name = name
        self.route = route
        self._slice_name = slice_name
        self._log = structlog.get_logger("notifier.notice")

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Log one line per notice."""
        # One bound logger per batch: the module-level proxy would bind afresh on every call,
        # which costs as much as the line itself; per batch, a reconfiguration still applies.
        log = self._log.bind()
        # The lines are flushed once, before this returns and so before they are recorded.
        with logs.one_flush():
            if logs.sentences_only():
                # Text everywhere: the sentence is the line, and the fields would go nowhere.
                for notice in notices:
                    emit = log.info if notice.kind is NoticeKind.RENEWED else log.warning
                    emit(f"notice.{notice.kind.value}", message=sentence(notice, self._slice_name))
                return [Outcome.sent()] * len(notices)
            for notice in notices:
                emit = log.info if notice.kind is NoticeKind.RENEWED else log.warning
                emit(
                    f"notice.{notice.kind.value}",
                    message=sentence(notice, self._slice_name),
                    token_id=notice.token_id,
                    token_name=notice.token_name,
                    source=notice.source,
                    kind=notice.credential_kind.value,
                    expires_at=notice.expires_at,
                    days_left=notice.days_left,
                    seconds_left=notice.seconds_left,
                    threshold=notice.threshold_label,
                    notice_id=notice.id,
                    sink=self.name,
                )
        return [Outcome.sent()] * len(notices)

    def close(self) -> None:
        """Nothing to release: the log handlers belong to the process."""


def build(name: str, context: SinkContext) -> LogSink:
    """Build the log sink called *name*."""
    return LogSink(name, context.slice_name, context.route)
