"""No drift between the chart and the code, checked against the real app objects.

For every value set and every container the chart renders: its arguments parse with the
CLI's own parser; every environment variable it sets is a `Settings` field (nested groups
by their env prefix), or one the runtime reads (the Prometheus multiprocess directory);
the settings it makes, secrets standing in, pass the app's own validation for production;
ports are the ones the settings make the app listen on; probe paths and Ingress paths are
routes of the app that runs there; the policy and contracts it mounts load; KEDA watches
the queue the consumer reads; the grace period covers gunicorn's drain.
"""

from __future__ import annotations

import runpy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings
from starlette.routing import Match

from app.cli import _parser
from app.config import Settings
from app.contracts.registry import ContractRegistry
from app.main import create_app, create_consumer_app
from app.privacy.policy import load_policy
from tests.chart.conftest import Manifest, one, rendered
from tests.support import PROJECT_ROOT

#: Read by the runtime, not by Settings: prometheus_client (and gunicorn.conf.py) read it.
RUNTIME_ENV = {"PROMETHEUS_MULTIPROC_DIR"}
#: What a Secret would hold, for constructing the settings a pod would see.
SECRET_STANDINS = {
    "DATABASE_URL": "postgresql://sluice@postgres.example:5432/sluice",
    "AMQP_URL": "amqp://user:password@rabbitmq.example:5672/",
    "SLUICE_PRIVACY_PREVIOUS_KEYS": '{"k0": "retired-key-of-32-characters-or-more"}',
}


def setting_env_names() -> dict[str, Any]:
    """Every environment variable `Settings` reads → its field, from the model itself."""
    names: dict[str, Any] = {}

    def add(model: type[BaseSettings]) -> None:
        prefix = str(model.model_config.get("env_prefix", ""))
        for name, field in model.model_fields.items():
            group = field.default_factory
            if isinstance(group, type) and issubclass(group, BaseSettings):
                add(group)
                continue
            alias = field.validation_alias
            env = alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{name}"
            names[str(env).upper()] = field

    add(Settings)
    return names


def secret_settings() -> set[str]:
    """Settings that are secrets: SecretStr fields, and the URLs that carry credentials."""
    secret = {
        env
        for env, field in setting_env_names().items()
        if SecretStr in _types_in(field.annotation)
    }
    return secret | {"DATABASE_URL", "AMQP_URL"}


def _types_in(annotation: Any) -> set[Any]:
    found = {annotation}
    for argument in getattr(annotation, "__args__", ()):
        found |= _types_in(argument)
    return found


def containers(value_set: str) -> Iterator[tuple[Manifest, dict[str, Any], dict[str, Any]]]:
    """(manifest, pod spec, container) of every workload."""
    for manifest in rendered(value_set):
        spec = manifest.body.get("spec", {})
        if manifest.kind in {"Deployment", "Job"}:
            pod = spec["template"]["spec"]
        elif manifest.kind == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        else:
            continue
        for container in pod["containers"]:
            yield manifest, pod, container


def container_env(value_set: str, container: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment: ConfigMaps by envFrom, then `env`; a variable from a
    Secret maps to None."""
    maps = {m.name: m.body["data"] for m in rendered(value_set) if m.kind == "ConfigMap"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            assert "secretKeyRef" in variable["valueFrom"], variable
            env[variable["name"]] = None
    return env


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Build `Settings` from a container's environment alone (no `.env`, no host vars)."""

    def build(env: dict[str, str | None]) -> Settings:
        monkeypatch.chdir(tmp_path)
        for name in setting_env_names().keys() | RUNTIME_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            standin = SECRET_STANDINS.get(name, "a-secret-of-32-characters-or-more-x")
            monkeypatch.setenv(name, value if value is not None else standin)
        return Settings()

    return build


def serves(app: FastAPI, path: str, method: str = "GET") -> bool:
    """Whether a request for `path` reaches an endpoint of `app`, by Starlette's own match."""
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "app": app}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def test_every_container_runs_a_cli_subcommand(value_set: str) -> None:
    parser = _parser()
    for manifest, _, container in containers(value_set):
        assert "command" not in container, "the image's entry point (python -m app) is kept"
        args = parser.parse_args(container["args"])  # SystemExit on an unknown command/option
        expected = {
            "api": "serve",
            "consumer": "consume",
            "migrate": "migrate",
            "maintain": "maintain",
        }
        assert args.command == expected[manifest.name.removeprefix("rel-sluice-")]


