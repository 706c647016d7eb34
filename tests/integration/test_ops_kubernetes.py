"""deploy/kubernetes: valid against the Kubernetes API schemas, in step with the settings."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.config.settings import ConfigError, load_settings
from tests.deploy import DEPLOY, REPO, credential_name, example_variables, tool

K8S = DEPLOY / "kubernetes"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
SERVICE_MONITOR = K8S / "optional" / "servicemonitor.yaml"
SCHEMAS = Path(__file__).parent / "schemas"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
    return document


def container() -> dict[str, Any]:
    (only,) = load("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    spec: dict[str, Any] = only
    return spec


class TestValidation:
    @pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
    def test_valid_against_the_api(self, manifest: Path) -> None:
        """kubernetes-validate --strict accepts the manifest (no unknown field either)."""
        result = subprocess.run(
            [tool("kubernetes-validate"), "--strict", "--quiet", str(manifest)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "WARN" not in result.stdout + result.stderr  # e.g. a kind it has no schema for

    def test_service_monitor(self) -> None:
        """The optional ServiceMonitor fits the Prometheus Operator's v1 schema (the part used)."""
        result = subprocess.run(
            [
                tool("check-jsonschema"),
                *("--schemafile", str(SCHEMAS / "servicemonitor-v1-subset.json")),
                str(SERVICE_MONITOR),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_kustomization_lists_the_manifests_but_not_the_secret_template(self) -> None:
        """`kubectl apply -k` ships every manifest, and never the placeholder Secret."""
        resources = set(load("kustomization.yaml")["resources"])
        assert resources == {path.name for path in MANIFESTS} - {"secret.template.yaml"}


class TestDeployment:
    def test_two_replicas_probes_and_resources(self) -> None:
        """2 replicas, liveness on /healthz, readiness on /readyz, resource requests."""
        deployment = load("deployment.yaml")
        assert deployment["spec"]["replicas"] == 2
        spec = container()
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(spec["resources"]["requests"])

    def test_non_root_read_only(self) -> None:
        """Non-root (the image's uid), a read-only root file system, no capabilities."""
        pod = load("deployment.yaml")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
        image_uid = re.search(r"^USER (\d+)", dockerfile, re.MULTILINE)
        assert image_uid
        assert pod["securityContext"]["runAsUser"] == int(image_uid.group(1))
        security = container()["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]

    def test_grace_period_outlasts_the_shutdown_timeout(self) -> None:
        """Kubernetes waits longer than notifier lets a running pass finish."""
        pod = load("deployment.yaml")["spec"]["template"]["spec"]
        shutdown = load_settings().shutdown_timeout.total_seconds()
        assert pod["terminationGracePeriodSeconds"] > shutdown

    def test_service_reaches_the_container_port(self) -> None:
        """The Service selects the pods and targets the container's named port."""
        service = load("service.yaml")["spec"]
        deployment = load("deployment.yaml")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["selector"].items() <= labels.items()
        (port,) = container()["ports"]
        assert service["ports"][0]["targetPort"] == port["name"]

    def test_secrets_are_mounted_where_notifier_reads_them(self) -> None:
        """The Secret is a read-only volume at $CREDENTIALS_DIRECTORY, not environment values."""
        spec = container()
        env = {item["name"]: item.get("value") for item in spec["env"]}
        mounts = {mount["name"]: mount for mount in spec["volumeMounts"]}
        volumes = {
            v["name"]: v for v in load("deployment.yaml")["spec"]["template"]["spec"]["volumes"]
        }
        (name,) = [n for n, v in volumes.items() if "secret" in v]
        assert (
            volumes[name]["secret"]["secretName"]
            == load("secret.template.yaml")["metadata"]["name"]
        )
        assert mounts[name]["mountPath"] == env["CREDENTIALS_DIRECTORY"]
        assert mounts[name]["readOnly"] is True
        assert not any("secretKeyRef" in str(item) for item in spec["env"])


class TestConfigurationInStep:
    def test_configmap_names_every_setting(self) -> None:
        """Each non-secret variable of config.example.env is in the ConfigMap, set or commented."""
        text = (K8S / "configmap.yaml").read_text(encoding="utf-8")
        keys = set(load("configmap.yaml")["data"])
        for variable, secret in example_variables().items():
            if secret:
                continue
            assert variable in keys or re.search(rf"^\s*# {variable}: ", text, re.MULTILINE), (
                f"{variable} is missing from deploy/kubernetes/configmap.yaml"
            )
        assert keys <= set(example_variables())

    def test_secret_template_holds_every_secret(self) -> None:
        """The Secret template has one key per secret setting, named as notifier reads it."""
        secrets = {credential_name(v) for v, secret in example_variables().items() if secret}
        assert set(load("secret.template.yaml")["stringData"]) == secrets

    def test_the_secret_templates_placeholders_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Applied unfilled, the Secret template stops start-up, naming each placeholder."""
        template = load("secret.template.yaml")["stringData"]
        for name, value in template.items():
            (tmp_path / name).write_text(value, encoding="utf-8")
        for name, value in load("configmap.yaml")["data"].items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        with pytest.raises(ConfigError) as raised:
            load_settings()
        message = "\n".join(raised.value.lines)
        for name in template:
            assert f"NOTIFIER_{name.upper()}" in message
        for value in template.values():
            assert value not in message  # a refusal never repeats the secret

    def test_configmap_and_filled_secret_make_a_valid_configuration(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The ConfigMap's values, with the Secret's keys filled in as files, pass the check."""
        filled = {
            "database_password": secrets.token_urlsafe(24),
            "token_pepper": secrets.token_hex(32),
            "heartbeat_url": f"https://hc-ping.example/{secrets.token_hex(8)}",
            "bootstrap_token": secrets.token_hex(32),
        }
        assert set(filled) == set(load("secret.template.yaml")["stringData"])
        for name, value in filled.items():
            (tmp_path / name).write_text(value, encoding="utf-8")
        for name, value in load("configmap.yaml")["data"].items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        settings = load_settings()
        assert settings.effective_database_url().password == filled["database_password"]
        assert settings.heartbeat_url is not None

    def test_the_example_file_is_the_one_checked(self) -> None:
        """The variables come from the committed config.example.env (its drift test guards it)."""
        assert (REPO / "config.example.env").is_file()
        assert "NOTIFIER_DATABASE_URL" in example_variables()
