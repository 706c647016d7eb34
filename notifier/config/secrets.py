"""Where a setting's value came from, and secrets from NAME, NAME_FILE or $CREDENTIALS_DIRECTORY.

A secret is read from ``NAME``, else from the file ``NAME_FILE`` names, else from
``$CREDENTIALS_DIRECTORY/<name>`` (systemd's ``LoadCredential=``), where ``<name>`` is the
variable without its ``NOTIFIER_`` prefix, in lower case (``token_pepper``). Messages name where
a secret was read, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from notifier.config.parsing import ConfigError, redact_url
from notifier.config.weak_secrets import KEY_ADVICE, is_placeholder, key_weakness
from notifier.core.durations import DurationError, format_in_one_unit, parse_duration

PREFIX = "NOTIFIER_"


class _Environment(BaseSettings):
    """No settings: what pydantic-settings reads the environment for, before any load."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")


class _Reading:
    """The environment as pydantic-settings' source read it for the latest load."""

    variables: Mapping[str, str] | None = None


def remember_environment(source: PydanticBaseSettingsSource) -> None:
    """Keep what *source* (the load's EnvSettingsSource) read, for :func:`environment`."""
    if isinstance(source, EnvSettingsSource):
        _Reading.variables = _text(source)


def environment() -> Mapping[str, str]:
    """The environment as pydantic-settings read it: nothing of notifier reads os.environ.

    The per-instance variables, the typo check and the origin of each value depend on what
    other settings say (the sinks listed, the config file), so they cannot be fields; they
    read the mapping the latest load's EnvSettingsSource read, so that every part of one load
    sees one reading. Before any load, a source of no settings reads it.
    """
    if _Reading.variables is None:
        return _text(EnvSettingsSource(_Environment))
    return _Reading.variables


