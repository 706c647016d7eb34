"""The configured sources and sinks: their options from the config file and the environment.

An instance is named ``kind`` or ``kind:label``. Its options come from the file's
``[table."name"]``, each overridden by its ``NOTIFIER_<KIND>[_<LABEL>]_<OPTION>`` variable
(secrets also from ``_FILE`` or the credentials directory); the kind's own module checks them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from notifier.config.options import KindOptions, OptionError
from notifier.config.parsing import ConfigError
from notifier.config.secrets import environment, read_secret, secret_origin, secret_where
from notifier.config.weak_secrets import is_placeholder
from notifier.sinks.config import check_sink, every_secret_option, sink_options
from notifier.sources.config import SECRET_OPTIONS, check_source, source_options

if TYPE_CHECKING:
    from collections.abc import Sequence

    from notifier.sinks.config import SinkConfig
    from notifier.sources.config import SourceConfig

# The config file: table ("sources", "sinks") -> instance name -> its options.
ConfigDocument = dict[str, dict[str, dict[str, Any]]]

_CONFIG_TABLES = ("sources", "sinks")


def read_config_file(path: Path | None) -> ConfigDocument:
    """Parse NOTIFIER_CONFIG_FILE; only the tables notifier knows are allowed."""
    if path is None:
        return {}
    where = f"NOTIFIER_CONFIG_FILE={str(path)!r}"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([f"{where}: cannot read it: {error.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError([f"{where}: not valid TOML: {error}"]) from None
    unknown = sorted(set(document) - set(_CONFIG_TABLES))
    if unknown:
        raise ConfigError(
            [f"{where}: unknown table or key {unknown[0]!r} (known: {', '.join(_CONFIG_TABLES)})"]
        )
    for table in _CONFIG_TABLES:
        section = document.get(table, {})
        if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
            raise ConfigError(
                [f'{where}: [{table}] must hold one table per instance ([{table}."name"])']
            )
    return document


@dataclass(frozen=True, slots=True)
class Section:
    """A kind of configured instance: token sources, or sinks."""

    table: str  # the config file's table: "sources", "sinks"
    noun: str
    options: Callable[[str], KindOptions]  # instance name -> the options of its kind
    # Options secret in some kind: checked wherever the file gives one, even as unknown.
    every_secret: Callable[[], frozenset[str]]
    check: Callable[[str, dict[str, Any]], Any]


SOURCES = Section("sources", "source", source_options, lambda: SECRET_OPTIONS, check_source)
SINKS = Section("sinks", "sink", sink_options, every_secret_option, check_sink)


def instance_prefix(name: str) -> str:
    """``sql:billing`` -> ``NOTIFIER_SQL_BILLING_``: where an instance's variables start."""
    return "NOTIFIER_" + name.upper().replace(":", "_").replace("-", "_") + "_"


def load_instances(
    section: Section,
    explicit: tuple[str, ...] | None,
    default: tuple[str, ...],
    from_file: dict[str, dict[str, Any]],
) -> tuple[Any, ...]:
    """Check every enabled instance of *section*; raise :class:`ConfigError` naming what is wrong.

    The enabled instances are the variable's list when it is set, else the defaults plus every
    instance the config file defines. Options come from the file's ``[table."name"]``, each
    overridden by its ``NOTIFIER_<KIND>[_<LABEL>]_<OPTION>`` variable (secrets also from
    ``_FILE`` or the credentials directory).
    """
    for name in from_file:
        try:
            section.options(name)
        except ValueError as error:
            message = getattr(error, "message", str(error))
            raise ConfigError(
                [f'NOTIFIER_CONFIG_FILE [{section.table}."{name}"]: {message}']
            ) from None
    names = explicit or (*default, *(name for name in from_file if name not in default))
    configs: list[Any] = []
    for name in names:
        options, origin = instance_options(section, name, from_file.get(name, {}))
        try:
            configs.append(section.check(name, options))
        except OptionError as error:
            if error.option in origin:
                where = origin[error.option]
            elif error.option is not None:
                where = instance_prefix(name) + error.option.upper()
            else:
                where = f"{section.noun} {name!r}"
            raise ConfigError([f"{where}: {error.message}"]) from None
    return tuple(configs)


def instance_options(
    section: Section, name: str, from_file: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """An instance's options (file first, then each variable over it) and where each came from."""
    prefix = instance_prefix(name)
    kind = section.options(name)
    variables = environment()
    options = dict(from_file)
    origin = {
        option: f'NOTIFIER_CONFIG_FILE [{section.table}."{name}"] {option}' for option in options
    }
    for option in kind.names:
        variable = prefix + option.upper()
        if option in kind.secrets:
            found = secret_origin(variable)
            if found is not None:
                options[option] = read_secret(variable, found)
                origin[option] = secret_where(variable, found)
        elif variable in variables:
            options[option] = variables[variable]
            origin[option] = f"{variable}={variables[variable]!r}"
    # The kind's own secrets; and, for an option the kind does not know (refused by its check
    # next), whether it is a secret in any kind, so that its value is judged the same everywhere.
    secrets = kind.secrets | (section.every_secret() if set(options) - set(kind.names) else set())
    for option in secrets & set(options):
        # Every secret, whatever its kind: never empty, never one of our placeholders.
        value = options[option]
        if isinstance(value, str) and not value.strip():
            raise ConfigError([f"{origin[option]}: empty; leave it unset instead"])
        values = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and is_placeholder(item) for item in values):
            message = "the placeholder from the project's examples; put the real value in its place"
            raise ConfigError([f"{origin[option]}: {message}"])
    return options, origin


def instance_variables(sources: Sequence[SourceConfig], sinks: Sequence[SinkConfig]) -> set[str]:
    """The per-instance variables the enabled sources and sinks read, for the typo check."""
    known: set[str] = set()
    configs: Sequence[SourceConfig] | Sequence[SinkConfig]
    for section, configs in ((SOURCES, sources), (SINKS, sinks)):
        for config in configs:
            prefix = instance_prefix(config.name)
            kind = section.options(config.name)
            for option in kind.names:
                known.add(prefix + option.upper())
                if option in kind.secrets:
                    known.add(prefix + option.upper() + "_FILE")
    return known
