"""The aws source's settings: variables, the TOML file, the secret key, refusals, no boto3."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from notifier import cli
from notifier.config.parsing import ConfigError
from notifier.config.settings import load_settings
from notifier.sources.aws import AwsSourceConfig

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def only_aws(monkeypatch: pytest.MonkeyPatch, name: str = "aws") -> None:
    monkeypatch.setenv("NOTIFIER_SOURCES", name)


class TestAws:
    def test_from_variables(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """NOTIFIER_AWS_<OPTION>, the secret key from a _FILE, users as a comma list."""
        secret = tmp_path / "secret"
        secret.write_text(SECRET + "\n")
        monkeypatch.setenv("NOTIFIER_SOURCES", "store,aws")
        monkeypatch.setenv("NOTIFIER_AWS_MAX_AGE", "60d")
        monkeypatch.setenv("NOTIFIER_AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        monkeypatch.setenv("NOTIFIER_AWS_SECRET_ACCESS_KEY_FILE", str(secret))
        monkeypatch.setenv("NOTIFIER_AWS_USERS", "ci-deploy, backup,ci-deploy")
        monkeypatch.setenv("NOTIFIER_AWS_OWNER_TAG", "email")
        monkeypatch.setenv("NOTIFIER_AWS_LAST_USED", "true")
        monkeypatch.setenv("NOTIFIER_AWS_ENDPOINT_URL", "http://127.0.0.1:5000/")
        monkeypatch.setenv("NOTIFIER_AWS_TIMEOUT", "3s")
        _, aws = load_settings().source_configs
        assert isinstance(aws, AwsSourceConfig)
        assert aws.max_age == timedelta(days=60)
        assert (aws.access_key_id, aws.secret_access_key) == ("AKIAIOSFODNN7EXAMPLE", SECRET)
        assert aws.users == ("ci-deploy", "backup")
        assert (aws.owner_tag, aws.last_used) == ("email", True)
        assert aws.endpoint_url == "http://127.0.0.1:5000"
        assert aws.timeout == timedelta(seconds=3)
        assert SECRET not in repr(aws)

    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Alone, an aws source watches every user at 90 days, boto3's credential chain."""
        only_aws(monkeypatch)
        (aws,) = load_settings().source_configs
        assert isinstance(aws, AwsSourceConfig)
        assert aws.max_age == timedelta(days=90)  # AWS Config's access-keys-rotated default
        assert aws.timeout == timedelta(seconds=10)
        assert (aws.access_key_id, aws.secret_access_key, aws.profile) == (None, None, None)
        assert (aws.users, aws.owner_tag, aws.last_used) == ((), None, False)

    def test_from_the_config_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A [sources."aws:prod"] table with a profile, a region, a TOML list and a boolean."""
        config = tmp_path / "notifier.toml"
        config.write_text(
            '[sources."aws:prod"]\n'
            'profile = "notifier-prod"\n'
            'region = "eu-central-1"\n'
            'users = ["alice", "bob"]\n'
            "last_used = false\n"
        )
        monkeypatch.setenv("NOTIFIER_CONFIG_FILE", str(config))
        _, prod = load_settings().source_configs
        assert isinstance(prod, AwsSourceConfig)
        assert (prod.name, prod.profile, prod.region) == (
            "aws:prod",
            "notifier-prod",
            "eu-central-1",
        )
        assert (prod.users, prod.last_used) == (("alice", "bob"), False)

    def test_the_secret_from_the_credentials_directory(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """With LoadCredential=, aws:prod's secret key is read from $CREDENTIALS_DIRECTORY."""
        (tmp_path / "aws_prod_secret_access_key").write_text(SECRET)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        only_aws(monkeypatch, "aws:prod")
        monkeypatch.setenv("NOTIFIER_AWS_PROD_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        (aws,) = load_settings().source_configs
        assert isinstance(aws, AwsSourceConfig)
        assert aws.secret_access_key == SECRET

    def test_config_show_hides_the_secret_key(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` never prints the secret access key."""
        only_aws(monkeypatch)
        monkeypatch.setenv("NOTIFIER_AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        monkeypatch.setenv("NOTIFIER_AWS_SECRET_ACCESS_KEY", SECRET)
        assert cli.main(["config", "show"]) == 0
        captured = capsys.readouterr()
        assert SECRET not in captured.out + captured.err
        assert "AKIAIOSFODNN7EXAMPLE" in captured.out  # the key id is no secret

    @pytest.mark.parametrize(
        ("variables", "line"),
        [
            (
                {"NOTIFIER_AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"},
                (
                    "NOTIFIER_AWS_SECRET_ACCESS_KEY: give access_key_id and secret_access_key "
                    "together, or neither"
                ),
            ),
            (
                {"NOTIFIER_AWS_SECRET_ACCESS_KEY": SECRET},
                "NOTIFIER_AWS_ACCESS_KEY_ID: give access_key_id and secret_access_key together",
            ),
            (
                {
                    "NOTIFIER_AWS_PROFILE": "ops",
                    "NOTIFIER_AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
                    "NOTIFIER_AWS_SECRET_ACCESS_KEY": SECRET,
                },
                "NOTIFIER_AWS_PROFILE='ops': give a profile or access_key_id, not both",
            ),
            (
                {"NOTIFIER_AWS_REGION": "Frankfurt"},
                "NOTIFIER_AWS_REGION='Frankfurt': 'Frankfurt' is not a region such as us-east-1",
            ),
            (
                {"NOTIFIER_AWS_USERS": "alice,bob smith"},
                "NOTIFIER_AWS_USERS='alice,bob smith': 'bob smith' is not an IAM user name",
            ),
            ({"NOTIFIER_AWS_MAX_AGE": "soon"}, "NOTIFIER_AWS_MAX_AGE='soon': "),
            ({"NOTIFIER_AWS_MAX_AGE": "0"}, "NOTIFIER_AWS_MAX_AGE='0': must be greater than zero"),
            (
                {"NOTIFIER_AWS_LAST_USED": "maybe"},
                "NOTIFIER_AWS_LAST_USED='maybe': expected true or false",
            ),
            (
                {"NOTIFIER_AWS_ENDPOINT_URL": "iam.internal"},
                "NOTIFIER_AWS_ENDPOINT_URL='iam.internal': 'iam.internal' is not an http(s) URL",
            ),
        ],
    )
    def test_bad_values_name_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], line: str
    ) -> None:
        """Each refusal names the variable it came from."""
        only_aws(monkeypatch)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert any(problem.startswith(line) for problem in raised.value.lines), raised.value.lines

    def test_without_boto3_the_start_up_stops(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without boto3 installed, an aws source is a configuration error (exit 78) saying how."""
        monkeypatch.setitem(sys.modules, "boto3", None)  # Python's way to make an import fail
        only_aws(monkeypatch)
        assert cli.main(["config", "show"]) == 78
        assert capsys.readouterr().err == (
            "notifier: configuration error: source 'aws': needs boto3, which is not installed: "
            "pip install 'credential-expiry-notifier[aws]', or leave aws out of "
            "NOTIFIER_SOURCES (and the config file)\n"
        )

    def test_settings_do_not_import_boto3(self) -> None:
        """Loading the settings of an aws source leaves boto3 unimported (start-up time, #13)."""
        import subprocess  # noqa: PLC0415 - only this test runs a child Python

        code = (
            "import os, sys\n"
            "os.environ['NOTIFIER_SOURCES'] = 'aws'\n"
            "from notifier.config.settings import load_settings\n"
            "load_settings()\n"
            "print('boto3' in sys.modules, 'botocore' in sys.modules)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "False False"
