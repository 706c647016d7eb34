"""Each kind of sink and source declares its options beside the kind, and settings reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.config.options import OptionError
from notifier.config.settings import ConfigError, load_settings
from notifier.sinks.config import ROUTE_OPTIONS, check_sink, every_secret_option, sink_options
from notifier.sinks.registry import SINK_KINDS
from notifier.sinks.retrying import DEFAULT_CONCURRENCY
from notifier.sources.config import SOURCE_KINDS, source_options


class TestKindOptions:
    @pytest.mark.parametrize("kind", list(SINK_KINDS))
    def test_every_sink_kind_takes_the_route(self, kind: str) -> None:
        """Each sink kind's own module lists the routing options among its options."""
        assert set(ROUTE_OPTIONS) <= set(sink_options(kind).names)

    @pytest.mark.parametrize(
        ("name", "secrets"),
        [
            ("webhook:ops", {"url", "secret"}),  # a URL may carry a token
            ("email", {"password"}),
            ("apprise", {"urls"}),
            ("log", set()),
        ],
    )
    def test_a_sink_kind_names_its_secrets(self, name: str, secrets: set[str]) -> None:
        """A sink kind's secret options are the ones its module declares."""
        assert sink_options(name).secrets == secrets

    def test_every_secret_option_is_the_union_of_the_kinds(self) -> None:
        """The options secret in some sink kind are gathered from every kind's module."""
        assert every_secret_option() == {"url", "secret", "password", "urls"}

    def test_source_kinds(self) -> None:
        """The store takes no options; sql's URL, vault's token, a PKCS#12 password are secrets."""
        assert set(SOURCE_KINDS) == {
            "store",
            "sql",
            "file",
            "vault",
            "x509",
            "stackrox",
            "github",
            "gitlab",
            "aws",
        }
        assert source_options("store").names == ()
        assert source_options("sql:billing").secrets == {"url"}
        assert source_options("file:partners").secrets == frozenset()
        assert source_options("vault:prod").secrets == {"token"}
        assert source_options("x509").secrets == {"pkcs12_password"}
        assert source_options("stackrox").secrets == {"token"}
        assert source_options("gitlab:corp").secrets == {"token"}
        assert source_options("aws").secrets == {"secret_access_key"}
        assert source_options("github:org").secrets == {"token", "private_key", "classic_tokens"}


class TestOptionsOfOtherKinds:
    @pytest.mark.parametrize(
        ("table", "line"),
        [
            # a secret of another kind is held to the rules of secrets first
            ('url = ""', 'NOTIFIER_CONFIG_FILE [sinks."log"] url: empty; leave it unset instead'),
            # any other option of another kind is simply unknown
            (
                'timeout = "5s"',
                'NOTIFIER_CONFIG_FILE [sinks."log"] timeout: not an option of a log sink',
            ),
        ],
    )
    def test_an_option_of_another_kind_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, line: str
    ) -> None:
        """An option a log sink does not take is refused, naming the file's key."""
        config = tmp_path / "notifier.toml"
        config.write_text(f'[sinks."log"]\n{table}\n', encoding="utf-8")
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert raised.value.lines == [line]


class TestConcurrencyOption:
    """Webhook and apprise take ``concurrency``: sends in flight at once, a whole number 1..256."""

    REFUSED = "expected a whole number from 1 to 256 (sends in flight at once)"
    KINDS = (
        ("webhook", {"url": "https://hooks.example.com/n"}),
        ("apprise", {"urls": "json://127.0.0.1:1/notify"}),
    )

    @pytest.mark.parametrize(("kind", "required"), KINDS)
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, DEFAULT_CONCURRENCY),  # unset
            ("1", 1),  # from the environment: text
            (" 32 ", 32),
            (256, 256),  # from TOML: an integer
        ],
    )
    def test_good_values(
        self, kind: str, required: dict[str, str], value: object, expected: int
    ) -> None:
        """A whole number in range is taken as it is; unset is the default."""
        options = {**required, **({} if value is None else {"concurrency": value})}
        assert check_sink(kind, options).options["concurrency"] == expected

    @pytest.mark.parametrize(("kind", "required"), KINDS)
    @pytest.mark.parametrize(
        "value",
        [
            "0",  # nothing would ever be sent
            0,
            -1,
            "257",  # past the limit
            1000,
            "",
            "abc",
            "1.5",
            "16.0",
            16.0,  # a TOML float, even a whole one
            True,  # a TOML boolean is not a number
            "١٦",  # Arabic-Indic digits: isdigit() says yes, the option says no
            [16],
        ],
    )
    def test_bad_values(self, kind: str, required: dict[str, str], value: object) -> None:
        """Anything but a whole number from 1 to 256 is refused, naming the option."""
        with pytest.raises(OptionError) as raised:
            check_sink(kind, {**required, "concurrency": value})
        assert raised.value.option == "concurrency"
        assert raised.value.message == self.REFUSED

    def test_a_bad_variable_stops_start_up_naming_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """NOTIFIER_WEBHOOK_OPS_CONCURRENCY=0 is a configuration error naming the variable."""
        monkeypatch.setenv("NOTIFIER_SINKS", "log,webhook:ops")
        monkeypatch.setenv("NOTIFIER_WEBHOOK_OPS_URL", "https://hooks.example.com/n")
        monkeypatch.setenv("NOTIFIER_WEBHOOK_OPS_CONCURRENCY", "0")
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert raised.value.lines == [f"NOTIFIER_WEBHOOK_OPS_CONCURRENCY='0': {self.REFUSED}"]

    def test_a_bad_file_key_stops_start_up_naming_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``concurrency = 300`` in a sink's table is a configuration error naming the key."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sinks."apprise:chat"]\nurls = "json://127.0.0.1:1/n"\nconcurrency = 300\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert raised.value.lines == [
            f'NOTIFIER_CONFIG_FILE [sinks."apprise:chat"] concurrency: {self.REFUSED}'
        ]
