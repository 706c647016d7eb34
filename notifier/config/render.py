"""What the operator sees of the settings: ``config show``, ``config example``, and typos.

Each is rendered from the one description beside each field of the settings model (its
variable, aliases, whether it is a secret, its default and its text).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr

from notifier.config.instances import (
    SINKS,
    SOURCES,
    instance_options,
    instance_prefix,
    instance_variables,
)
from notifier.config.parsing import HttpAddress
from notifier.config.secrets import PREFIX, Origin, environment, meta, value_origin
from notifier.config.settings import Settings, shown_duration
from notifier.core.durations import format_in_one_unit
from notifier.core.model import Threshold

# Inputs that are NOTIFIER_-prefixed but are not settings, so the typo check leaves them alone.
_NOT_SETTINGS = frozenset({"NOTIFIER_TOKEN"})


def origins() -> dict[str, Origin]:
    """Where each setting came from, by field name."""
    return {name: value_origin(field) for name, field in Settings.model_fields.items()}


def unknown_variables(settings: Settings | None = None) -> list[tuple[str, str | None]]:
    """``NOTIFIER_*`` variables that name no setting, each with the closest known name."""
    known: set[str] = set(_NOT_SETTINGS)
    if settings is not None:
        known |= instance_variables(settings.source_configs, settings.sink_configs)
    for field in Settings.model_fields.values():
        described = meta(field)
        if described:
            known.add(described["env"])
            if described["secret"]:
                known.add(f"{described['env']}_FILE")
    found: list[tuple[str, str | None]] = []
    for variable in sorted(environment()):
        if variable.startswith(PREFIX) and variable not in known:
            close = difflib.get_close_matches(variable, sorted(known), n=1)
            found.append((variable, close[0] if close else None))
    return found


@dataclass(frozen=True, slots=True)
class ShownSetting:
    """One line of ``config show``."""

    variable: str
    value: str
    source: str
    secret: bool


def show(settings: Settings) -> list[ShownSetting]:
    """The effective settings, where each came from, secrets redacted."""
    shown: list[ShownSetting] = []
    where = origins()
    for name, field in Settings.model_fields.items():
        described = meta(field)
        if not described:
            continue
        value = getattr(settings, name)
        source = where[name].describe()
        if name == "database_url":
            rendered = settings.shown_database_url()
            if settings.database_url is None:
                source = "default"
        elif name == "token_sources" and settings.source_configs:
            rendered, source = _shown_list(
                [config.name for config in settings.source_configs], ("store",), where[name]
            )
        elif name == "sinks" and settings.sink_configs:
            rendered, source = _shown_list(
                [config.name for config in settings.sink_configs], settings.sinks, where[name]
            )
        elif isinstance(value, timedelta):
            rendered = shown_duration(settings, name)
        else:
            rendered = _render(value)
        shown.append(ShownSetting(described["env"], rendered, source, bool(described["secret"])))
    shown.extend(_show_instances(settings))
    return shown


def _shown_list(names: list[str], defaults: tuple[str, ...], origin: Origin) -> tuple[str, str]:
    """An instance list as it takes effect, and where it came from (the file may add to it)."""
    source = origin.describe()
    if origin.variable is None and any(name not in defaults for name in names):
        source = "default + NOTIFIER_CONFIG_FILE"
    return ",".join(names), source


def _show_instances(settings: Settings) -> list[ShownSetting]:
    """Each configured option of each source and sink, as its variable, secrets redacted."""
    document = settings.config_document
    shown: list[ShownSetting] = []
    for section, configs in ((SOURCES, settings.source_configs), (SINKS, settings.sink_configs)):
        for config in configs:
            from_file = document.get(section.table, {}).get(config.name, {})
            options, origin = instance_options(section, config.name, from_file)
            kind = section.options(config.name)
            for option in kind.names:
                if option not in options:
                    continue
                secret = option in kind.secrets
                value = options[option]
                rendered = "********" if secret else _render_option(value)
                where = origin[option].split("=", 1)[0]
                shown.append(
                    ShownSetting(
                        instance_prefix(config.name) + option.upper(), rendered, where, secret
                    )
                )
    return shown


def _render_option(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def _render(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********"
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return format_in_one_unit(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and not isinstance(value, HttpAddress):
        return ",".join(part.label if isinstance(part, Threshold) else str(part) for part in value)
    return str(value)


def example_env() -> str:
    """Render ``config.example.env`` from the settings model."""
    lines = [
        "# notifier configuration: every setting, its default, and what it does.",
        "# Generated by `notifier config example`; a test fails when this file drifts.",
        "# Uncomment a line to change a value. Durations use Go's syntax (1h30m, 500ms) plus d, w.",
        "",
    ]
    for field in Settings.model_fields.values():
        described = meta(field)
        if not described:
            continue
        lines.extend(f"# {line}" for line in _wrap(field.description or "", 96))
        if described["aliases"]:
            lines.append(f"# Also read as {', '.join(described['aliases'])} (this name wins).")
        env = described["env"]
        if described["secret"]:
            credential = env.removeprefix(PREFIX).lower()
            lines.append(f"# Secret: or {env}_FILE=/path, or $CREDENTIALS_DIRECTORY/{credential}.")
        default = field.default
        shown_default = "" if default is None else str(default)
        if default is None and "example" in described:
            lines.append(f"#{env}={described['example']}")
        else:
            lines.append(f"#{env}={shown_default}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _wrap(text: str, width: int) -> list[str]:
    words = text.split()
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
