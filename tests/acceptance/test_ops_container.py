"""deploy/docker and deploy/compose.yaml: what can be checked without a Docker engine."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.config.settings import load_settings
from tests.deploy import DEPLOY, REPO, credential_name, example_variables, tool

from .conftest import RunningDaemon

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
SECRETISH = re.compile(r"PASSWORD|PEPPER|SECRET|HEARTBEAT_URL|TOKEN=", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in final_stage():
        if keyword == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    return env


def healthcheck_command() -> list[str]:
    (rest,) = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    command: list[str] = json.loads(rest[rest.index("CMD") + 3 :])
    return command


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


class TestDockerfile:
    def test_hadolint_is_silent(self) -> None:
        """The hadolint linter finds nothing to say about the Dockerfile."""
        result = subprocess.run(
            [tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    def test_multi_stage_on_a_slim_base(self) -> None:
        """A build stage and a runtime stage, both from a slim Python image."""
        steps = instructions()
        froms = [rest for keyword, rest in steps if keyword == "FROM"]
        assert len(froms) == 2
        assert "AS build" in froms[0]
        (base,) = [rest for keyword, rest in steps if keyword == "ARG" and "PYTHON_IMAGE" in rest]
        assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+-slim(-\w+)?", base)
        assert any("--from=build" in rest for keyword, rest in final_stage() if keyword == "COPY")

    def test_runs_as_a_numeric_non_root_user(self) -> None:
        """USER is a numeric uid other than 0, so runAsNonRoot can verify it."""
        (user,) = [rest for keyword, rest in final_stage() if keyword == "USER"]
        uid = user.split(":")[0]
        assert uid.isdigit()
        assert int(uid) != 0

    def test_json_logs_and_every_interface(self) -> None:
        """The image logs JSON and binds the HTTP listener on 0.0.0.0."""
        env = image_env()
        assert env["NOTIFIER_LOG_FORMAT"] == "json"
        assert env["NOTIFIER_HTTP_ADDRESS"] == "0.0.0.0:8080"

    def test_no_secret_is_baked_in(self) -> None:
        """No ENV or ARG names a secret; secrets come from files at run time."""
        for keyword, rest in instructions():
            if keyword in {"ENV", "ARG"}:
                assert not SECRETISH.search(rest), rest
        for variable, secret in example_variables().items():
            if secret:
                assert variable not in DOCKERFILE.read_text(encoding="utf-8")

    def test_signals_reach_notifier(self) -> None:
        """ENTRYPOINT and CMD in exec form: notifier is PID 1 and gets SIGTERM itself."""
        steps = dict(final_stage())
        assert json.loads(steps["ENTRYPOINT"]) == ["notifier"]
        assert json.loads(steps["CMD"]) == ["run"]

    def test_healthcheck_needs_no_curl(self) -> None:
        """HEALTHCHECK runs Python (the slim image has no curl), in exec form."""
        command = healthcheck_command()
        assert command[0] == "python"
        assert "curl" not in " ".join(command)

    def test_healthcheck_against_a_running_daemon(
        self, env: dict[str, str], daemon: type[RunningDaemon]
    ) -> None:
        """The HEALTHCHECK command passes while notifier runs, and fails once it stopped."""
        running = daemon({**env, "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0"})
        port = running.port
        running.wait_for(r"check\.completed")
        command = [sys.executable, *healthcheck_command()[1:]]
        probe_env = {**env, "NOTIFIER_HTTP_ADDRESS": f"127.0.0.1:{port}"}
        healthy = subprocess.run(command, env=probe_env, capture_output=True, check=False)
        assert healthy.returncode == 0, healthy.stderr
        assert running.stop(signal.SIGTERM) == 0
        down = subprocess.run(command, env=probe_env, capture_output=True, check=False)
        assert down.returncode != 0

    def test_the_image_settings_are_valid(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The image's environment passes notifier's own configuration check."""
        for name, value in image_env().items():
            if name.startswith("NOTIFIER_") or name == "XDG_STATE_HOME":
                monkeypatch.setenv(name, value)
        settings = load_settings()
        assert settings.default_database_path() == Path("/var/lib/notifier/notifier.db")

    def test_the_build_context_builds_a_complete_wheel(self, tmp_path: Path) -> None:
        """What .dockerignore lets in (pyproject, README, notifier/) builds a complete wheel."""
        pytest.importorskip("setuptools", minversion="77", reason="the dev extras install it")
        ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
        assert next(line for line in ignore if not line.startswith("#")) == "*"
        copied = [
            rest.split()[:-1]
            for keyword, rest in instructions()
            if keyword == "COPY" and "--from=" not in rest  # the other stage's files
        ]
        sources = [source for parts in copied for source in parts]
        assert set(sources) <= set(allowed)
        context = tmp_path / "context"
        for name in allowed:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(
                    source, context / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                context.mkdir(exist_ok=True)
                shutil.copy2(source, context / name)
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
                *("--wheel-dir", str(tmp_path / "dist"), str(context)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        (wheel,) = (tmp_path / "dist").glob("credential_expiry_notifier-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        assert "notifier/db/migrations/versions/0001_initial.py" in names
        assert "notifier/py.typed" in names


class TestCompose:
    def test_matches_the_compose_specification(self) -> None:
        """deploy/compose.yaml validates against the compose-spec schema check-jsonschema ships."""
        result = subprocess.run(
            [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_postgresql_and_two_replicas(self) -> None:
        """Two notifier replicas start once PostgreSQL is healthy, and build this Dockerfile."""
        services = compose()["services"]
        notifier = services["notifier"]
        assert notifier["deploy"]["replicas"] == 2
        assert notifier["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services["postgres"]["image"].startswith("postgres:")
        assert "healthcheck" in services["postgres"]
        build = notifier["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert notifier["environment"]["NOTIFIER_DATABASE_URL"].startswith("postgresql://")

    def test_secrets_are_files_not_environment(self) -> None:
        """The password reaches both services as a file; no environment value holds a secret."""
        document = compose()
        secret_variables = {v for v, secret in example_variables().items() if secret}
        for service in document["services"].values():
            for name in service.get("environment", {}):
                assert name not in secret_variables
                assert "PASSWORD" not in name or name.endswith("_FILE"), name
        notifier = document["services"]["notifier"]
        assert notifier["environment"]["CREDENTIALS_DIRECTORY"] == "/run/secrets"
        credentials = {credential_name(v) for v, secret in example_variables().items() if secret}
        assert set(notifier["secrets"]) <= credentials
        assert "database_password" in notifier["secrets"]

    def test_the_notifier_settings_are_valid(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The compose environment, with its secret files, passes the configuration check."""
        for name in compose()["secrets"]:
            (tmp_path / name).write_text("a-secret\n", encoding="utf-8")
        for name, value in compose()["services"]["notifier"]["environment"].items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        settings = load_settings()
        assert settings.effective_database_url().password == "a-secret"

    def test_stop_grace_outlasts_the_shutdown_timeout(self) -> None:
        """Docker waits longer than notifier lets a running pass finish (30 s)."""
        grace = compose()["services"]["notifier"]["stop_grace_period"]
        assert int(grace.removesuffix("s")) > load_settings().shutdown_timeout.total_seconds()
