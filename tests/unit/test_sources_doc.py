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


def test_the_stackrox_examples(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The stackrox section's variables and table load, its files put where they point."""
    import trustme  # noqa: PLC0415 - appended to this module: its imports stay as they were

    from notifier.sources.stackrox import StackRoxSourceConfig  # noqa: PLC0415 - the same

    text = section("stackrox")
    (shell,) = blocks(text, "sh")
    (toml,) = blocks(text, "toml")
    token = tmp_path / "central-token"
    token.write_text("central-api-token-for-the-docs-test\n")
    ca = tmp_path / "central-ca.pem"
    ca.write_bytes(trustme.CA().cert_pem.bytes())
    for line in shell.splitlines():
        name, _, value = line.partition("=")
        monkeypatch.setenv(name, str(token) if name.endswith("_TOKEN_FILE") else value)
    path = tmp_path / "notifier.toml"
    path.write_text(toml.replace("/etc/notifier/central-ca.pem", str(ca)), encoding="utf-8")
    monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
    monkeypatch.setenv("NOTIFIER_SOURCES", "store,stackrox,stackrox:prod")
    monkeypatch.setenv("NOTIFIER_STACKROX_PROD_TOKEN", "another-central-api-token")
    _, stackrox, prod = load_settings().source_configs
    assert isinstance(stackrox, StackRoxSourceConfig)
    assert isinstance(prod, StackRoxSourceConfig)
    assert (stackrox.url, stackrox.token) == (
        "https://central.example.com",
        "central-api-token-for-the-docs-test",
    )
    assert (prod.name, prod.url, prod.ca_file) == (
        "stackrox:prod",
        "https://central.prod.example.com",
        ca,
    )


GITHUB_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"


def test_the_github_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The github section's variables load, their secret files put in place here."""
    from notifier.sources.github import GitHubSourceConfig  # noqa: PLC0415 - this test's kind

    secrets = {
        "NOTIFIER_GITHUB_PRIVATE_KEY_FILE": GITHUB_KEY,
        "NOTIFIER_GITHUB_CLASSIC_TOKENS_FILE": "ci=ghp_DocsExampleClassicToken\ndeploy=ghp_Other\n",
    }
    (shell,) = blocks(section("github"), "sh")
    for line in shell.splitlines():
        name, _, value = line.partition("=")
        if name in secrets:  # the example's /run/secrets paths, here in tmp_path
            value = str(tmp_path / name)
            Path(value).write_text(secrets[name], encoding="utf-8")
        monkeypatch.setenv(name, value)
    _, github = load_settings().source_configs
    assert isinstance(github, GitHubSourceConfig)
    assert (github.org, github.url) == ("acme", "https://api.github.com")
    assert github.app is not None
    assert (github.app.app_id, github.app.installation_id) == ("123456", 7890123)
    assert [token.name for token in github.classic_tokens] == ["ci", "deploy"]


def test_the_github_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The github section's TOML example loads as written, with its private key's variable."""
    from notifier.sources.github import GitHubSourceConfig  # noqa: PLC0415 - this test's kind

    (toml,) = blocks(section("github"), "toml")
    path = tmp_path / "notifier.toml"
    path.write_text(toml, encoding="utf-8")
    monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
    monkeypatch.setenv("NOTIFIER_GITHUB_GHES_PRIVATE_KEY", GITHUB_KEY)
    _, ghes = load_settings().source_configs
    assert isinstance(ghes, GitHubSourceConfig)
    assert (ghes.name, ghes.url, ghes.org) == (
        "github:ghes",
        "https://github.example.com/api/v3",
        "acme",
    )
    assert ghes.app is not None
    assert (ghes.app.app_id, ghes.app.installation_id) == ("123456", 7890123)


def test_the_gitlab_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The shell example of the gitlab section loads, each path sent URL-encoded."""
    from notifier.sources.gitlab import GitLabSourceConfig  # noqa: PLC0415 - this test's kind

    (shell,) = blocks(section("gitlab"), "sh")
    token = tmp_path / "token"
    token.write_text("glpat-example\n")
    for line in shell.splitlines():
        name, _, value = line.partition("=")
        monkeypatch.setenv(name, str(token) if name.endswith("_TOKEN_FILE") else value)
    _, gitlab = load_settings().source_configs
    assert isinstance(gitlab, GitLabSourceConfig)
    assert gitlab.url == "https://gitlab.example.com"
    assert gitlab.projects == ("platform%2Fapi", "1234")
    assert gitlab.groups == ("platform",)
    assert gitlab.personal is True


def test_the_gitlab_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The TOML example of the gitlab section loads as written, its CA file aside."""
    from notifier.sources.gitlab import GitLabSourceConfig  # noqa: PLC0415 - this test's kind

    (toml,) = blocks(section("gitlab"), "toml")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    path = tmp_path / "notifier.toml"
    path.write_text(toml.replace("/etc/ssl/internal-ca.pem", str(ca)), encoding="utf-8")
    monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(path))
    monkeypatch.setenv("NOTIFIER_GITLAB_OPS_TOKEN", "glpat-example")
    _, ops = load_settings().source_configs
    assert isinstance(ops, GitLabSourceConfig)
    assert ops.name == "gitlab:ops"
    assert (ops.projects, ops.groups, ops.personal) == (
        ("platform%2Fapi", "1234"),
        ("platform",),
        False,
    )
    assert ops.ca_file == ca


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
