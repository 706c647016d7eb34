"""The apprise sink: Slack, Teams, Telegram, ntfy, Matrix and 100+ more, through Apprise.

An optional extra (``pip install apprise`` in notifier's environment, or
``pip install '.[apprise]'`` from a clone). Each notice is one message to every configured
URL; the result is read per URL, and a notice counts as delivered when every URL took it. A
retry resends to all of them, so give each channel its own instance (``apprise:slack``,
``apprise:ntfy``) when duplicates matter. Errors name the URL's scheme, never the URL, which
carries the channel's token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Unpack

from notifier.config.options import KindOptions, OptionError, option_list
from notifier.core.model import Notice
from notifier.sinks import Outcome
from notifier.sinks.base import MessageSink, SinkParts, parts
from notifier.sinks.config import ROUTE_OPTIONS, check_templates
from notifier.sinks.registry import SinkContext
from notifier.sinks.retrying import Retrier, Transient
from notifier.sinks.templates import DEFAULT_TITLE, inline, load, token_context

OPTIONS = KindOptions(("urls", "title", "template", *ROUTE_OPTIONS), secrets=frozenset({"urls"}))


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check that Apprise is installed and understands every URL, and that the templates compile."""
    urls = option_list("urls", options.get("urls"))
    if not urls:
        raise OptionError("urls", "is required: one or more Apprise URLs (json://, slack://, ...)")
    try:
        import apprise  # noqa: PLC0415 - an optional extra
    except ImportError:
        raise OptionError(
            "urls",
            "the apprise library is not installed: pip install apprise (in notifier's environment)",
        ) from None
    for url in urls:
        if apprise.Apprise.instantiate(url) is None:
            scheme = url.split("://", 1)[0]
            raise OptionError("urls", f"Apprise does not understand a {scheme}:// URL")
    return {
        "urls": urls,
        **check_templates(options, [("title", None), ("template", "apprise.txt.j2")]),
    }


class AppriseSink(MessageSink):
    """Send each notice to a set of Apprise URLs."""

    def __init__(self, name: str, *, options: dict[str, Any], **common: Unpack[SinkParts]) -> None:
        import apprise  # noqa: PLC0415 - an optional extra, checked at configuration

        super().__init__(name, **common)
        self._title = inline(options.get("title"), DEFAULT_TITLE)
        self._body = load(options.get("template"), "apprise.txt.j2")
        self._targets: list[tuple[str, Any]] = []
        for url in options["urls"]:
            target = apprise.Apprise()
            target.add(url)
            self._targets.append((url.split("://", 1)[0], target))

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Send each notice to every URL."""
        retrier = Retrier(self._retry, sink=self.name, stop=self._stop)
        try:
            return [retrier.run(partial(self._send, notice)) for notice in notices]
        finally:
            retrier.close()

    def _send(self, notice: Notice) -> None:
        context = token_context(notice, self._slice_name)
        title = self._title.render(context).strip()
        body = self._body.render(context).strip()
        refused = [
            scheme for scheme, target in self._targets if not target.notify(body=body, title=title)
        ]
        if refused:
            raise Transient(f"apprise: the {', '.join(f'{s}://' for s in refused)} service failed")

    def close(self) -> None:
        """Nothing to release."""


def build(name: str, context: SinkContext) -> AppriseSink:
    """Build the apprise sink called *name*."""
    return AppriseSink(name, options=dict(context.options), **parts(context))
