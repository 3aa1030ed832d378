"""Chart unit tests over `helm template` output, helm-unittest style: assertions per
template (the HPA/KEDA guard, hook ordering, the checksum annotation, probes, security)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, VALUE_FILES, Manifest, one, render, rendered, values_of

CONSUMER_ON = {
    "consumer": {"enabled": True},
    "secrets": {"amqpUrl": {"name": "amqp", "key": "url"}},
}


def pod_specs(
    manifests: tuple[Manifest, ...] | list[Manifest],
) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    """Every pod template: Deployments and Jobs, and CronJobs' job templates."""
    for manifest in manifests:
        spec = manifest.body.get("spec", {})
        if manifest.kind in {"Deployment", "Job"}:
            yield manifest, spec["template"]["spec"]
        elif manifest.kind == "CronJob":
            yield manifest, spec["jobTemplate"]["spec"]["template"]["spec"]


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _merge(merged[key], value)
            else:
                merged[key] = value
    return merged


# --- the HPA/KEDA guard ---------------------------------------------------------------


def test_an_hpa_and_keda_on_the_consumer_fail_the_render() -> None:
    helm = pytest.importorskip("helm_python")
    both = _merge(
        CONSUMER_ON, {"consumer": {"autoscaling": {"enabled": True}, "keda": {"enabled": True}}}
    )
    with pytest.raises(helm.HelmRenderError, match="both scale the consumer Deployment"):
        render(both)


def test_keda_alone_scales_the_consumer_on_queue_length() -> None:
    manifests = render(_merge(CONSUMER_ON, {"consumer": {"keda": {"enabled": True}}}))
    scaled = one(manifests, "ScaledObject", "consumer").body["spec"]
    assert scaled["scaleTargetRef"]["name"] == one(manifests, "Deployment", "consumer").name
    (trigger,) = scaled["triggers"]
    assert (trigger["type"], trigger["metadata"]["mode"]) == ("rabbitmq", "QueueLength")
    auth = one(manifests, "TriggerAuthentication", "rabbitmq").body["spec"]
    assert (
        trigger["authenticationRef"]["name"]
        == one(manifests, "TriggerAuthentication", "rabbitmq").name
    )
    assert auth["secretTargetRef"] == [{"parameter": "host", "name": "amqp", "key": "url"}]
    hpa_targets = [
        m.body["spec"]["scaleTargetRef"]["name"]
        for m in manifests
        if m.kind == "HorizontalPodAutoscaler"
    ]
    assert hpa_targets == [one(manifests, "Deployment", "api").name]


def test_an_autoscaled_deployment_leaves_replicas_to_its_autoscaler(value_set: str) -> None:
    manifests = rendered(value_set)
    scaled = {
        m.body["spec"]["scaleTargetRef"]["name"]
        for m in manifests
        if m.kind in {"HorizontalPodAutoscaler", "ScaledObject"}
    }
    for deployment in (m for m in manifests if m.kind == "Deployment"):
        assert ("replicas" in deployment.body["spec"]) == (deployment.name not in scaled), (
            deployment.name
        )


def test_the_api_hpa_scales_on_cpu_and_optionally_a_pods_metric() -> None:
    plain = one(rendered("default"), "HorizontalPodAutoscaler", "api").body["spec"]["metrics"]
    assert [m["type"] for m in plain] == ["Resource"]
    assert plain[0]["resource"]["name"] == "cpu"
    custom = one(rendered("production"), "HorizontalPodAutoscaler", "api").body["spec"]["metrics"]
    assert [m["type"] for m in custom] == ["Resource", "Pods"]
    assert custom[1]["pods"]["metric"]["name"] == "sluice_buffer_events"


# --- hooks: one migrator, before the new pods -----------------------------------------


