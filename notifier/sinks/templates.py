"""Message templates (Jinja2) for the email and Apprise sinks.

A default ships; each sink may name its own file.
Text templates render without escaping; the HTML template autoescapes, so a token name
cannot inject markup. Undefined variables are errors, caught when the sink is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateError

from notifier.core.messages import sentence
from notifier.core.model import Notice
from notifier.runtime.logs import rfc3339

_TEXT = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)  # noqa: S701 - plain text, not HTML
_HTML = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
DEFAULT_SUBJECT = (
    "[notifier] {{ count }} {{ noun }}{{ 's' if count != 1 }} need{{ 's' if count == 1 }} attention"
)
DEFAULT_TITLE = (
    "[notifier] {{ 'API token' if credential == 'token' else credential }} {{ name }}: {{ kind }}"
)


def _shipped(name: str) -> str:
    return resources.files("notifier.sinks").joinpath("templates", name).read_text("utf-8")


def load(path: Path | None, default: str, *, html: bool = False) -> Template:
    """Compile the template at *path*, or the shipped *default*; raise ValueError if broken."""
    environment = _HTML if html else _TEXT
    try:
        text = path.read_text(encoding="utf-8") if path else _shipped(default)
        return environment.from_string(text)
    except (OSError, UnicodeDecodeError, TemplateError) as error:
        raise ValueError(f"template {path or default}: {error}") from None


def inline(text: str | None, default: str) -> Template:
    """Compile a one-line template given in the configuration (a subject, a title)."""
    try:
        return _TEXT.from_string(text or default)
    except TemplateError as error:
        raise ValueError(f"template {text!r}: {error}") from None


_NOUNS = {
    "token": "API token",
    "certificate": "certificate",
    "lease": "lease",
    "access_key": "access key",
}


def digest_noun(notices: Sequence[Notice]) -> str:
    """What a digest calls its notices: their kind's word when they share one, else credential."""
    kinds = {notice.credential_kind.value for notice in notices}
    return _NOUNS.get(kinds.pop(), "credential") if len(kinds) == 1 else "credential"


def token_context(notice: Notice, slice_name: str) -> dict[str, Any]:
    """What templates know about one notice."""
    return {
        "id": notice.token_id,
        "name": notice.token_name,
        "source": notice.source,
        "owner": notice.owner,
        "labels": dict(notice.labels),
        "kind": notice.kind.value,
        "credential": notice.credential_kind.value,  # token, certificate, lease, access_key
        "status": notice.kind.value,
        "sentence": sentence(notice, slice_name),
        "expires_at": rfc3339(notice.expires_at) if notice.expires_at else None,
        "days_left": notice.days_left,
        "threshold": notice.threshold_label,
        "notice_id": notice.id,
    }
