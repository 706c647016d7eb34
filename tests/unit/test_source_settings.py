"""The vault and x509 sources' settings: variables, the TOML file, secrets, refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from notifier import cli
from notifier.config.parsing import ConfigError
from notifier.config.settings import load_settings
from notifier.sources.endpoints import Endpoint
from notifier.sources.vault import VaultSourceConfig
from notifier.sources.x509 import X509SourceConfig

VAULT_TOKEN = "s.VaultTokenForTheSettingsTest"


class TestVault:
    def test_from_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """NOTIFIER_SOURCES=store,vault reads NOTIFIER_VAULT_<OPTION>."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "store,vault")
        monkeypatch.setenv("NOTIFIER_VAULT_ADDRESS", "https://vault.example:8200")
        monkeypatch.setenv("NOTIFIER_VAULT_TOKEN", VAULT_TOKEN)
        monkeypatch.setenv("NOTIFIER_VAULT_NAMESPACE", "team-a")
        monkeypatch.setenv("NOTIFIER_VAULT_LEASE_PREFIXES", "database/creds")
        _, vault = load_settings().source_configs
        assert isinstance(vault, VaultSourceConfig)
        assert (vault.address, vault.token, vault.namespace) == (
            "https://vault.example:8200",
            VAULT_TOKEN,
            "team-a",
        )
        assert vault.lease_prefixes == ("database/creds/",)

    def test_a_labelled_token_from_a_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """vault:prod's token may come from NOTIFIER_VAULT_PROD_TOKEN_FILE."""
        secret = tmp_path / "token"
        secret.write_text(VAULT_TOKEN + "\n")
        monkeypatch.setenv("NOTIFIER_SOURCES", "vault:prod")
        monkeypatch.setenv("NOTIFIER_VAULT_PROD_ADDRESS", "http://127.0.0.1:8200")
        monkeypatch.setenv("NOTIFIER_VAULT_PROD_TOKEN_FILE", str(secret))
        (vault,) = load_settings().source_configs
        assert isinstance(vault, VaultSourceConfig)
        assert vault.name == "vault:prod"
        assert vault.token == VAULT_TOKEN

    def test_a_token_from_the_credentials_directory(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """With systemd's LoadCredential=, the token is $CREDENTIALS_DIRECTORY/vault_token."""
        (tmp_path / "vault_token").write_text(VAULT_TOKEN)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        monkeypatch.setenv("NOTIFIER_SOURCES", "vault")
        monkeypatch.setenv("NOTIFIER_VAULT_ADDRESS", "http://127.0.0.1:8200")
        (vault,) = load_settings().source_configs
        assert isinstance(vault, VaultSourceConfig)
        assert vault.token == VAULT_TOKEN

    def test_config_show_hides_the_token(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` never prints the vault token."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "vault")
        monkeypatch.setenv("NOTIFIER_VAULT_ADDRESS", "http://127.0.0.1:8200")
        monkeypatch.setenv("NOTIFIER_VAULT_TOKEN", VAULT_TOKEN)
        assert cli.main(["config", "show"]) == 0
        captured = capsys.readouterr()
        assert VAULT_TOKEN not in captured.out + captured.err

    def test_a_missing_token_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a token the start-up fails naming NOTIFIER_VAULT_TOKEN (exit 78)."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "vault")
        monkeypatch.setenv("NOTIFIER_VAULT_ADDRESS", "http://127.0.0.1:8200")
        with pytest.raises(ConfigError, match="NOTIFIER_VAULT_TOKEN: is required"):
            load_settings()


class TestX509:
    def test_from_variables(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """NOTIFIER_X509_PATHS and NOTIFIER_X509_ENDPOINTS; the kind's name has a digit."""
        password = tmp_path / "p12"
        password.write_text("hunter2\n")
        monkeypatch.setenv("NOTIFIER_SOURCES", "store,x509")
        monkeypatch.setenv("NOTIFIER_X509_PATHS", "/etc/ssl/site.pem,/etc/ssl/certs/*.crt")
        monkeypatch.setenv(
            "NOTIFIER_X509_ENDPOINTS", "www.example.org:443,mail.example.org:587;starttls=smtp"
        )
        monkeypatch.setenv("NOTIFIER_X509_PKCS12_PASSWORD_FILE", str(password))
        monkeypatch.setenv("NOTIFIER_X509_REMEMBER", "6h")
        _, x509 = load_settings().source_configs
        assert isinstance(x509, X509SourceConfig)
        assert x509.paths == ("/etc/ssl/site.pem", "/etc/ssl/certs/*.crt")
        assert x509.endpoints == (
            Endpoint("www.example.org", 443),
            Endpoint("mail.example.org", 587, starttls="smtp"),
        )
        assert x509.pkcs12_password == b"hunter2"
        assert x509.remember == timedelta(hours=6)

    def test_from_the_config_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A [sources."x509:edge"] table, endpoints as tables with an SNI name."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sources."x509:edge"]\n'
            'endpoints = [{ address = "10.0.0.5:443", sni = "www.example.org" }]\n'
            'timeout = "3s"\n'
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        store, edge = load_settings().source_configs
        assert store.name == "store"
        assert isinstance(edge, X509SourceConfig)
        assert edge.name == "x509:edge"
        assert edge.endpoints == (Endpoint("10.0.0.5", 443, sni="www.example.org"),)
        assert edge.timeout == timedelta(seconds=3)

    @pytest.mark.parametrize(
        ("variables", "line"),
        [
            ({}, "NOTIFIER_X509_PATHS: set paths or endpoints (or both): what to watch"),
            (
                {"NOTIFIER_X509_ENDPOINTS": "example.org"},
                "NOTIFIER_X509_ENDPOINTS='example.org': 'example.org' is not host:port",
            ),
            (
                {"NOTIFIER_X509_PATHS": "/x", "NOTIFIER_X509_TIMEOUT": "soon"},
                "NOTIFIER_X509_TIMEOUT='soon': ",
            ),
        ],
    )
    def test_bad_values_name_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], line: str
    ) -> None:
        """Each refusal names the variable it came from."""
        monkeypatch.setenv("NOTIFIER_SOURCES", "x509")
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert any(problem.startswith(line) for problem in raised.value.lines), raised.value.lines