def test_the_migration_job_is_the_only_hook_and_runs_before_install_and_upgrade(
    value_set: str,
) -> None:
    manifests = rendered(value_set)
    hooks = [m for m in manifests if "helm.sh/hook" in m.body["metadata"].get("annotations", {})]
    if not values_of(value_set).get("migrations", {}).get("enabled", True):
        assert hooks == []
        return
    (job,) = hooks
    assert (job.kind, job.name) == ("Job", "rel-sluice-migrate")
    annotations = job.body["metadata"]["annotations"]
    assert annotations["helm.sh/hook"].split(",") == ["pre-install", "pre-upgrade"]
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert job.body["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job.body["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


MIGRATING = [
    name
    for name in sorted(VALUE_FILES)
    if values_of(name).get("migrations", {}).get("enabled", True)
]


@pytest.mark.parametrize("value_set", MIGRATING)
def test_the_migration_hook_needs_nothing_the_release_creates_after_it(value_set: str) -> None:
    """A pre-install hook runs before the release's own objects exist: its pod must not
    read their ConfigMaps; it carries the same settings inline."""
    manifests = rendered(value_set)
    jobs = [m for m in manifests if m.kind == "Job"]
    release_made = {m.name for m in manifests if m.kind == "ConfigMap"}
    pod = jobs[0].body["spec"]["template"]["spec"]
    text = json.dumps(pod)
    assert not any(f'"{name}"' in text for name in release_made), (
        "the hook reads a release ConfigMap"
    )
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"] if "value" in e}
    assert env == one(manifests, "ConfigMap", "settings").body["data"]


# --- the checksum annotation rolls the pods -------------------------------------------


def _checksums(manifests: list[Manifest]) -> dict[str, str]:
    return {
        manifest.name: (
            manifest.body["spec"]["template"]["metadata"]["annotations"]
            if manifest.kind == "Deployment"
            else manifest.body["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
        )["checksum/config"]
        for manifest in manifests
        if manifest.kind in {"Deployment", "CronJob"}
    }


@pytest.mark.parametrize(
    "change",
    [
        {"settings": {"SLUICE_BATCH_MAX_SIZE": "250"}},
        {"privacy": {"policy": "version: 1\nmode: allowlist\n"}},
        {"contracts": {"files": {"contracts.yaml": "types: {}\n"}}},
        {"logLevel": "DEBUG"},
    ],
)
def test_a_configuration_change_changes_every_pods_checksum(change: dict[str, Any]) -> None:
    base = _checksums(render(CONSUMER_ON))
    changed = _checksums(render(_merge(CONSUMER_ON, change)))
    assert base.keys() == changed.keys()
    assert len(base) == 3  # api, consumer, maintain
    assert all(base[name] != changed[name] for name in base)


def test_the_checksum_is_stable_and_ignores_non_configuration() -> None:
    base = _checksums(render(CONSUMER_ON))
    assert _checksums(render(CONSUMER_ON)) == base
    assert _checksums(render(_merge(CONSUMER_ON, {"image": {"tag": "9.9.9"}}))) == base


# --- probes, drain, security ----------------------------------------------------------


def test_probes_name_the_health_endpoints_on_a_declared_port(value_set: str) -> None:
    for deployment in (m for m in rendered(value_set) if m.kind == "Deployment"):
        (container,) = deployment.body["spec"]["template"]["spec"]["containers"]
        ports = {p["name"] for p in container["ports"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in ports


def test_the_pre_stop_wait_fits_in_the_grace_period(value_set: str) -> None:
    for deployment in (m for m in rendered(value_set) if m.kind == "Deployment"):
        pod = deployment.body["spec"]["template"]["spec"]
        command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        assert int(command[1]) < pod["terminationGracePeriodSeconds"]


def test_every_container_is_locked_down_and_bounded(value_set: str) -> None:
    for manifest, pod in pod_specs(rendered(value_set)):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, manifest.name
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert context["runAsUser"] > 0
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
            writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
            assert all("emptyDir" in volumes[m["name"]] for m in writable), manifest.name
            assert "/tmp" in {m["mountPath"] for m in writable}  # noqa: S108 - a path, not a file


def test_pods_spread_across_zones_and_nodes_and_disruptions_are_bounded() -> None:
    manifests = rendered("production")
    for deployment in (m for m in manifests if m.kind == "Deployment"):
        spread = deployment.body["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert [s["topologyKey"] for s in spread] == [
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        ]
        selector = deployment.body["spec"]["selector"]["matchLabels"]
        assert all(s["labelSelector"]["matchLabels"] == selector for s in spread)
        budget = one(manifests, "PodDisruptionBudget", deployment.name.removeprefix("rel-sluice-"))
        assert budget.body["spec"]["selector"]["matchLabels"] == selector


def test_the_network_policy_admits_the_serving_ports_and_only_the_dependencies_out() -> None:
    manifests = rendered("all-on")
    policy = one(manifests, "NetworkPolicy", "").body["spec"]
    container_ports = {
        port["name"]
        for m in manifests
        if m.kind == "Deployment"
        for port in m.body["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == container_ports
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 5432, 5671, 5672, 4317, 4318, 443}


# --- monitoring: one source for alerts and dashboards ---------------------------------


def test_the_prometheus_rule_is_files_alerts_yaml() -> None:
    rule = one(rendered("all-on"), "PrometheusRule", "").body
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


def test_each_dashboard_file_is_a_labelled_config_map() -> None:
    maps = [m for m in rendered("all-on") if m.kind == "ConfigMap" and "-dashboard-" in m.name]
    files = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert len(maps) == len(files) > 0
    for path, manifest in zip(files, sorted(maps, key=lambda m: m.name), strict=True):
        assert manifest.body["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(manifest.body["data"][path.name]) == json.loads(path.read_text())


def test_service_monitor_endpoints_are_service_ports() -> None:
    manifests = rendered("all-on")
    monitor = one(manifests, "ServiceMonitor", "").body["spec"]
    service_ports = {
        p["name"] for m in manifests if m.kind == "Service" for p in m.body["spec"]["ports"]
    }
    assert {e["port"] for e in monitor["endpoints"]} == service_ports
    assert all(e["path"] == "/metrics" for e in monitor["endpoints"])


def test_datadog_autodiscovery_annotations_point_at_metrics() -> None:
    for deployment in (m for m in rendered("all-on") if m.kind == "Deployment"):
        annotations = deployment.body["spec"]["template"]["metadata"]["annotations"]
        check = json.loads(annotations["ad.datadoghq.com/sluice.checks"])
        port = deployment.body["spec"]["template"]["spec"]["containers"][0]["ports"][0][
            "containerPort"
        ]
        (instance,) = check["openmetrics"]["instances"]
        assert instance["openmetrics_endpoint"] == f"http://%%host%%:{port}/metrics"
    default = one(rendered("default"), "Deployment", "api").body["spec"]["template"]["metadata"]
    assert not any(key.startswith("ad.datadoghq.com/") for key in default["annotations"])


def test_optional_resources_are_off_by_default() -> None:
    kinds = {m.kind for m in rendered("default")}
    for optional in (
        "Ingress",
        "ServiceMonitor",
        "PrometheusRule",
        "ScaledObject",
        "TriggerAuthentication",
    ):
        assert optional not in kinds
    assert [m.name for m in rendered("default") if m.kind == "Deployment"] == ["rel-sluice-api"]
