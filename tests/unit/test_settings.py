import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from notifier import cli
from notifier.settings import ConfigError, HttpAddress, example_env, load_settings, show
from notifier.sources.config import SqlSourceConfig

REPO = Path(__file__).resolve().parents[2]


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
        assert rows["NOTIFIER_DETECTION_WINDOW"]["value"] == "3d"
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
        path.write_text("s3cret-pepper\n")
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER_FILE", str(path))
        pepper = load_settings().token_pepper
        assert pepper is not None
        assert pepper.get_secret_value() == "s3cret-pepper"

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
        (tmp_path / "token_pepper").write_text("from-credentials")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER", "from-env")
        pepper = load_settings().token_pepper
        assert pepper is not None
        assert pepper.get_secret_value() == "from-env"

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
        monkeypatch.setenv("NOTIFIER_TOKEN_PEPPER", "pepper-value")
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", "postgresql://u:url-password@db/n")
        assert cli.main(["config"]) == 0
        out = capsys.readouterr().out
        assert "pepper-value" not in out
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
