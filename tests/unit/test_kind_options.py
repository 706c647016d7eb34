"""Each kind of sink and source declares its options beside the kind, and settings reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.config.settings import ConfigError, load_settings
from notifier.sinks.config import ROUTE_OPTIONS, every_secret_option, sink_options
from notifier.sinks.registry import SINK_KINDS
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
        """The store takes no options; sql's URL is a secret; file has none."""
        assert set(SOURCE_KINDS) == {"store", "sql", "file"}
        assert source_options("store").names == ()
        assert source_options("sql:billing").secrets == {"url"}
        assert source_options("file:partners").secrets == frozenset()


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
