import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import get_args

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from notifier import cli
from notifier.config.render import example_env, show
from notifier.config.settings import (
    ConfigError,
    HttpAddress,
    Settings,
    load_settings,
    redact_url,
)
from notifier.sources.sql import SqlSourceConfig

REPO = Path(__file__).resolve().parents[2]
# A key as `openssl rand -hex 32` makes one.
STRONG_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SECRET_TEMPLATE = REPO / "deploy" / "kubernetes" / "secret.template.yaml"


def run_notifier(
    tmp_path: Path, variables: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the real command in a process of its own, with only *variables* set."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "LANG": "C.UTF-8",
            **variables,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def config_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one configuration-error line of a run that must have exited 78 without a traceback."""
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    prefix = "notifier: configuration error: "
    assert line.startswith(prefix)
    return line.removeprefix(prefix)


class TestDefaults:
    def test_documented_defaults(self, clean_environment: Path) -> None:
        """With nothing set, the defaults are the seed's (1h, 24h, 168h, 24h day)."""
        settings = load_settings()
        assert settings.interval == timedelta(hours=1)
        assert settings.backoff_interval == timedelta(hours=24)
        assert settings.detection_window == timedelta(hours=168)
        assert settings.log_slice == timedelta(hours=24)
        assert settings.log_slice_name == "day"
        assert settings.sinks == ("log", "ui")
        assert settings.log_format == "text"
        assert settings.http_address == HttpAddress("127.0.0.1", 8080)
        assert settings.token_default_ttl == timedelta(hours=8760)
        assert settings.effective_database_url().database == str(
            clean_environment / "notifier" / "notifier.db"
        )

    def test_state_directory_wins_for_the_database(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Under systemd the SQLite file lives in $STATE_DIRECTORY."""
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "svc"))
        url = load_settings().effective_database_url()
        assert url.database == str(tmp_path / "svc" / "notifier.db")

    def test_home_fallback(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without XDG_STATE_HOME the file is under ~/.local/state/notifier."""
        monkeypatch.delenv("XDG_STATE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path))
        url = load_settings().effective_database_url()
        assert url.database == str(tmp_path / ".local/state/notifier/notifier.db")

    def test_http_off(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`off` disables the listener."""
        monkeypatch.setenv("NOTIFIER_HTTP_ADDRESS", "off")
        assert load_settings().http_address is None

    def test_ipv6_address(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An IPv6 listener is written in brackets."""
        monkeypatch.setenv("NOTIFIER_HTTP_ADDRESS", "[::1]:0")
        assert load_settings().http_address == HttpAddress("::1", 0)

    def test_postgres_url_uses_psycopg(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """postgresql:// and postgres:// both map onto the psycopg 3 driver we ship."""
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", "postgres://u@db.example/notifier")
        assert load_settings().effective_database_url().drivername == "postgresql+psycopg"


class TestAliases:
    @pytest.mark.parametrize(
        ("rox", "field", "value", "expected"),
        [
            ("ROX_TOKEN_EXPIRATION_NOTIFIER_INTERVAL", "interval", "30m", timedelta(minutes=30)),
            (
                "ROX_TOKEN_EXPIRATION_NOTIFIER_BACKOFF_INTERVAL",
                "backoff_interval",
                "12h",
                timedelta(hours=12),
            ),
            ("ROX_TOKEN_EXPIRATION_DETECTION_WINDOW", "detection_window", "72h", timedelta(days=3)),
            ("ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION", "log_slice", "1h", timedelta(hours=1)),
            ("ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION_NAME", "log_slice_name", "hour", "hour"),
        ],
    )
    def test_seed_names_are_read(
        self,
        monkeypatch: pytest.MonkeyPatch,
        rox: str,
        field: str,
        value: str,
        expected: object,
    ) -> None:
        """Each StackRox variable from the seed sets its setting."""
        monkeypatch.setenv(rox, value)
        assert getattr(load_settings(), field) == expected

    def test_notifier_name_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """When both names are set, the NOTIFIER_ one wins."""
        monkeypatch.setenv("ROX_TOKEN_EXPIRATION_NOTIFIER_INTERVAL", "30m")
        monkeypatch.setenv("NOTIFIER_INTERVAL", "2h")
        assert load_settings().interval == timedelta(hours=2)

    def test_config_show_names_the_alias_used(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` says which variable each value came from."""
        monkeypatch.setenv("ROX_TOKEN_EXPIRATION_DETECTION_WINDOW", "72h")
        monkeypatch.setenv("NOTIFIER_INTERVAL", "2h")
        assert cli.main(["config", "show", "--json"]) == 0
        rows = {row["variable"]: row for row in json.loads(capsys.readouterr().out)}
        assert (
            rows["NOTIFIER_DETECTION_WINDOW"]["source"] == "ROX_TOKEN_EXPIRATION_DETECTION_WINDOW"
        )
        assert rows["NOTIFIER_DETECTION_WINDOW"]["value"] == "72h"  # as written, not 3d
        assert rows["NOTIFIER_INTERVAL"]["source"] == "NOTIFIER_INTERVAL"
        assert rows["NOTIFIER_BACKOFF_INTERVAL"]["source"] == "default"


# (variable, value, words the one-line error must contain besides the variable and value)
BAD_CONFIG = [
    ("NOTIFIER_INTERVAL", "abc", "not a duration"),
    ("NOTIFIER_INTERVAL", "", "empty"),
    ("NOTIFIER_INTERVAL", "-1h", "at least 1s"),
    ("NOTIFIER_INTERVAL", "0", "at least 1s"),  # zero makes no sense for an interval
    ("NOTIFIER_INTERVAL", "500ms", "at least 1s"),
    ("ROX_TOKEN_EXPIRATION_NOTIFIER_INTERVAL", "1 hour", "not a duration"),
    ("NOTIFIER_BACKOFF_INTERVAL", "-5m", "negative"),
    ("NOTIFIER_BACKOFF_INTERVAL", "soon", "not a duration"),
    ("ROX_TOKEN_EXPIRATION_NOTIFIER_BACKOFF_INTERVAL", "", "empty"),
    ("NOTIFIER_DETECTION_WINDOW", "0", "greater than zero"),
    ("NOTIFIER_DETECTION_WINDOW", "-168h", "greater than zero"),
    ("ROX_TOKEN_EXPIRATION_DETECTION_WINDOW", "168", "not a duration"),
    ("NOTIFIER_LOG_SLICE", "500ms", "at least 1s"),  # StackRox crashes on this one
    ("ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION", "0", "at least 1s"),
    ("NOTIFIER_LOG_SLICE_NAME", "", "one word"),
    ("ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION_NAME", "two words", "one word"),
    ("NOTIFIER_SINKS", "", "empty"),
    ("NOTIFIER_SINKS", "log,pager", "unknown sink 'pager'"),
    ("NOTIFIER_SINKS", "log,log", "listed twice"),
    ("NOTIFIER_SINKS", "Log", "not a sink name"),
    ("NOTIFIER_LOG_FORMAT", "xml", "text"),
    ("NOTIFIER_LOG_FORMAT", "", "text"),
    ("NOTIFIER_LOG_LEVEL", "LOUD", "expected one of"),
    ("NOTIFIER_LOG_LEVEL", "ERROR", "swallow the notices"),
    ("NOTIFIER_DATABASE_URL", "not a url", "not a database URL"),
    ("NOTIFIER_DATABASE_URL", "", "empty"),
    ("NOTIFIER_DATABASE_URL", "mongodb://db/notifier", "unknown database driver"),
    ("NOTIFIER_DATABASE_URL", "sqlite://", "file path"),
    (  # PgBouncer's option, misspelt: a count or none
        "NOTIFIER_DATABASE_URL",
        "postgresql://u@db/n?prepare_threshold=sometimes",
        "prepare_threshold='sometimes': expected a whole number",
    ),
    ("NOTIFIER_DATABASE_URL", "postgresql://u@db/n?prepare_threshold=-1", "prepare_threshold"),
    (  # psycopg's option means nothing to SQLite
        "NOTIFIER_DATABASE_URL",
        "sqlite:////x.db?prepare_threshold=none",
        "option of PostgreSQL URLs",
    ),
    ("NOTIFIER_HTTP_ADDRESS", "localhost", "HOST:PORT"),
    ("NOTIFIER_HTTP_ADDRESS", "127.0.0.1:99999", "out of range"),
    ("NOTIFIER_HTTP_ADDRESS", "", "HOST:PORT"),
    ("NOTIFIER_BATCH_SIZE", "0", "between 1 and 2000"),
    ("NOTIFIER_BATCH_SIZE", "many", "integer"),
    ("NOTIFIER_TOKEN_DEFAULT_TTL", "0", "greater than zero"),
    ("NOTIFIER_TOKEN_PREFIX", "no spaces", "letters"),
    ("NOTIFIER_CLAIM_LEASE", "10ms", "at least 1s"),
    ("NOTIFIER_SHUTDOWN_TIMEOUT", "0", "greater than zero"),
    ("NOTIFIER_LOG_FILE", "", "empty"),
]


class TestBadConfig:
    @pytest.mark.parametrize(("variable", "value", "words"), BAD_CONFIG)
    def test_exits_78_naming_the_variable(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        variable: str,
        value: str,
        words: str,
    ) -> None:
        """Every bad value stops start-up with exit 78 and one line naming variable and value."""
        monkeypatch.setenv(variable, value)
        assert cli.main(["check"]) == 78
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert f"{variable}={value!r}" in lines[0]
        assert words in lines[0]

    def test_several_bad_values_each_get_a_line(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Two bad variables are both reported, a line each."""
        monkeypatch.setenv("NOTIFIER_INTERVAL", "x")
        monkeypatch.setenv("NOTIFIER_LOG_FORMAT", "xml")
        assert cli.main(["run"]) == 78
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2

    def test_a_max_lifetime_below_the_default_ttl_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A cap shorter than the default lifetime would refuse every plain create: exit 78."""
        monkeypatch.setenv("NOTIFIER_TOKEN_MAX_LIFETIME", "90d")
        assert cli.main(["check"]) == 78
        err = capsys.readouterr().err
        assert "NOTIFIER_TOKEN_MAX_LIFETIME='90d'" in err
        assert "NOTIFIER_TOKEN_DEFAULT_TTL" in err
        monkeypatch.setenv("NOTIFIER_TOKEN_DEFAULT_TTL", "30d")
        settings = load_settings()
        assert settings.token_max_lifetime == timedelta(days=90)

    def test_error_level_without_the_log_sink_is_fine(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ERROR is refused only while the log sink would be swallowed."""
        monkeypatch.setenv("NOTIFIER_LOG_LEVEL", "error")
        monkeypatch.setenv("NOTIFIER_SINKS", "ui")
        assert load_settings().log_level == "ERROR"

    def test_real_process_exit_code(self, tmp_path: Path) -> None:
        """The installed command exits 78 on a bad value, in a process of its own."""
        result = subprocess.run(
            [sys.executable, "-m", "notifier", "check"],
            env={
                "PATH": "/usr/bin:/bin",
                "XDG_STATE_HOME": str(tmp_path),
                "NOTIFIER_INTERVAL": "-1h",
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 78
        assert "NOTIFIER_INTERVAL='-1h'" in result.stderr

    def test_unreadable_log_file_is_a_config_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A log file that cannot be opened is named, with exit 78."""
        monkeypatch.setenv("NOTIFIER_LOG_FILE", "/proc/nope/notifier.log")
        assert cli.main(["check"]) == 78
        assert "NOTIFIER_LOG_FILE" in capsys.readouterr().err

    def test_unknown_variable_is_warned_about(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A misspelt NOTIFIER_ variable is reported with the closest real name."""
        monkeypatch.setenv("NOTIFIER_INTERVALL", "2h")
        assert cli.main(["config", "show"]) == 0
        err = capsys.readouterr().err
        assert "config.unknown_variable" in err
        assert "did_you_mean=NOTIFIER_INTERVAL" in err


class TestSecrets:
    def test_from_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """NAME_FILE reads the secret from a file, without its trailing newline."""
        path = tmp_path / "pepper"
        path.write_text(f"{STRONG_KEY}\n")
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER_FILE", str(path))
        pepper = load_settings().token_pepper
        assert pepper is not None
        assert pepper.get_secret_value() == STRONG_KEY

    def test_from_credentials_directory(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """With systemd's LoadCredential= the secret lands in $CREDENTIALS_DIRECTORY/<name>."""
        (tmp_path / "database_password").write_text("pw-from-systemd")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", "postgresql://notifier@db/notifier")
        url = load_settings().effective_database_url()
        assert url.password == "pw-from-systemd"

    def test_variable_wins_over_credentials(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """NAME itself wins over the credentials directory."""
        (tmp_path / "token_pepper").write_text(f"from-credentials-{STRONG_KEY}")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER", f"from-env-{STRONG_KEY}")
        pepper = load_settings().token_pepper
        assert pepper is not None
        assert pepper.get_secret_value() == f"from-env-{STRONG_KEY}"

    def test_both_name_and_file_is_an_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Setting NAME and NAME_FILE together is ambiguous, so refused."""
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER", "a")
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER_FILE", str(tmp_path / "b"))
        with pytest.raises(ConfigError, match="both set"):
            load_settings()

    def test_unreadable_file_is_a_config_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """A secret file that cannot be read is named, with exit 78."""
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER_FILE", str(tmp_path / "missing"))
        assert cli.main(["check"]) == 78
        assert "NOTIFIER_TOKEN_PEPPER_FILE" in capsys.readouterr().err

    def test_secret_values_are_not_echoed_in_errors(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad secret is named but its value is not printed."""
        monkeypatch.setenv("NOTIFIER_DATABASE_PASSWORD", "hunter2")
        monkeypatch.setenv("NOTIFIER_INTERVAL", "bad")
        assert cli.main(["check"]) == 78
        assert "hunter2" not in capsys.readouterr().err

    def test_config_show_redacts(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` never prints a secret, nor the password inside the database URL."""
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER", STRONG_KEY)
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", "postgresql://u:url-password@db/n")
        assert cli.main(["config"]) == 0
        out = capsys.readouterr().out
        assert STRONG_KEY not in out
        assert "url-password" not in out
        assert "********" in out
        assert "postgresql+psycopg://u:***@db/n" in out


class TestExample:
    def test_committed_file_matches_the_model(self) -> None:
        """config.example.env is what `notifier config example` prints: no drift."""
        committed = (REPO / "config.example.env").read_text(encoding="utf-8")
        assert committed == example_env(), "run: notifier config example > config.example.env"

    def test_every_setting_is_documented(self) -> None:
        """Each variable config show lists appears in the example file."""
        text = example_env()
        for row in show(load_settings()):
            assert f"#{row.variable}=" in text

    def test_example_needs_no_valid_configuration(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config example` works even while the environment is broken."""
        monkeypatch.setenv("NOTIFIER_INTERVAL", "broken")
        assert cli.main(["config", "example"]) == 0
        assert "#NOTIFIER_INTERVAL=1h" in capsys.readouterr().out


class TestSources:
    def test_default_is_the_store(self) -> None:
        """Without NOTIFIER_SOURCES or a config file, the pass reads the store only."""
        assert [config.name for config in load_settings().source_configs] == ["store"]

    def test_sql_source_from_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A labelled sql source reads NOTIFIER_SQL_<LABEL>_<OPTION>."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "store,sql:billing")
        monkeypatch.setenv("NOTIFIER_SQL_BILLING_URL", "postgresql://reader@db/billing")
        monkeypatch.setenv("NOTIFIER_SQL_BILLING_TABLE", "api_keys")
        monkeypatch.setenv(
            "NOTIFIER_SQL_BILLING_COLUMNS", "id=key_id, name=label, expires_at=valid_until"
        )
        monkeypatch.setenv("NOTIFIER_SQL_BILLING_TIMEZONE", "Europe/Berlin")
        store, sql = load_settings().source_configs
        assert store.name == "store"
        assert isinstance(sql, SqlSourceConfig)
        assert sql.url.drivername == "postgresql+psycopg"
        assert sql.columns == {"id": "key_id", "name": "label", "expires_at": "valid_until"}
        assert str(sql.timezone) == "Europe/Berlin"

    def test_config_file_defines_sources(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Sources in NOTIFIER_CONFIG_FILE are read beside the store; variables override."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sources."file:partners"]\n'
            'path = "/srv/partners.yaml"\n'
            '[sources."sql:billing"]\n'
            'url = "sqlite:////srv/billing.db"\n'
            'table = "keys"\n'
            'columns = { id = "id", name = "name", expires_at = "expires" }\n'
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        monkeypatch.setenv("NOTIFIER_SQL_BILLING_TABLE", "api_keys")
        names = [c.name for c in load_settings().source_configs]
        assert names == ["store", "file:partners", "sql:billing"]
        sql = load_settings().source_configs[2]
        assert isinstance(sql, SqlSourceConfig)
        assert sql.table == "api_keys"

    def test_source_url_secret_from_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A source URL with a password can come from a file, and config show hides it."""
        secret = tmp_path / "url"
        secret.write_text("postgresql://reader:s3cret@db/billing\n")
        monkeypatch.setenv("NOTIFIER_SOURCES", "sql")
        monkeypatch.setenv("NOTIFIER_SQL_URL_FILE", str(secret))
        monkeypatch.setenv("NOTIFIER_SQL_TABLE", "t")
        monkeypatch.setenv("NOTIFIER_SQL_COLUMNS", "id=a,name=b,expires_at=c")
        (sql,) = load_settings().source_configs
        assert isinstance(sql, SqlSourceConfig)
        assert sql.url.password == "s3cret"

    @pytest.mark.parametrize(
        ("variables", "words"),
        [
            ({"NOTIFIER_SOURCES": "store,ldap"}, "unknown source 'ldap'"),
            ({"NOTIFIER_SOURCES": "store:x"}, "no label"),
            ({"NOTIFIER_SOURCES": "sql"}, "NOTIFIER_SQL_URL: is required"),
            (
                {
                    "NOTIFIER_SOURCES": "sql",
                    "NOTIFIER_SQL_URL": "nope://x",
                    "NOTIFIER_SQL_TABLE": "t",
                },
                "NOTIFIER_SQL_URL",
            ),
            (
                {
                    "NOTIFIER_SOURCES": "sql",
                    "NOTIFIER_SQL_URL": "sqlite:////x.db",
                    "NOTIFIER_SQL_TABLE": "t",
                    "NOTIFIER_SQL_COLUMNS": "id=a,name=b",
                },
                "NOTIFIER_SQL_COLUMNS='id=a,name=b': no column mapped for expires_at",
            ),
            (
                {
                    "NOTIFIER_SOURCES": "sql",
                    "NOTIFIER_SQL_URL": "sqlite:////x.db",
                    "NOTIFIER_SQL_TABLE": "t",
                    "NOTIFIER_SQL_COLUMNS": "id=a,name=b,expires_at=c,colour=d",
                },
                "unknown role 'colour'",
            ),
            (
                {
                    "NOTIFIER_SOURCES": "file",
                    "NOTIFIER_FILE_PATH": "/x.json",
                    "NOTIFIER_FILE_TIMEZONE": "Mars/Olympus",
                },
                "NOTIFIER_FILE_TIMEZONE='Mars/Olympus': unknown time zone",
            ),
            ({"NOTIFIER_SOURCES": "file"}, "NOTIFIER_FILE_PATH: is required"),
            ({"NOTIFIER_CONFIG_FILE": "/nonexistent/notifier.toml"}, "cannot read it"),
        ],
    )
    def test_bad_sources_exit_78(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        variables: dict[str, str],
        words: str,
    ) -> None:
        """A bad source configuration stops start-up with the variable named, exit 78."""
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        assert cli.main(["check"]) == 78
        err = capsys.readouterr().err
        assert words in err
        assert len(err.strip().splitlines()) == 1

    @pytest.mark.parametrize(
        ("document", "words"),
        [
            ("[sources\n", "not valid TOML"),
            ('[sinks."x"]\n', "unknown sink 'x'"),
            ("[routes]\n", "unknown table or key 'routes'"),
            (
                '[sources."sql"]\nurl = "sqlite:////x.db"\ntable = "t"\ncolumns = { id = "a" }\n',
                'NOTIFIER_CONFIG_FILE [sources."sql"] columns: no column mapped',
            ),
            ('[sources."file"]\npath = "/x"\ncolour = "red"\n', "colour: not an option"),
            ('[sources."ftp"]\n', "unknown source 'ftp'"),
        ],
    )
    def test_bad_config_file_exit_78(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        tmp_path: Path,
        document: str,
        words: str,
    ) -> None:
        """A bad config file is named, with the key or the TOML error, exit 78."""
        path = tmp_path / "notifier.toml"
        path.write_text(document)
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
        assert cli.main(["check"]) == 78
        assert words in capsys.readouterr().err

    def test_source_variables_are_not_unknown(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """The variables of an enabled source are not reported as typos."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "file:partners")
        monkeypatch.setenv("NOTIFIER_FILE_PARTNERS_PATH", str(tmp_path / "t.json"))
        assert cli.main(["config"]) == 0
        assert "unknown_variable" not in capsys.readouterr().err


def _holds_duration(annotation: object) -> bool:
    return annotation is timedelta or any(_holds_duration(arg) for arg in get_args(annotation))


def _duration_variables() -> set[str]:
    """The NOTIFIER_ name of every setting that holds a duration, read from the model."""
    return {
        str(field.json_schema_extra["env"])
        for field in Settings.model_fields.values()
        if isinstance(field.json_schema_extra, dict) and _holds_duration(field.annotation)
    }


DURATION_VARIABLES = sorted(_duration_variables())
TOO_LONG = "100000000d"  # overflowed datetime the first time a pass added it to now


class TestDurationLimits:
    def test_the_table_covers_every_duration_setting(self) -> None:
        """Each duration setting of the model is in the table below, so none is left out."""
        assert len(DURATION_VARIABLES) >= 12
        assert {"NOTIFIER_DETECTION_WINDOW", "NOTIFIER_TOKEN_MAX_LIFETIME"} <= set(
            DURATION_VARIABLES
        )

    @pytest.mark.parametrize(
        "variable",
        [*DURATION_VARIABLES, "ROX_TOKEN_EXPIRATION_NOTIFIER_INTERVAL"],
    )
    @pytest.mark.parametrize("value", [TOO_LONG, "36526d", "1000000000d"])  # a day over; past int
    def test_every_duration_setting_is_capped(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        variable: str,
        value: str,
    ) -> None:
        """Each duration setting refuses more than 100 years in one line naming it, exit 78."""
        monkeypatch.setenv(variable, value)
        assert cli.main(["check"]) == 78
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"{variable}={value!r}: " in line
        assert "100 years" in line or "out of range" in line

    def test_a_huge_negative_duration_is_negative(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Past the cap the other way, the message says what is wrong: the sign."""
        monkeypatch.setenv("NOTIFIER_BACKOFF_INTERVAL", f"-{TOO_LONG}")
        assert cli.main(["check"]) == 78
        assert "must not be negative" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("variables", "named"),
        [
            # A sample of the settings above, in a process of its own, through the alias too.
            ({"NOTIFIER_DETECTION_WINDOW": TOO_LONG}, "NOTIFIER_DETECTION_WINDOW"),
            ({"ROX_TOKEN_EXPIRATION_DETECTION_WINDOW": TOO_LONG}, "ROX_TOKEN_EXPIRATION_"),
            # Thresholds overflowed in the pass: a traceback and exit 1, before.
            ({"NOTIFIER_THRESHOLDS": f"30d,{TOO_LONG}"}, "NOTIFIER_THRESHOLDS"),
            pytest.param(
                {
                    "NOTIFIER_SINKS": "log,webhook",
                    "NOTIFIER_WEBHOOK_URL": "http://127.0.0.1:1/",
                    "NOTIFIER_WEBHOOK_TIMEOUT": TOO_LONG,
                },
                "NOTIFIER_WEBHOOK_TIMEOUT",
            ),
            pytest.param(
                {
                    "NOTIFIER_SINKS": "log,email",
                    "NOTIFIER_EMAIL_HOST": "127.0.0.1",
                    "NOTIFIER_EMAIL_FROM": "notifier@example.com",
                    "NOTIFIER_EMAIL_TIMEOUT": TOO_LONG,
                },
                "NOTIFIER_EMAIL_TIMEOUT",
            ),
        ],
        ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
    )
    def test_a_duration_past_a_century_exits_78(
        self, tmp_path: Path, variables: dict[str, str], named: str
    ) -> None:
        """A duration option longer than 100 years stops start-up naming its variable, exit 78."""
        line = config_error(run_notifier(tmp_path, variables, "check"))
        assert line.startswith(named)
        assert "longer than 100 years" in line

    def test_every_duration_at_the_limit_still_runs_a_pass(self, tmp_path: Path) -> None:
        """With each duration at 100 years, a token is created and a pass runs without overflow."""
        variables = dict.fromkeys(DURATION_VARIABLES, "36525d")
        variables["NOTIFIER_RETRY_DEADLINE"] = "36524d"  # must stay below the claim lease
        variables["NOTIFIER_THRESHOLDS"] = "36525d,50%"
        created = run_notifier(tmp_path, variables, "tokens", "create", "--name", "long")
        assert created.returncode == 0, created.stderr
        checked = run_notifier(tmp_path, variables, "check")
        assert checked.returncode == 0, checked.stderr
        assert "Traceback" not in checked.stderr


# (NOTIFIER_DATABASE_URL, words besides the supported schemes)
UNSUPPORTED_DATABASES = [
    ("mysql://u@db/notifier", "unsupported database 'mysql'"),
    ("mariadb://u@db/notifier", "unsupported database 'mariadb'"),
    ("oracle://u@db/notifier", "unsupported database 'oracle'"),
    ("mssql://u@db/notifier", "unsupported database 'mssql'"),
    ("mongodb://db/notifier", "unknown database driver 'mongodb'"),
    ("garbage", "not a database URL"),
    ("postgresql+psycopg2://u@db/notifier", "driver 'psycopg2'"),  # not installed: psycopg 3 is
    ("postgresql+asyncpg://u@db/notifier", "driver 'asyncpg'"),
    ("sqlite+aiosqlite:////tmp/notifier.db", "driver 'aiosqlite'"),
    ("postgresql://u@db:notaport/notifier", "the port after the host must be a number"),
]


class TestDatabaseUrls:
    @pytest.mark.parametrize(("url", "words"), UNSUPPORTED_DATABASES)
    def test_unsupported_database_exits_78(self, tmp_path: Path, url: str, words: str) -> None:
        """A URL notifier cannot keep its state in is named, with the schemes it supports."""
        line = config_error(run_notifier(tmp_path, {"NOTIFIER_DATABASE_URL": url}, "check"))
        assert line.startswith(f"NOTIFIER_DATABASE_URL={url!r}: ")
        assert words in line
        assert "sqlite" in line
        assert "postgresql" in line

    @pytest.mark.parametrize("port", ["0", "99999"])
    def test_a_port_out_of_range_exits_78(self, tmp_path: Path, port: str) -> None:
        """A port no server can listen on is a configuration error, not an outage (69)."""
        url = f"postgresql://u@127.0.0.1:{port}/notifier"
        line = config_error(run_notifier(tmp_path, {"NOTIFIER_DATABASE_URL": url}, "check"))
        assert line == f"NOTIFIER_DATABASE_URL={url!r}: port {port} is out of range (1-65535)"

    def test_the_sql_source_still_reads_mysql(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MySQL stays a source's business: the sql source takes a mysql:// URL of its own."""
        pytest.importorskip("pymysql", reason="the mysql extra is not installed")
        monkeypatch.setenv("NOTIFIER_SOURCES", "sql")
        monkeypatch.setenv("NOTIFIER_SQL_URL", "mysql://reader@db/billing")
        monkeypatch.setenv("NOTIFIER_SQL_TABLE", "t")
        monkeypatch.setenv("NOTIFIER_SQL_COLUMNS", "id=a,name=b,expires_at=c")
        (sql,) = load_settings().source_configs
        assert isinstance(sql, SqlSourceConfig)
        assert sql.url.drivername == "mysql+pymysql"


PASSWORD = "hunter2pw"
# Database URLs that are wrong in some way and carry PASSWORD somewhere.
LEAKY_URLS = [
    f"postgresql://u:{PASSWORD}@host:notaport/db",
    f"postgresql://u:{PASSWORD}@host:99999/db",
    f"postgresql://u:{PASSWORD}@[::1/db",
    f"postgresql://u:{PASSWORD}@db/n?prepare_threshold=sometimes",
    f"mysql://u:{PASSWORD}@db/notifier",
    f"postgresql://u@db:notaport/n?password={PASSWORD}",
    f"postgresql://a@b:{PASSWORD}@host:x/db",  # SQLAlchemy's user part may hold an @
    f"u:{PASSWORD}@db/notifier",  # no scheme
    f"host=db user=u password={PASSWORD}",  # libpq's keyword form, not a URL
]


class TestRedaction:
    def test_a_bad_database_url_never_echoes_its_password(self, tmp_path: Path) -> None:
        """In a process of its own: exit 78, the URL shown with its password as ***."""
        url = f"postgresql://u:{PASSWORD}@host:notaport/db"
        line = config_error(run_notifier(tmp_path, {"NOTIFIER_DATABASE_URL": url}, "check"))
        assert line.startswith("NOTIFIER_DATABASE_URL='postgresql://u:***@host:notaport/db': ")
        assert PASSWORD not in line

    @pytest.mark.parametrize("url", LEAKY_URLS)
    def test_no_bad_database_url_echoes_its_password(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
    ) -> None:
        """Whatever is wrong with the URL, the one error line hides its password."""
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", url)
        assert cli.main(["check"]) == 78
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "NOTIFIER_DATABASE_URL=" in line
        assert PASSWORD not in line
        assert "***" in line

    @pytest.mark.parametrize(
        ("url", "redacted"),
        [
            ("postgresql://u:pw@h:x/db", "postgresql://u:***@h:x/db"),
            ("postgresql://u:p@ss:w/rd@h/db", "postgresql://u:***@h/db"),  # unencoded @ and /
            (
                "postgresql://u@h/db?sslmode=require&password=pw",
                "postgresql://u@h/db?sslmode=require&password=***",
            ),
            ("sqlite:////var/lib/a@b/notifier.db", "sqlite:////var/lib/a@b/notifier.db"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            ("host=h password=pw dbname=x", "host=h password=*** dbname=x"),
        ],
    )
    def test_redact_url(self, url: str, redacted: str) -> None:
        """The password of a URL, and any password= pair, is masked; nothing else changes."""
        assert redact_url(url) == redacted

    @pytest.mark.parametrize(
        "variables",
        [
            {"NOTIFIER_SQL_URL": f"postgresql://r:{PASSWORD}@db:notaport/billing"},
            {"NOTIFIER_SQL_URL": f"postgresql://r:{PASSWORD}@db:99999/billing"},
            {"NOTIFIER_SQL_URL": f"nosuchdb://r:{PASSWORD}@db/billing"},
        ],
        ids=["bad-port", "port-range", "unknown-driver"],
    )
    def test_a_bad_source_url_exits_78_without_its_password(
        self, tmp_path: Path, variables: dict[str, str]
    ) -> None:
        """The sql source's URL option is checked the same way, and never echoed."""
        source = {
            "NOTIFIER_SOURCES": "sql",
            "NOTIFIER_SQL_TABLE": "t",
            "NOTIFIER_SQL_COLUMNS": "id=a,name=b,expires_at=c",
        }
        line = config_error(run_notifier(tmp_path, {**source, **variables}, "check"))
        assert line.startswith("NOTIFIER_SQL_URL: ")
        assert PASSWORD not in line

    def test_a_bad_source_url_in_the_config_file(self, tmp_path: Path) -> None:
        """A source URL from the TOML file is named by its key, without its password."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sources."sql:billing"]\n'
            f'url = "postgresql://r:{PASSWORD}@db:notaport/billing"\n'
            'table = "t"\n'
            'columns = { id = "a", name = "b", expires_at = "c" }\n'
        )
        line = config_error(run_notifier(tmp_path, {"NOTIFIER_CONFIG_FILE": str(config)}, "check"))
        assert line.startswith('NOTIFIER_CONFIG_FILE [sources."sql:billing"] url: ')
        assert PASSWORD not in line

    @given(
        scheme=st.sampled_from(["postgresql", "postgres", "sqlite", "mysql", "x+y", "", "pg sql"]),
        separator=st.sampled_from(["://", ":/", ":", ""]),
        user=st.text(max_size=5),
        host=st.text(max_size=8),
        rest=st.text(max_size=12),
    )
    def test_any_url_loads_or_is_one_redacted_error(
        self, scheme: str, separator: str, user: str, host: str, rest: str
    ) -> None:
        """Whatever the text, it loads or is a ConfigError without the password: no traceback."""
        url = f"{scheme}{separator}{user}:{PASSWORD}@{host}{rest}".replace("\x00", "")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NOTIFIER_DATABASE_URL", url)
            message = ""
            try:
                load_settings()
            except ConfigError as error:
                message = str(error)
        assert PASSWORD not in message
        assert not message or message.startswith("NOTIFIER_DATABASE_URL")

    def test_config_show_hides_a_password_in_the_query(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A password given as ?password= (psycopg reads it) is redacted like the URL's own."""
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"postgresql://u@db/n?password={PASSWORD}")
        assert cli.main(["config", "show", "--json"]) == 0
        out = capsys.readouterr().out
        assert PASSWORD not in out
        rows = {row["variable"]: row for row in json.loads(out)}
        assert rows["NOTIFIER_DATABASE_URL"]["value"] == "postgresql+psycopg://u@db/n?password=***"


SECRET_SETTINGS = [
    "NOTIFIER_DATABASE_PASSWORD",
    "NOTIFIER_TOKEN_PEPPER",
    "NOTIFIER_HEARTBEAT_URL",
    "NOTIFIER_BOOTSTRAP_TOKEN",
]
KEYS = ["NOTIFIER_TOKEN_PEPPER", "NOTIFIER_BOOTSTRAP_TOKEN"]
# Keys long enough for the bootstrap key's 32 characters, and still easy to guess.
GUESSABLE_KEYS = [
    "a" * 32,
    "changeme" * 4,
    "abcd" * 8,  # a short alphabet repeated
    "0123456789abcdef" * 2,
    "changeme" * 4 + "!",  # a repeat with something added
    "password" * 5,
    "ab" * 20 + "abba" * 3,
]


def _template_secrets() -> dict[str, str]:
    document = yaml.safe_load(SECRET_TEMPLATE.read_text(encoding="utf-8"))
    secrets: dict[str, str] = document["stringData"]
    return secrets


class TestPlaceholders:
    @pytest.mark.parametrize("credential", sorted(_template_secrets()))
    def test_each_placeholder_of_the_kubernetes_template_exits_78(
        self, tmp_path: Path, credential: str
    ) -> None:
        """The Secret template copied unchanged does not start: each placeholder is named."""
        value = _template_secrets()[credential]
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / credential).write_text(value, encoding="utf-8")
        variables = {"CREDENTIALS_DIRECTORY": str(credentials)}
        if credential == "database_password":
            variables["NOTIFIER_DATABASE_URL"] = "postgresql://notifier@127.0.0.1:1/notifier"
        line = config_error(run_notifier(tmp_path, variables, "check"))
        assert line.startswith(f"NOTIFIER_{credential.upper()} ")
        assert "placeholder" in line
        assert value not in line

    @pytest.mark.parametrize("variable", KEYS)
    def test_the_placeholder_bootstrap_key_in_the_environment(
        self, tmp_path: Path, variable: str
    ) -> None:
        """The template's bootstrap key pasted into a variable is refused just the same."""
        value = _template_secrets()["bootstrap_token"]
        line = config_error(run_notifier(tmp_path, {variable: value}, "check"))
        assert line.startswith(f"{variable}: ")
        assert value not in line

    def test_a_guessable_key_exits_78(self, tmp_path: Path) -> None:
        """In a process of its own: a long but repetitive bootstrap key stops start-up, exit 78."""
        key = "changeme" * 4
        line = config_error(run_notifier(tmp_path, {"NOTIFIER_BOOTSTRAP_TOKEN": key}, "check"))
        assert line.startswith("NOTIFIER_BOOTSTRAP_TOKEN: too easy to guess")
        assert "changeme" not in line

    @pytest.mark.parametrize("variable", KEYS)
    @pytest.mark.parametrize("key", GUESSABLE_KEYS)
    def test_a_guessable_key_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, key: str
    ) -> None:
        """A key with little entropy is refused, and the error does not repeat it."""
        monkeypatch.setenv(variable, key)
        with pytest.raises(ConfigError) as raised:
            load_settings()
        (line,) = raised.value.lines
        assert line.startswith(f"{variable}: too easy to guess")
        assert key[:8] not in line

    @pytest.mark.parametrize("variable", KEYS)
    @pytest.mark.parametrize(
        "key",
        [
            STRONG_KEY,  # openssl rand -hex 32
            "n5Vq0yZ8mW2bX4kT7rJ1uH3gF6dS9aQeLpOiUyTrEwQ=",  # openssl rand -base64 32
            "bootstrap-0123456789abcdef0123456789abcdef",  # the web tests' key
            "8c1d2e7fa0b94c6d3e5f1a2b7c9d0e4f",  # openssl rand -hex 16
        ],
    )
    def test_a_random_key_is_accepted(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, key: str
    ) -> None:
        """Keys made by a random generator pass the entropy estimate."""
        monkeypatch.setenv(variable, key)
        settings = load_settings()
        value = settings.token_pepper if "PEPPER" in variable else settings.bootstrap_token
        assert value is not None
        assert value.get_secret_value() == key

    def test_a_short_weak_pepper_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The pepper has no length rule of its own; the entropy estimate refuses a word."""
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER", "s3cret-pepper")
        with pytest.raises(ConfigError, match=r"NOTIFIER_TOKEN_PEPPER: .*guess"):
            load_settings()


class TestEmptySecrets:
    @pytest.mark.parametrize("variable", SECRET_SETTINGS)
    def test_an_empty_secret_exits_78(self, tmp_path: Path, variable: str) -> None:
        """NAME= is refused like an empty NAME_FILE, rather than turning the secret off."""
        line = config_error(run_notifier(tmp_path, {variable: ""}, "check"))
        assert line.startswith(f"{variable}: empty; leave it unset")

    @pytest.mark.parametrize("variable", SECRET_SETTINGS)
    def test_a_blank_secret_is_empty(self, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
        """A secret of spaces only is as empty as no text at all."""
        monkeypatch.setenv(variable, "   ")
        with pytest.raises(ConfigError, match=f"^{variable}: empty"):
            load_settings()

    def test_an_empty_secret_file_names_the_setting(self, tmp_path: Path) -> None:
        """A blank credential file names the setting it was read for."""
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "token_pepper").write_text("\n")
        variables = {"CREDENTIALS_DIRECTORY": str(credentials)}
        line = config_error(run_notifier(tmp_path, variables, "check"))
        assert line.startswith("NOTIFIER_TOKEN_PEPPER ")
        assert "empty" in line

    @pytest.mark.parametrize(
        ("variables", "named"),
        [
            (
                {
                    "NOTIFIER_SINKS": "log,email",
                    "NOTIFIER_EMAIL_HOST": "127.0.0.1",
                    "NOTIFIER_EMAIL_FROM": "notifier@example.com",
                    "NOTIFIER_EMAIL_USERNAME": "notifier",
                    "NOTIFIER_EMAIL_PASSWORD": "",
                },
                "NOTIFIER_EMAIL_PASSWORD",
            ),
            (
                {
                    "NOTIFIER_SINKS": "log,webhook",
                    "NOTIFIER_WEBHOOK_URL": "http://127.0.0.1:1/",
                    "NOTIFIER_WEBHOOK_SECRET": "",
                },
                "NOTIFIER_WEBHOOK_SECRET",
            ),
        ],
        ids=["email-password", "webhook-secret"],
    )
    def test_an_empty_instance_secret_exits_78(
        self, tmp_path: Path, variables: dict[str, str], named: str
    ) -> None:
        """A sink's secret option given empty is refused, not taken as 'no password'."""
        line = config_error(run_notifier(tmp_path, variables, "check"))
        assert line.startswith(f"{named}: empty")

    def test_an_empty_secret_in_the_config_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """An empty password in the TOML file is refused by its key."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sinks."email"]\nhost = "127.0.0.1"\nfrom = "n@example.com"\n'
            'username = "n"\npassword = ""\n'
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        with pytest.raises(ConfigError, match=r'\[sinks."email"\] password: empty'):
            load_settings()


class TestConfigShow:
    def _shown(self, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
        """Rows of `config show --json`, checked against the table `config show` prints."""
        assert cli.main(["config", "show", "--json"]) == 0
        rows = {row["variable"]: row for row in json.loads(capsys.readouterr().out)}
        assert cli.main(["config", "show"]) == 0
        header, *table = capsys.readouterr().out.splitlines()
        value_at, source_at = header.index("VALUE"), header.index("SOURCE")
        for line in table:
            variable = line[:value_at].strip()
            assert rows[variable]["value"] == line[value_at:source_at].strip(), line
            assert rows[variable]["source"] == line[source_at:].strip(), line
        return rows

    def test_durations_read_as_written(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A duration shows as given, and a default as its default is written: 8760h, not 52w1d."""
        monkeypatch.setenv("NOTIFIER_RETENTION", "2160h")
        monkeypatch.setenv("NOTIFIER_BACKOFF_INTERVAL", " 1h30m ")
        monkeypatch.setenv("ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION", "1h0m0s")
        rows = self._shown(capsys)
        assert rows["NOTIFIER_RETENTION"]["value"] == "2160h"
        assert rows["NOTIFIER_BACKOFF_INTERVAL"]["value"] == "1h30m"
        assert rows["NOTIFIER_LOG_SLICE"]["value"] == "1h0m0s"  # Go's spelling, kept
        assert rows["NOTIFIER_TOKEN_DEFAULT_TTL"]["value"] == "8760h"
        assert rows["NOTIFIER_DETECTION_WINDOW"]["value"] == "168h"
        assert rows["NOTIFIER_CLAIM_LEASE"]["value"] == "10m"
        assert rows["NOTIFIER_TOKEN_MAX_LIFETIME"]["value"] == ""

    def test_sources_and_sinks_show_the_effective_lists(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        tmp_path: Path,
    ) -> None:
        """Unset, NOTIFIER_SOURCES and NOTIFIER_SINKS show the defaults plus the file's."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sources."file:partners"]\npath = "/srv/partners.json"\n'
            '[sinks."webhook:ops"]\nurl = "https://hooks.example.com/n"\n'
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        rows = self._shown(capsys)
        assert rows["NOTIFIER_SOURCES"]["value"] == "store,file:partners"
        assert rows["NOTIFIER_SINKS"]["value"] == "log,ui,webhook:ops"
        assert rows["NOTIFIER_SOURCES"]["source"] == "default + NOTIFIER_CONFIG_FILE"
        assert rows["NOTIFIER_SINKS"]["source"] == "default + NOTIFIER_CONFIG_FILE"

    def test_the_default_source_list(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With nothing set, NOTIFIER_SOURCES shows store, where it came from: the default."""
        rows = self._shown(capsys)
        assert rows["NOTIFIER_SOURCES"]["value"] == "store"
        assert rows["NOTIFIER_SOURCES"]["source"] == "default"
        monkeypatch.setenv("NOTIFIER_SINKS", "ui")
        rows = self._shown(capsys)
        assert rows["NOTIFIER_SINKS"]["value"] == "ui"
        assert rows["NOTIFIER_SINKS"]["source"] == "NOTIFIER_SINKS"
