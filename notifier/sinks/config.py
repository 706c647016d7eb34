"""What each kind of sink is told, and the checks on it.

A sink instance is named ``kind`` or ``kind:label`` (``webhook``, ``webhook:ops``). Its options
come from ``NOTIFIER_<KIND>[_<LABEL>]_<OPTION>`` variables or a ``[sinks."kind:label"]`` table
of the TOML file at ``NOTIFIER_CONFIG_FILE``; settings.py gathers them, and these functions
check them. Every kind takes the routing options:

- ``owners``: glob patterns of the token owner (``*@platform.example.com``; ``-`` for none);
- ``labels``: ``key=pattern`` pairs that must all match;
- ``sources``: glob patterns of source names (``store``, ``sql:*``);
- ``kinds``: which notices: expiring, expired, renewed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from notifier.core.durations import DurationError, parse_duration
from notifier.core.limits import MAX_LIFETIME_TEXT, duration_in_range
from notifier.core.model import NoticeKind
from notifier.sinks import EVERYTHING, MESSAGE_KINDS, Route
from notifier.sinks.registry import parse_sink_name
from notifier.sources.config import OptionError

ROUTE_OPTIONS = ("owners", "labels", "sources", "kinds")
SINK_OPTIONS: dict[str, tuple[str, ...]] = {
    "log": ROUTE_OPTIONS,
    "ui": ROUTE_OPTIONS,
    "webhook": ("url", "secret", "timeout", *ROUTE_OPTIONS),
    "email": (
        "host",
        "port",
        "security",
        "username",
        "password",
        "from",
        "to",
        "subject",
        "template",
        "html_template",
        "timeout",
        *ROUTE_OPTIONS,
    ),
    "apprise": ("urls", "title", "template", *ROUTE_OPTIONS),
}
# Options that may carry credentials: also from _FILE or $CREDENTIALS_DIRECTORY, never shown.
SECRET_SINK_OPTIONS = frozenset({"url", "secret", "password", "urls"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """A checked sink instance: its kind, route, and the options of that kind."""

    name: str
    kind: str
    route: Route = EVERYTHING
    options: Mapping[str, Any] = field(default_factory=dict)


def check_sink(name: str, options: Mapping[str, Any]) -> SinkConfig:
    """Check the options of the sink instance *name*."""
    try:
        kind, _ = parse_sink_name(name)
    except ValueError as error:
        raise OptionError(None, str(error)) from None
    known = SINK_OPTIONS.get(kind, ROUTE_OPTIONS)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise OptionError(unknown[0], f"not an option of a {kind} sink")
    route = _route(options)
    checkers = {"webhook": _webhook, "email": _email, "apprise": _apprise}
    checked = checkers[kind](options) if kind in checkers else {}
    return SinkConfig(name=name, kind=kind, route=route, options=checked)


# --- routes -------------------------------------------------------------------------------------


def _list(option: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise OptionError(option, "expected a comma-separated list")
    if any(not item for item in items):
        raise OptionError(option, "has an empty entry")
    return tuple(items)


def _pairs(option: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(key): str(item) for key, item in value.items()}
    pairs: dict[str, str] = {}
    for part in _list(option, value):
        key, separator, item = part.partition("=")
        if not separator or not key.strip():
            raise OptionError(option, f"{part!r} is not key=value")
        pairs[key.strip()] = item.strip()
    return pairs


def _route(options: Mapping[str, Any]) -> Route:
    kinds = MESSAGE_KINDS
    if "kinds" in options:
        names = _list("kinds", options["kinds"])
        allowed = {kind.value for kind in MESSAGE_KINDS}
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise OptionError(
                "kinds", f"unknown kind {unknown[0]!r} (known: expiring, expired, renewed)"
            )
        kinds = frozenset(NoticeKind(name) for name in names)
    return Route(
        owners=_list("owners", options.get("owners")),
        labels=_pairs("labels", options.get("labels")),
        sources=_list("sources", options.get("sources")),
        kinds=kinds,
    )


# --- kinds --------------------------------------------------------------------------------------


def _duration(option: str, value: object, default: str) -> timedelta:
    text = default if value is None else value
    if not isinstance(text, str):
        raise OptionError(option, "expected a duration such as 10s")
    try:
        duration = parse_duration(text)
    except DurationError as error:
        raise OptionError(option, str(error)) from None
    if duration <= timedelta(0):
        raise OptionError(option, "must be greater than zero")
    if not duration_in_range(duration):
        raise OptionError(option, f"longer than {MAX_LIFETIME_TEXT}")
    return duration


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


def _webhook(options: Mapping[str, Any]) -> dict[str, Any]:
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
        "timeout": _duration("timeout", options.get("timeout"), "10s"),
    }


def _email(options: Mapping[str, Any]) -> dict[str, Any]:
    host = options.get("host")
    if not isinstance(host, str) or not host.strip():
        raise OptionError("host", "is required: the SMTP server")
    security = str(options.get("security") or "starttls").lower()
    if security not in _SECURITY_PORTS:
        raise OptionError("security", "expected starttls, tls or none")
    port_text = options.get("port")
    try:
        port = int(port_text) if port_text is not None else _SECURITY_PORTS[security]
    except (TypeError, ValueError):
        raise OptionError("port", f"{port_text!r} is not a port number") from None
    if not 0 < port < 65536:  # noqa: PLR2004
        raise OptionError("port", f"{port} is out of range")
    sender = options.get("from")
    if not isinstance(sender, str) or not _EMAIL.fullmatch(sender.strip()):
        raise OptionError("from", "is required: the sender's email address")
    recipients = _list("to", options.get("to"))
    for address in recipients:
        if not _EMAIL.fullmatch(address):
            raise OptionError("to", f"{address!r} is not an email address")
    username = options.get("username")
    password = options.get("password")
    if (username is None) != (password is None):
        raise OptionError(
            "password" if username else "username", "set username and password together"
        )
    templates = _templates(
        options,
        [("subject", None), ("template", "email.txt.j2"), ("html_template", "email.html.j2")],
    )
    return {
        **templates,
        "host": host.strip(),
        "port": port,
        "security": security,
        "username": username,
        "password": password,
        "from": sender.strip(),
        "to": recipients,
        "timeout": _duration("timeout", options.get("timeout"), "30s"),
    }


def _apprise(options: Mapping[str, Any]) -> dict[str, Any]:
    urls = _list("urls", options.get("urls"))
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
    return {"urls": urls, **_templates(options, [("title", None), ("template", "apprise.txt.j2")])}


def _templates(options: Mapping[str, Any], names: list[tuple[str, str | None]]) -> dict[str, Any]:
    """Check that each template option compiles; inline ones (no default file) are text."""
    from notifier.sinks import templates  # noqa: PLC0415 - Jinja2 only when a sink needs it

    checked: dict[str, Any] = {}
    for option, default_file in names:
        value = options.get(option)
        try:
            if default_file is None:
                if value is not None and not isinstance(value, str):
                    raise OptionError(option, "expected a template string")
                templates.inline(value, "x")
                checked[option] = value
            else:
                path = _template_path(option, value)
                templates.load(path, default_file, html=option == "html_template")
                checked[option] = path
        except ValueError as error:
            if isinstance(error, OptionError):
                raise
            raise OptionError(option, str(error)) from None
    return checked


def _template_path(option: str, value: object) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OptionError(option, "expected the path of a Jinja2 template file")
    path = Path(value.strip())
    if not path.is_file():
        raise OptionError(option, f"{path} is not a readable file")
    return path
