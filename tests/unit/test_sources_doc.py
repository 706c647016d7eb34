"""docs/sources.md: its x509 examples are configurations the settings accept as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifier.config.settings import load_settings
from notifier.sources.endpoints import Endpoint
from notifier.sources.x509 import X509SourceConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "sources.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the section ``## <title>``."""
    return DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_the_x509_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell example of the x509 section loads, with each endpoint's qualifiers."""
    (shell,) = blocks(section("x509"), "sh")
    for line in shell.splitlines():
        name, _, value = line.partition("=")
        monkeypatch.setenv(name, value)
    _, x509 = load_settings().source_configs
    assert isinstance(x509, X509SourceConfig)
    assert x509.endpoints[1] == Endpoint("10.0.0.5", 443, sni="api.example.org")
    assert x509.endpoints[2] == Endpoint("mail.example.org", 587, starttls="smtp")


def test_the_x509_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The TOML example of the x509 section loads as written."""
    (toml,) = blocks(section("x509"), "toml")
    path = tmp_path / "notifier.toml"
    path.write_text(toml, encoding="utf-8")
    monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
    _, edge = load_settings().source_configs
    assert isinstance(edge, X509SourceConfig)
    assert edge.name == "x509:edge"
    assert len(edge.endpoints) == 3


def test_the_aws_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The shell example of the aws section loads; its secret key file is made here."""
    from notifier.sources.aws import AwsSourceConfig  # noqa: PLC0415 - this test's kind only

    (shell,) = blocks(section("aws"), "sh")
    for line in shell.splitlines():
        name, _, value = line.partition("=")
        if name.endswith("_FILE"):  # the example's path is the operator's; ours holds a key
            value = str(tmp_path / "secret")
            Path(value).write_text("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
        monkeypatch.setenv(name, value)
    _, aws = load_settings().source_configs
    assert isinstance(aws, AwsSourceConfig)
    assert (aws.owner_tag, aws.access_key_id) == ("email", "AKIAIOSFODNN7EXAMPLE")
    assert aws.secret_access_key == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_the_aws_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The TOML example of the aws section loads as written."""
    from notifier.sources.aws import AwsSourceConfig  # noqa: PLC0415 - this test's kind only

    (toml,) = blocks(section("aws"), "toml")
    path = tmp_path / "notifier.toml"
    path.write_text(toml, encoding="utf-8")
    monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
    _, prod = load_settings().source_configs
    assert isinstance(prod, AwsSourceConfig)
    assert (prod.name, prod.profile, prod.users) == (
        "aws:prod",
        "notifier-prod",
        ("ci-deploy", "backup"),
    )
    assert prod.last_used is True


def test_the_aws_policy() -> None:
    """The aws section's policy is JSON granting exactly the four read calls the source makes."""
    import json  # noqa: PLC0415 - this test's only

    (policy,) = blocks(section("aws"), "json")
    (statement,) = json.loads(policy)["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == [
        "iam:GetAccessKeyLastUsed",
        "iam:ListAccessKeys",
        "iam:ListUserTags",
        "iam:ListUsers",
    ]