def _text(source: EnvSettingsSource) -> dict[str, str]:
    return {name: value for name, value in source.env_vars.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a setting's value came from."""

    variable: str | None  # the environment variable, or None for the default
    path: Path | None = None  # for secrets read from a file
    raw: str | None = None  # the text as given, for error messages (never for secrets)

    def describe(self) -> str:
        """Say where the value came from, for ``config show``."""
        if self.variable is None:
            return "default"
        if self.path is not None:
            return f"{self.variable} ({self.path})"
        return self.variable


def meta(field: FieldInfo) -> dict[str, Any]:
    """A setting's description beside its pydantic field: env, aliases, secret, example."""
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def secret_origin(env: str) -> Origin | None:
    """Find a secret's value: ``NAME``, ``NAME_FILE`` or the systemd credential, in that order."""
    variables = environment()
    direct = variables.get(env)
    file_variable = f"{env}_FILE"
    file_path = variables.get(file_variable)
    if direct is not None and file_path is not None:
        raise ConfigError([f"{env} and {file_variable} are both set; set only one"])
    if direct is not None:
        return Origin(env)
    if file_path is not None:
        if not file_path.strip():
            raise ConfigError([f"{file_variable}='': empty; name the file holding the secret"])
        return Origin(file_variable, Path(file_path))
    credentials = variables.get("CREDENTIALS_DIRECTORY")
    if credentials:
        path = Path(credentials) / env.removeprefix(PREFIX).lower()
        if path.is_file():
            return Origin("$CREDENTIALS_DIRECTORY", path)
    return None


def secret_where(env: str, origin: Origin) -> str:
    """Name where the secret *env* was read, for a message: never its value."""
    if origin.path is None:
        return origin.variable or env
    if origin.variable == "$CREDENTIALS_DIRECTORY":
        return f"{env} ($CREDENTIALS_DIRECTORY/{origin.path.name})"
    return f"{origin.variable}={str(origin.path)!r}"


def read_secret(env: str, origin: Origin) -> str:
    """The secret *env*, found at *origin* (the variable itself, or a file)."""
    if origin.path is None:
        return environment()[env]
    where = secret_where(env, origin)
    try:
        text = origin.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError([f"{where}: cannot read the secret: {reason}"]) from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret.strip():
        raise ConfigError([f"{where}: the file is empty"])
    return secret


def value_origin(field: FieldInfo) -> Origin:
    """Where the setting of *field* came from: its variable, an alias, a secret file, or none."""
    described = meta(field)
    if not described:
        return Origin(None)
    variables = environment()
    for variable in [described["env"], *described["aliases"]]:
        if variable in variables:
            raw = None if described["secret"] else variables[variable]
            return Origin(variable, raw=raw)
    if described["secret"]:
        return secret_origin(described["env"]) or Origin(None)
    return Origin(None)


class SecretFilesSource(PydanticBaseSettingsSource):
    """Secrets from ``NAME_FILE`` or ``$CREDENTIALS_DIRECTORY/<name>``, below ``NAME`` itself."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads every secret at once."""
        del field
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Every secret setting given through a file, by its variable."""
        values: dict[str, Any] = {}
        for field in self.settings_cls.model_fields.values():
            described = meta(field)
            if not described.get("secret"):
                continue
            origin = secret_origin(described["env"])
            if origin is not None and origin.path is not None:
                values[described["env"]] = read_secret(described["env"], origin)
        return values


def presented_token() -> str | None:
    """The secret ``tokens verify`` checks when given through NOTIFIER_TOKEN (not a setting)."""
    value = environment().get("NOTIFIER_TOKEN")
    return value.strip() if value and value.strip() else None


# --- where a setting came from, for messages and `config show` ---------------------------------


def describe(error: ValidationError, fields: dict[str, FieldInfo]) -> list[str]:
    """One line per refused setting, naming where its value came from (a secret: never it)."""
    lines: list[str] = []
    for item in error.errors():
        location = item["loc"][0] if item["loc"] else None
        field_name = _field_for(location, fields)
        message = str(item["msg"]).removeprefix("Value error, ")
        if field_name is None:
            lines.append(f"invalid configuration: {message}")
            continue
        described = meta(fields[field_name])
        origin = value_origin(fields[field_name])
        variable = origin.variable or described.get("env")
        if origin.raw is not None:
            raw = redact_url(origin.raw) if field_name in _MAY_HOLD_PASSWORDS else origin.raw
            lines.append(f"{variable}={raw!r}: {message}")
        elif origin.variable is None:
            lines.append(f"{variable} (default): {message}")
        elif described.get("secret"):
            lines.append(f"{secret_where(described['env'], origin)}: {message}")
        else:
            lines.append(f"{variable}: {message}")
    return lines


# Settings that are not secrets but may carry one (a URL's password): shown redacted.
_MAY_HOLD_PASSWORDS = frozenset({"database_url"})


def _field_for(location: object, fields: dict[str, FieldInfo]) -> str | None:
    for name, field in fields.items():
        described = meta(field)
        if location == name or (
            described and location in [described["env"], *described["aliases"]]
        ):
            return name
    return None


def written_duration(field: FieldInfo, value: object) -> str:
    """The duration setting of *field* as the operator wrote it: ``8760h`` stays ``8760h``.

    The text as given when it came from a variable, else the default as the model writes it;
    only a value from neither (set in code) is rendered, in the largest unit that divides it.
    """
    origin = value_origin(field)
    written = origin.raw if origin.raw is not None else None
    if origin.variable is None and isinstance(field.default, str):
        written = field.default
    if written is not None and _parses_to(written, value):
        return written.strip()
    if isinstance(value, timedelta):
        return format_in_one_unit(value)
    return "" if value is None else str(value)


def _parses_to(text: str, value: object) -> bool:
    try:
        return parse_duration(text) == value
    except DurationError:
        return False


# --- the checks of secret settings: none repeats the value ---------------------------------------


def _given(unset_means: str, advice: str = "put the real value in its place") -> BeforeValidator:
    """Refuse an empty secret or one of our placeholders; *unset_means* what leaving it does.

    An empty NAME= would otherwise turn the secret off (no pepper) while `config show` prints
    ******** as if one were set; an empty NAME_FILE is refused the same way.
    """

    def check(value: object) -> object:
        if not isinstance(value, str | SecretStr):
            return value
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not text.strip():
            raise ValueError(f"empty; leave it unset {unset_means}")
        if is_placeholder(text):
            raise ValueError(f"the placeholder from the project's examples; {advice}")
        return value

    return BeforeValidator(check)


def _http_url(value: SecretStr | None) -> SecretStr | None:
    """An http(s) URL with a host, stripped."""
    if value is None:
        return None
    scheme, _, rest = value.get_secret_value().strip().partition("://")
    if scheme.lower() not in {"http", "https"} or not rest.split("/", 1)[0]:
        raise ValueError("expected an http:// or https:// URL with a host")
    return SecretStr(value.get_secret_value().strip())


def _long_key(value: SecretStr | None) -> SecretStr | None:
    """32 or more characters without spaces, stripped (a key with every scope)."""
    if value is None:
        return None
    text = value.get_secret_value().strip()
    if len(text) < 32 or any(char.isspace() for char in text):  # noqa: PLR2004
        raise ValueError("expected 32 or more characters without spaces")
    return SecretStr(text)


def _hard_to_guess(value: SecretStr | None) -> SecretStr | None:
    """A key notifier verifies with, held to the entropy floor of weak_secrets.py."""
    # The message never says how close it came.
    if value is None:
        return None
    weakness = key_weakness(value.get_secret_value())
    if weakness is not None:
        raise ValueError(weakness)
    return value


DatabasePassword = Annotated[
    SecretStr | None, _given("when the URL carries the password or none is needed")
]
Pepper = Annotated[
    SecretStr | None,
    _given("to hash tokens without a pepper (plain SHA-256)", KEY_ADVICE),
    AfterValidator(_hard_to_guess),
]
HeartbeatUrl = Annotated[
    SecretStr | None, _given("for no heartbeat ping"), AfterValidator(_http_url)
]
BootstrapKey = Annotated[
    SecretStr | None,
    _given("once a real token exists", KEY_ADVICE),
    AfterValidator(_long_key),
    AfterValidator(_hard_to_guess),
]
