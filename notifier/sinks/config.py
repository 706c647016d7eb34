"""What every kind of sink is told, and the check of a sink instance's options.

A sink instance is named ``kind`` or ``kind:label`` (``webhook``, ``webhook:ops``). Each kind's
own options and their checks live in its module (``OPTIONS``, ``check_options``); this module
checks the routing options every kind takes, and calls the kind's check:

- ``owners``: glob patterns of the token owner (``*@platform.example.com``; ``-`` for none);
- ``labels``: ``key=pattern`` pairs that must all match;
- ``sources``: glob patterns of source names (``store``, ``sql:*``);
- ``kinds``: which notices: expiring, expired, renewed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from notifier.config.options import KindOptions, OptionError, option_list
from notifier.core.model import NoticeKind
from notifier.sinks import EVERYTHING, MESSAGE_KINDS, Route
from notifier.sinks.registry import SINK_KINDS, parse_sink_name, sink_module

ROUTE_OPTIONS = ("owners", "labels", "sources", "kinds")


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """A checked sink instance: its kind, route, and the options of that kind."""

    name: str
    kind: str
    route: Route = EVERYTHING
    options: Mapping[str, Any] = field(default_factory=dict)


def sink_options(name: str) -> KindOptions:
    """The options the sink instance *name* takes (its kind's module is imported for them)."""
    kind, _ = parse_sink_name(name)
    options: KindOptions = sink_module(kind).OPTIONS
    return options


@cache
def every_secret_option() -> frozenset[str]:
    """The options that are secret in some kind (imports every kind's module)."""
    return frozenset().union(*(sink_options(kind).secrets for kind in SINK_KINDS))


def check_sink(name: str, options: Mapping[str, Any]) -> SinkConfig:
    """Check the options of the sink instance *name*."""
    try:
        kind, _ = parse_sink_name(name)
    except ValueError as error:
        raise OptionError(None, str(error)) from None
    module = sink_module(kind)
    known: KindOptions = module.OPTIONS
    unknown = sorted(set(options) - set(known.names))
    if unknown:
        raise OptionError(unknown[0], f"not an option of a {kind} sink")
    route = _route(options)
    check: Callable[[Mapping[str, Any]], dict[str, Any]] = module.check_options
    return SinkConfig(name=name, kind=kind, route=route, options=check(options))


def route_only(options: Mapping[str, Any]) -> dict[str, Any]:
    """The check of a kind that takes nothing beyond the route."""
    del options
    return {}


# --- routes -------------------------------------------------------------------------------------


def _pairs(option: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(key): str(item) for key, item in value.items()}
    pairs: dict[str, str] = {}
    for part in option_list(option, value):
        key, separator, item = part.partition("=")
        if not separator or not key.strip():
            raise OptionError(option, f"{part!r} is not key=value")
        pairs[key.strip()] = item.strip()
    return pairs


def _route(options: Mapping[str, Any]) -> Route:
    kinds = MESSAGE_KINDS
    if "kinds" in options:
        names = option_list("kinds", options["kinds"])
        allowed = {kind.value for kind in MESSAGE_KINDS}
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise OptionError(
                "kinds", f"unknown kind {unknown[0]!r} (known: expiring, expired, renewed)"
            )
        kinds = frozenset(NoticeKind(name) for name in names)
    return Route(
        owners=option_list("owners", options.get("owners")),
        labels=_pairs("labels", options.get("labels")),
        sources=option_list("sources", options.get("sources")),
        kinds=kinds,
    )


# --- templates (email, apprise) -----------------------------------------------------------------


def check_templates(
    options: Mapping[str, Any], names: list[tuple[str, str | None]]
) -> dict[str, Any]:
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
