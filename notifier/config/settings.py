"""Settings from the environment, assembled by pydantic-settings: the model and its loader.

Each setting has one ``NOTIFIER_`` name, and the StackRox seed's ``ROX_`` name where it had one;
the ``NOTIFIER_`` name wins when both are set. Secrets may also come from ``NAME_FILE`` or from
``$CREDENTIALS_DIRECTORY/<name>`` (config/secrets.py). The sources and sinks are checked by
their own kinds (config/instances.py); config/render.py renders ``config show``/``example``
from the description beside each field here.

Every bad value is a :class:`ConfigError` naming the variable and the value (a secret is named,
never shown; a password inside a URL shows as ``***``); the CLI turns it into exit code 78 so
that systemd's ``RestartPreventExitStatus=78`` stops a crash loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    SkipValidation,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
)
from sqlalchemy.engine import URL, make_url

from notifier.config.core import CoreSettings, setting
from notifier.config.instances import (
    SINKS,
    SOURCES,
    ConfigDocument,
    load_instances,
    read_config_file,
)
from notifier.config.parsing import (
    LOG_LEVELS,
    ConfigError,
    HttpAddress,
    IpNetwork,
    Networks,
    PositiveDuration,
    SecondOrMore,
    between,
    redact_url,
)
from notifier.config.secrets import (
    BootstrapKey,
    HeartbeatUrl,
    SecretFilesSource,
    describe,
    remember_environment,
    value_origin,
    written_duration,
)
from notifier.db.urls import normalise_database_url
from notifier.sinks.config import SinkConfig
from notifier.sources.config import SourceConfig

# Names other modules import from here, where they were first defined.
__all__ = [
    "ConfigError",
    "HttpAddress",
    "Settings",
    "load_settings",
    "normalise_database_url",
    "redact_url",
]


class Settings(CoreSettings):
    """Everything the daemon and the CLI can be told through the environment."""

    claim_lease: SecondOrMore = setting(
        "NOTIFIER_CLAIM_LEASE",
        default="10m",
        description=(
            "How long a replica holds a claimed delivery before another may retry it; longer "
            "than a sink's whole retry deadline."
        ),
    )
    # At most 2000: keeps a batch upsert under SQLite's 32766 parameters. The default is
    # the most: each transaction of a pass still takes milliseconds, and a first pass over
    # a fleet writes each state page fewer times (docs/performance.md).
    batch_size: Annotated[int, between(1, 2000)] = setting(
        "NOTIFIER_BATCH_SIZE",
        default=2000,
        description="Tokens per keyset batch (and per short transaction) in a pass.",
    )
    shutdown_timeout: PositiveDuration = setting(
        "NOTIFIER_SHUTDOWN_TIMEOUT",
        default="30s",
        description="On SIGTERM, how long a running pass may take to finish before exit.",
    )
    heartbeat_url: HeartbeatUrl = setting(
        "NOTIFIER_HEARTBEAT_URL",
        default=None,
        secret=True,
        description=(
            "A dead-man's switch (healthchecks.io style): this http(s) URL is fetched after each "
            "pass that ran with no failed delivery, so that its silence alerts someone. Unset: "
            "no ping. A secret, since whoever knows it can fake the all-clear."
        ),
    )
    metrics_credentials: bool = setting(
        "NOTIFIER_METRICS_CREDENTIALS",
        default=False,
        description=(
            "Also serve notifier_credential_expiry_timestamp_seconds, one series per "
            "credential of the sources that read everything (never the store's or sql's): "
            "true or false. Each credential is a time series; see docs/sources.md."
        ),
    )
    api_rate_limit: Annotated[int, between(0, 1_000_000, "no limit")] = setting(
        "NOTIFIER_API_RATE_LIMIT",
        default=1000,
        description=(
            "Requests per token per rolling hour the HTTP API accepts before answering 429 "
            "with Retry-After; counted in each process, not shared by replicas. 0: no limit."
        ),
    )
    api_allowed_ips: Networks = setting(
        "NOTIFIER_API_ALLOWED_IPS",
        default="0.0.0.0/0,::/0",
        description=(
            "Client addresses (CIDRs, comma-separated) the HTTP API answers; others get 403. "
            "Health, metrics and the page itself are not restricted."
        ),
    )
    trusted_proxies: Networks = setting(
        "NOTIFIER_TRUSTED_PROXIES",
        default="",
        description=(
            "Proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client for "
            "NOTIFIER_API_ALLOWED_IPS; from any other peer the header is ignored."
        ),
        example="10.0.0.0/8",
    )
    api_last_used_interval: SecondOrMore = setting(
        "NOTIFIER_API_LAST_USED_INTERVAL",
        default="60s",
        description=(
            "The API keeps tokens' last-use times in memory and writes them in one batched "
            "UPDATE at most this often (and at shutdown), not once per request."
        ),
    )
    api_auth_failure_limit: Annotated[int, between(0, 1_000_000, "no throttle")] = setting(
        "NOTIFIER_API_AUTH_FAILURE_LIMIT",
        default=20,
        description=(
            "Failed authentications per client address (IPv6: per /64) per rolling minute; past "
            "it the API answers 429 with Retry-After to that address, before any token is "
            "checked, a valid one included. Other addresses are not affected. Behind a proxy, "
            "set NOTIFIER_TRUSTED_PROXIES, or every client shares the proxy's count. 0: no "
            "throttle."
        ),
    )
    api_max_streams_per_token: Annotated[int, between(1, 1000)] = setting(
        "NOTIFIER_API_MAX_STREAMS_PER_TOKEN",
        default=5,
        description=(
            "Live notification streams one token may hold open at once (each process); one "
            "more is answered 429."
        ),
    )
    http_header_timeout: SecondOrMore = setting(
        "NOTIFIER_HTTP_HEADER_TIMEOUT",
        default="10s",
        description=(
            "How long a client may take to send a request's headers (however slowly it "
            "trickles them), and how long an idle keep-alive connection stays open, before the "
            "listener closes it; whole seconds, at least 1s."
        ),
    )
    http_max_connections: Annotated[int, between(1, 100_000)] = setting(
        "NOTIFIER_HTTP_MAX_CONNECTIONS",
        default=1000,
        description=(
            "Connections the HTTP listener serves at once; further requests are answered 503 "
            "until some close."
        ),
    )
    bootstrap_token: BootstrapKey = setting(
        "NOTIFIER_BOOTSTRAP_TOKEN",
        default=None,
        secret=True,
        description=(
            "Bootstrap only: a random key (32 or more characters; openssl rand -hex 32) the "
            "HTTP API accepts with every scope, so a fresh install can create its first token; "
            "a placeholder or a key easy to guess is refused. Each use is logged. Remove it "
            "once a real token exists."
        ),
    )

    # Where systemd and the XDG spec say state lives; read here so nothing else reads os.environ.
    state_directory: Path | None = Field(None, validation_alias="STATE_DIRECTORY")
    xdg_state_home: Path | None = Field(None, validation_alias="XDG_STATE_HOME")
    # What systemd tells a service (sd_notify(3), sd_watchdog_enabled(3), systemd.exec(5)); kept
    # as text: sdnotify.py and logs.py ignore values they cannot use instead of refusing to start.
    notify_socket: str | None = Field(None, validation_alias="NOTIFY_SOCKET")
    watchdog_usec: str | None = Field(None, validation_alias="WATCHDOG_USEC")
    watchdog_pid: str | None = Field(None, validation_alias="WATCHDOG_PID")
    journal_stream: str | None = Field(None, validation_alias="JOURNAL_STREAM")
    # The checked token sources; load_settings() fills this from NOTIFIER_SOURCES, the
    # per-source variables and NOTIFIER_CONFIG_FILE.
    source_configs: SkipValidation[tuple[SourceConfig, ...]] = Field((), exclude=True)
    # The checked sinks, from NOTIFIER_SINKS, the per-sink variables and the config file.
    sink_configs: SkipValidation[tuple[SinkConfig, ...]] = Field((), exclude=True)
    # NOTIFIER_CONFIG_FILE as parsed, once, by load_settings().
    config_document: SkipValidation[ConfigDocument] = Field(default_factory=dict, exclude=True)

    @field_validator("api_allowed_ips")
    @classmethod
    def _api_allowed_ips_not_empty(cls, value: tuple[IpNetwork, ...]) -> tuple[IpNetwork, ...]:
        if not value:
            raise ValueError("empty; leave it unset to allow every address")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read init values, then the environment, then secret files and credentials."""
        del dotenv_settings, file_secret_settings  # systemd's EnvironmentFile= does that job
        remember_environment(env_settings)  # the one reading of the environment, for the rest
        return (init_settings, env_settings, SecretFilesSource(settings_cls))

    # --- derived values ---------------------------------------------------------------------

    def default_database_path(self) -> Path:
        """The SQLite file used when NOTIFIER_DATABASE_URL is unset."""
        if self.state_directory is not None:
            # systemd may pass several directories separated by ':'; the first is ours.
            return Path(str(self.state_directory).split(":", 1)[0]) / "notifier.db"
        base = self.xdg_state_home or Path.home() / ".local" / "state"
        return base / "notifier" / "notifier.db"

    def shown_database_url(self) -> str:
        """The effective database URL with every password in it redacted, for logs and output."""
        return redact_url(self.effective_database_url().render_as_string(hide_password=True))

    def effective_database_url(self) -> URL:
        """The database URL with the default applied and the password secret filled in."""
        if self.database_url is None:
            url = URL.create("sqlite+pysqlite", database=str(self.default_database_path()))
        else:
            url = make_url(self.database_url)
        if self.database_password is not None and url.password is None:
            url = url.set(password=self.database_password.get_secret_value())
        return url


