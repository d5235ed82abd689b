"""The Kubernetes manifests in deploy/kubernetes: valid against the API
schemas (kubernetes-validate bundles them; no cluster needed) and consistent
with what taskmesh really reads, serves and exports."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from taskmesh.cli.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.30.0"

# KEDA's CRD is not bundled with kubernetes-validate: the fields this example
# uses, as KEDA's ScaledObject v1alpha1 defines them.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer"},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((path.name, document))
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    matches = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"one {kind} {name}"
    return matches[0]


@pytest.mark.parametrize(
    ("file", "document"),
    [
        (f, d)
        for f, d in documents()
        if d["apiVersion"].split("/")[0] not in ("keda.sh", "kustomize.config.k8s.io")
    ],
    ids=lambda value: (
        value if isinstance(value, str) else f"{value['kind']}/{value['metadata']['name']}"
    ),
)
def test_every_kubernetes_resource_is_valid(file: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_keda_scaled_object_is_valid_and_scales_the_nodes_on_a_real_gauge() -> None:
    scaled = one("ScaledObject", "taskmesh-echo-backlog")
    jsonschema.validate(scaled, SCALED_OBJECT)
    nodes = one("StatefulSet", "taskmesh")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", nodes["metadata"]["name"])
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    exported = (ROOT / "taskmesh" / "ops" / "metrics.py").read_text()
    assert "taskmesh_capability_backlog" in query and '"taskmesh_capability_backlog"' in exported
    assert scaled["spec"]["minReplicaCount"] <= nodes["spec"]["replicas"]


def test_the_kustomization_lists_every_manifest_but_the_keda_example() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    manifests = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests - {"keda-scaledobject.yaml"}


def test_the_nodes_probes_config_and_drain_fit_what_taskmesh_serves(tmp_path: Path) -> None:
    config = one("ConfigMap", "taskmesh-config")["data"]["node.toml"]
    parsed = tomllib.loads(config)["taskmesh"]
    nodes = one("StatefulSet", "taskmesh")
    pod = nodes["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    # The real settings loader accepts the file plus the pod's environment.
    file = tmp_path / "node.toml"
    file.write_text(config)
    pod_env = {"TASKMESH_NAME": "taskmesh-0", "TASKMESH_LISTEN": "tcp://10.0.0.7:5555"}
    loaded = load_settings({}, environ=pod_env, config=file)
    assert loaded.name == "taskmesh-0" and loaded.listen == "tcp://10.0.0.7:5555"
    assert env["TASKMESH_NAME"] == "$(POD_NAME)"
    assert env["TASKMESH_LISTEN"] == f"tcp://$(POD_IP):{ports['mesh']}"
    assert loaded.metrics_port == ports["http"] and loaded.metrics_host == "0.0.0.0"
    assert container["args"] == ["--config", "/etc/taskmesh/node.toml"]
    mount = container["volumeMounts"][0]
    assert mount["mountPath"] == "/etc/taskmesh"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])

    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    # Leaving etcd (<= 2 s) and stopping actors (10 s stop timeout) come on top.
    needed = pause + 2 + loaded.grace_period + 10
    assert pod["spec"]["terminationGracePeriodSeconds"] >= needed

    # etcd: the endpoints the nodes use are the etcd pods' stable names.
    etcd = one("StatefulSet", "etcd")
    service = one("Service", "etcd")
    names = [f"http://etcd-{i}.{service['metadata']['name']}:2379" for i in range(3)]
    assert etcd["spec"]["replicas"] == 3 and etcd["spec"]["serviceName"] == "etcd"
    assert list(parsed["etcd"]) == names == list(loaded.etcd)


def test_the_services_and_budgets_select_their_pods() -> None:
    for workload, service, budget in (
        ("taskmesh", "taskmesh", "taskmesh"),
        ("etcd", "etcd", "etcd"),
    ):
        labels = one("StatefulSet", workload)["spec"]["template"]["metadata"]["labels"]
        selected = one("Service", service)["spec"]["selector"]
        assert one("Service", service)["spec"]["clusterIP"] == "None"
        assert selected.items() <= labels.items()
        budget_selector = one("PodDisruptionBudget", budget)["spec"]["selector"]["matchLabels"]
        assert budget_selector.items() <= labels.items()
        assert one("PodDisruptionBudget", budget)["spec"]["maxUnavailable"] == 1