def test_every_environment_variable_exists_in_the_app(value_set: str) -> None:
    known = setting_env_names().keys() | RUNTIME_ENV
    for manifest, _, container in containers(value_set):
        unknown = container_env(value_set, container).keys() - known
        assert not unknown, f"{manifest.name} sets variables the app never reads: {unknown}"


def test_secrets_come_only_from_secret_references(value_set: str) -> None:
    secret = secret_settings()
    assert {"SLUICE_PRIVACY_PSEUDONYM_KEY", "SLUICE_ADMIN_TOKEN", "DATABASE_URL"} <= secret
    for manifest, _, container in containers(value_set):
        env = container_env(value_set, container)
        inline = {name for name in secret & env.keys() if env[name] is not None}
        assert not inline, f"{manifest.name} has secret values in its manifest: {inline}"
    for manifest in rendered(value_set):
        if manifest.kind == "ConfigMap":
            assert not secret & manifest.body["data"].keys(), manifest.name


def test_every_required_production_setting_is_set_or_referenced(
    value_set: str, settings_from: Any
) -> None:
    for manifest, _, container in containers(value_set):
        env = container_env(value_set, container)
        settings = settings_from(env)  # the app's own validators: production needs its secrets
        assert "DATABASE_URL" in env, f"{manifest.name}: DATABASE_URL is required in production"
        if container["args"][0] == "consume":
            assert settings.amqp_url is not None, f"{manifest.name}: consume needs AMQP_URL"


def test_ports_probes_and_ingress_paths_match_the_app(value_set: str, settings_from: Any) -> None:
    manifests = rendered(value_set)
    for manifest, _, container in containers(value_set):
        if manifest.kind != "Deployment":
            continue
        settings = settings_from(container_env(value_set, container))
        serving = container["args"][0] == "serve"
        app = create_app(settings) if serving else create_consumer_app(settings)
        expected_port = settings.port if serving else settings.amqp.health_port
        assert [p["containerPort"] for p in container["ports"]] == [expected_port]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert serves(app, container[probe]["httpGet"]["path"]), probe
        if serving:
            api = app
    for ingress in (m for m in manifests if m.kind == "Ingress"):
        for rule in ingress.body["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert serves(api, path["path"], "POST"), (
                    f"the Ingress routes {path['path']} nowhere"
                )


def test_the_grace_period_covers_the_pre_stop_wait_and_gunicorns_drain(
    value_set: str, monkeypatch: pytest.MonkeyPatch, settings_from: Any
) -> None:
    for manifest, pod, container in containers(value_set):
        if manifest.kind != "Deployment":
            continue
        env = container_env(value_set, container)
        settings_from(env)  # the pod's environment, now in os.environ
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sluice-drift-"))
        gunicorn = runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))
        pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        drain = gunicorn["graceful_timeout"]
        assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain, manifest.name


def test_the_mounted_policy_and_contracts_load(
    value_set: str, tmp_path: Path, settings_from: Any
) -> None:
    maps = {m.name: m.body["data"] for m in rendered(value_set) if m.kind == "ConfigMap"}
    for manifest, pod, container in containers(value_set):
        env = container_env(value_set, container)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        for setting in ("SLUICE_PRIVACY_POLICY_FILE", "SLUICE_CONTRACTS_DIR"):
            if env.get(setting) is None or manifest.kind == "Job":
                continue  # the migrator reads neither
            target = Path(str(env[setting]))
            mount = target.parent if setting.endswith("_FILE") else target
            volume = mounts[str(mount)]["configMap"]
            local = tmp_path / manifest.name / setting
            data = maps[volume["name"]]
            for item in volume.get("items") or [{"key": k, "path": k} for k in data]:
                (local / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (local / item["path"]).write_text(data[item["key"]])
            if setting.endswith("_FILE"):
                load_policy(local / target.name)
            else:
                mode = settings_from(env).contracts.default_mode
                assert len(ContractRegistry.load(local, default_mode=mode)) > 0


def test_keda_watches_the_queue_the_consumer_reads(value_set: str, settings_from: Any) -> None:
    manifests = rendered(value_set)
    scaled = [m for m in manifests if m.kind == "ScaledObject"]
    if not scaled:
        return
    consumer = one(manifests, "Deployment", "consumer").body["spec"]["template"]["spec"]
    settings = settings_from(container_env(value_set, consumer["containers"][0]))
    (trigger,) = scaled[0].body["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == settings.amqp.queue