def load_settings() -> Settings:
    """Read and check the settings; raise :class:`ConfigError` naming each bad variable."""
    try:
        settings = Settings()
    except ValidationError as error:
        raise ConfigError(describe(error, Settings.model_fields)) from None
    problems: list[str] = []
    level = settings.log_level
    if "log" in settings.sinks and LOG_LEVELS.index(level) > LOG_LEVELS.index("WARNING"):
        variable = value_origin(Settings.model_fields["log_level"]).variable
        problems.append(
            f"{variable}={level!r}: above WARNING while the log sink is on, which would "
            "swallow the notices (use WARNING or lower, or drop 'log' from NOTIFIER_SINKS)"
        )
    if settings.retry_deadline >= settings.claim_lease:
        problems.append(
            f"NOTIFIER_RETRY_DEADLINE={shown_duration(settings, 'retry_deadline')!r}: must be "
            f"shorter than NOTIFIER_CLAIM_LEASE ({shown_duration(settings, 'claim_lease')}), or "
            "another replica could take over a delivery still being retried"
        )
    if problems:
        raise ConfigError(problems)
    document = read_config_file(settings.config_file)
    sinks_given = value_origin(Settings.model_fields["sinks"]).variable is not None
    return settings.model_copy(
        update={
            "config_document": document,
            "source_configs": load_instances(
                SOURCES, settings.token_sources, ("store",), document.get("sources", {})
            ),
            "sink_configs": load_instances(
                SINKS,
                settings.sinks if sinks_given else None,
                settings.sinks,
                document.get("sinks", {}),
            ),
        },
    )


def shown_duration(settings: Settings, name: str) -> str:
    """The duration setting *name* as the operator wrote it: ``8760h`` stays ``8760h``."""
    return written_duration(Settings.model_fields[name], getattr(settings, name))
