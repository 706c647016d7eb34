"""The API's settings: each bad value names its variable; the bootstrap key is never shown."""

from __future__ import annotations

import pytest

from notifier.config.render import show
from notifier.config.settings import ConfigError, load_settings

KEY = "bootstrap-0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("NOTIFIER_API_ALLOWED_IPS", "10.0.0.0/33", "is not a CIDR"),
        ("NOTIFIER_API_ALLOWED_IPS", "10.0.0.1/8", "has host bits set"),  # a typo, not 10/8
        ("NOTIFIER_API_ALLOWED_IPS", "", "leave it unset"),
        ("NOTIFIER_TRUSTED_PROXIES", "proxy.internal", "is not a CIDR"),
        ("NOTIFIER_API_RATE_LIMIT", "-1", "between 0"),
        ("NOTIFIER_API_RATE_LIMIT", "lots", "integer"),
        ("NOTIFIER_API_LAST_USED_INTERVAL", "100ms", "at least 1s"),
        ("NOTIFIER_API_AUTH_FAILURE_LIMIT", "-1", "between 0"),
        ("NOTIFIER_API_MAX_STREAMS_PER_TOKEN", "0", "between 1"),
        ("NOTIFIER_HTTP_HEADER_TIMEOUT", "500ms", "at least 1s"),
        ("NOTIFIER_HTTP_MAX_CONNECTIONS", "0", "between 1"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    """A bad API setting stops start-up with one line naming the variable and the value."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    (line,) = raised.value.lines
    assert line.startswith(f"{variable}={value!r}: ")
    assert words in line


def test_a_short_bootstrap_key_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bootstrap key under 32 characters is refused, and the error does not repeat it."""
    monkeypatch.setenv("NOTIFIER_BOOTSTRAP_TOKEN", "hunter2hunter2")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "NOTIFIER_BOOTSTRAP_TOKEN" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_the_bootstrap_key_is_a_redacted_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config show redacts the bootstrap key, which may also come from a credential file."""
    monkeypatch.setenv("NOTIFIER_BOOTSTRAP_TOKEN", KEY)
    (shown,) = [s for s in show(load_settings()) if s.variable == "NOTIFIER_BOOTSTRAP_TOKEN"]
    assert shown.secret
    assert shown.value == "********"


def test_defaults_allow_every_address_and_trust_no_proxy() -> None:
    """By default the API answers every address and believes no X-Forwarded-For."""
    settings = load_settings()
    assert [str(net) for net in settings.api_allowed_ips] == ["0.0.0.0/0", "::/0"]
    assert settings.trusted_proxies == ()
    assert settings.api_rate_limit == 1000
    assert settings.bootstrap_token is None


def test_the_limits_reach_the_api_and_the_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """The throttle, stream and listener settings are the ones the web tier is built with."""
    from notifier.runtime.compose import build, web_api  # noqa: PLC0415
    from notifier.web.app import Probe, create_app  # noqa: PLC0415
    from notifier.web.server import WebServer  # noqa: PLC0415

    for name, value in {
        "NOTIFIER_DATABASE_URL": "sqlite+pysqlite:///:memory:",
        "NOTIFIER_API_AUTH_FAILURE_LIMIT": "7",
        "NOTIFIER_API_MAX_STREAMS_PER_TOKEN": "3",
        "NOTIFIER_HTTP_HEADER_TIMEOUT": "4s",
        "NOTIFIER_HTTP_MAX_CONNECTIONS": "50",
    }.items():
        monkeypatch.setenv(name, value)
    parts = build(load_settings())
    try:
        api = web_api(parts)
        assert api.authenticator.throttle.limit == 7
        assert api.streams.limit == 3
        app = create_app(liveness=lambda: Probe(ok=True), readiness=lambda: Probe(ok=True), api=api)
        config = WebServer(app, api).config
        assert config.timeout_keep_alive == 4
        assert config.limit_concurrency == 51  # uvicorn counts the asking connection too
    finally:
        parts.close()
