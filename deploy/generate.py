"""Generate deploy/ from the contracts' topic registry and the services' consumers.

    uv run --frozen --all-packages python deploy/generate.py           # write
    uv run --frozen --all-packages python deploy/generate.py --check   # fail when stale

Writes (and the tests compare against, see tests/deploy/):
- topics.json                 every topic: partitions, compaction, producer, consumer groups
- kafka/create-topics.sh      the topic-creation job of compose and Kubernetes
- compose.yaml                Kafka (KRaft), Postgres, per service migrate/api/worker, gateway
- k8s/base/*.yaml             kustomize base (see k8s/base/kustomization.yaml)

Who consumes what is read from each service's `DEFINITION.consumers` (its
`EventConsumers`). A service whose package cannot be imported yet falls back to
DECLARED_CONSUMERS below (from docs/domain.md); generate again once it can be imported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contracts.registry import REGISTRY

DEPLOY = Path(__file__).resolve().parent
SERVICES = ("catalog", "matching", "booking", "notifications")
HTTP_PORT = 8000
GATEWAY_PORT = 8080
KAFKA_IMAGE = "apache/kafka:4.1.0"
POSTGRES_IMAGE = "postgres:16-bookworm"
ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"
MAIL_IMAGE = "axllent/mailpit:v1.21"
DEAD_LETTER_PARTITIONS = 1  # low volume; `partition:offset` references stay short
DEAD_LETTER_RETENTION_MS = 30 * 24 * 3600 * 1000

# service -> (consumer name, event type); used only while a service cannot be imported.
DECLARED_CONSUMERS: dict[str, list[tuple[str, str]]] = {
    "catalog": [("review-eligibility", "CourseCompleted")],
    "matching": [
        ("therapist-directory", "TherapistProfilePublished"),
        ("therapist-withdrawals", "TherapistProfileWithdrawn"),
        ("therapist-availability", "TherapistAvailabilityPublished"),
        ("therapist-ratings", "ReviewPublished"),
        ("load-course-started", "CourseStarted"),
        ("load-course-completed", "CourseCompleted"),
        ("load-course-ended", "CourseEnded"),
    ],
    "booking": [
        ("course-opener", "TherapistMatched"),
        ("course-approval", "MatchApproved"),
        ("therapist-profiles", "TherapistProfilePublished"),
        ("therapist-withdrawals", "TherapistProfileWithdrawn"),
    ],
    "notifications": [
        ("intake-receipt", "IntakeSubmitted"),
        ("crisis-alert", "IntakeEscalated"),
        ("match-notice", "TherapistMatched"),
        ("waitlist-notice", "IntakeWaitlisted"),
        ("session-booked", "SessionBooked"),
        ("session-cancelled", "SessionCancelled"),
        ("session-rescheduled", "SessionRescheduled"),
        ("course-completed", "CourseCompleted"),
    ],
}


@dataclass(frozen=True)
class Consumer:
    service: str
    name: str
    topic: str

    @property
    def group(self) -> str:  # chassis.settings.ServiceSettings.group with no prefixes
        return f"{self.service}.{self.name}"


def dead_letter_topic(service: str) -> str:
    from chassis.consumer import dead_letter_topic as of

    return of(service)


class _RecordingBroker:
    """Stands in for the KafkaBroker: records what a service's consumers subscribe to."""

    def __init__(self) -> None:
        self.subscriptions: list[tuple[str, str]] = []

    def subscriber(self, *topics: str, group_id: str, **_: Any) -> Any:
        self.subscriptions += [(topic, group_id) for topic in topics]
        return lambda func: func


def consumers_of(service: str) -> tuple[list[Consumer], str]:
    """(consumers, source): what the service's worker subscribes to (its DEFINITION's
    consumers, asked to subscribe to a recording broker), else DECLARED_CONSUMERS while
    the service's package does not exist yet."""
    try:
        definition = importlib.import_module(f"{service}.app").DEFINITION
    except ModuleNotFoundError as exc:
        if exc.name not in (service, f"{service}.app"):
            raise
        return [
            Consumer(service, name, REGISTRY.topic(event))
            for name, event in DECLARED_CONSUMERS[service]
        ], "declared"
    if definition.consumers is None:
        return [], "service"
    settings = definition.settings_class(topic_prefix="", kafka_group_prefix="")
    broker = _RecordingBroker()
    definition.consumers.subscribe(broker, settings, lambda: None)
    prefix = f"{service}."
    out = []
    for topic, group in broker.subscriptions:
        assert group.startswith(prefix), group
        out.append(Consumer(service, group.removeprefix(prefix), topic))
    return sorted(out, key=lambda c: (c.name, c.topic)), "service"


def all_consumers() -> dict[str, list[Consumer]]:
    return {svc: consumers_of(svc)[0] for svc in SERVICES}


# ---------------------------------------------------------------- topics


def topics(consumers: dict[str, list[Consumer]]) -> list[dict[str, Any]]:
    out = []
    for spec in REGISTRY.specs:
        config = {"cleanup.policy": "compact"} if spec.compacted else {}
        out.append(
            {
                "name": spec.topic,
                "partitions": spec.partitions,
                "compacted": spec.compacted,
                "config": config,
                "producer": spec.model.producer,
                "event_type": spec.event_type,
                "key_field": spec.key_field,
                "consumer_groups": sorted(
                    c.group for cs in consumers.values() for c in cs if c.topic == spec.topic
                ),
            }
        )
    for svc in SERVICES:
        out.append(
            {
                "name": dead_letter_topic(svc),
                "partitions": DEAD_LETTER_PARTITIONS,
                "compacted": False,
                "config": {"retention.ms": str(DEAD_LETTER_RETENTION_MS)},
                "producer": svc,
                "event_type": None,
                "key_field": None,
                "consumer_groups": [],
            }
        )
    return out


def create_topics_script(topic_list: list[dict[str, Any]]) -> str:
    lines = [
        "#!/bin/sh",
        "# Generated by deploy/generate.py from the contracts' registry: do not edit.",
        "# Creates every Samtal topic (idempotent). Env: BOOTSTRAP (kafka:9092),",
        "# REPLICATION_FACTOR (1), KAFKA_BIN (/opt/kafka/bin).",
        "set -eu",
        'BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"',
        'RF="${REPLICATION_FACTOR:-1}"',
        'BIN="${KAFKA_BIN:-/opt/kafka/bin}"',
        "create() {",
        '    "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \\',
        '        --replication-factor "$RF" "$@"',
        "}",
    ]
    for t in topic_list:
        configs = "".join(f" --config {k}={v}" for k, v in t["config"].items())
        lines.append(f"create --topic {t['name']} --partitions {t['partitions']}{configs}")
    lines.append('echo "topics ready:"')
    lines.append('"$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --list')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- settings


# The local stack's on-call clinician (the same id `make run` uses); a real deployment
# must name its own roster: without one, crisis alerts reach no clinician.
LOCAL_ON_CALL = '["00000000-0000-4000-8000-00000000c11c"]'


def service_env(svc: str, *, database_url: str, kafka: str, **delivery: str) -> dict[str, str]:
    p = f"SAMTAL_{svc.upper()}_"
    env = {
        f"{p}DATABASE_URL": database_url,
        f"{p}KAFKA_BOOTSTRAP": kafka,
        f"{p}KAFKA_IDEMPOTENCE": "true",
        f"{p}TOPIC_PREFIX": "",
        f"{p}LOG_LEVEL": "INFO",
        f"{p}HTTP_HOST": "0.0.0.0",
        f"{p}HTTP_PORT": str(HTTP_PORT),
    }
    if svc == "notifications":
        # Where messages go: SMTP relay and the on-call roster (SMS URL/token: the Secret).
        env.update({f"{p}{key.upper()}": value for key, value in delivery.items()})
    if svc == "matching" and "on_call_clinicians" in delivery:
        # The same roster scopes who opens escalated intakes without stating a reason.
        env[f"{p}ON_CALL_CLINICIANS"] = delivery["on_call_clinicians"]
    return env


# ---------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    services: dict[str, Any] = {
        "kafka": {
            "image": KAFKA_IMAGE,
            "environment": {
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:29092",
                "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092,HOST://localhost:29092",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
                ),
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
                # Topics come from the registry (the `topics` job), never from a typo.
                "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
            },
            "ports": ["127.0.0.1:29092:29092"],
            "healthcheck": {
                "test": [
                    "CMD-SHELL",
                    "/opt/kafka/bin/kafka-broker-api-versions.sh "
                    "--bootstrap-server localhost:9092 > /dev/null 2>&1",
                ],
                "interval": "5s",
                "timeout": "10s",
                "retries": 20,
                "start_period": "15s",
            },
        },
        "topics": {
            "image": KAFKA_IMAGE,
            "command": ["sh", "/scripts/create-topics.sh"],
            "environment": {"BOOTSTRAP": "kafka:9092", "REPLICATION_FACTOR": "1"},
            "volumes": ["./kafka/create-topics.sh:/scripts/create-topics.sh:ro"],
            "depends_on": {"kafka": {"condition": "service_healthy"}},
            "restart": "no",
        },
        "postgres": {
            "image": POSTGRES_IMAGE,
            "environment": {
                "POSTGRES_USER": "postgres",
                "POSTGRES_PASSWORD": "postgres",
                "POSTGRES_DB": "samtal",
            },
            "ports": ["127.0.0.1:55432:5432"],
            "volumes": ["postgres-data:/var/lib/postgresql/data"],
            "healthcheck": {
                "test": ["CMD-SHELL", "pg_isready -U postgres -d samtal"],
                "interval": "3s",
                "timeout": "3s",
                "retries": 20,
            },
        },
        # A local mail catcher: what notifications sends, readable at 127.0.0.1:8025.
        "mail": {
            "image": MAIL_IMAGE,
            "ports": ["127.0.0.1:8025:8025"],
        },
    }
    for svc in SERVICES:
        env = service_env(
            svc,
            database_url="postgresql://postgres:postgres@postgres:5432/samtal",
            kafka="kafka:9092",
            smtp_host="mail",
            smtp_port="1025",
            on_call_clinicians=LOCAL_ON_CALL,
        )
        env[f"SAMTAL_{svc.upper()}_DB_PASSWORD"] = f"{svc}-local"
        build = {
            "context": "..",
            "dockerfile": "deploy/docker/Dockerfile",
            "args": {"SERVICE": svc},
        }
        common = {"image": f"samtal-{svc}:local", "build": build, "environment": env}
        services[f"{svc}-migrate"] = {
            **common,
            "command": ["migrate"],
            "restart": "no",
            "depends_on": {"postgres": {"condition": "service_healthy"}},
        }
        running = {
            **common,
            "env_file": [{"path": ".local/samtal.env", "required": True}],
            "restart": "unless-stopped",
            "depends_on": {
                f"{svc}-migrate": {"condition": "service_completed_successfully"},
                "topics": {"condition": "service_completed_successfully"},
                "kafka": {"condition": "service_healthy"},
                "postgres": {"condition": "service_healthy"},
            },
            "healthcheck": {
                "test": ["CMD", "python", "/usr/local/bin/samtal-healthcheck"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 10,
                "start_period": "20s",
            },
        }
        services[f"{svc}-api"] = {**running, "command": ["api"]}
        services[f"{svc}-worker"] = {**running, "command": ["worker"]}
    services["gateway"] = {
        "image": ENVOY_IMAGE,
        "command": ["envoy", "-c", "/etc/envoy/envoy.yaml", "--log-level", "warning"],
        "volumes": ["./.local/envoy.yaml:/etc/envoy/envoy.yaml:ro"],
        "ports": [f"127.0.0.1:{GATEWAY_PORT}:{GATEWAY_PORT}"],
        "depends_on": {f"{svc}-api": {"condition": "service_healthy"} for svc in SERVICES},
        "healthcheck": {
            "test": ["CMD-SHELL", f"bash -c '</dev/tcp/127.0.0.1/{GATEWAY_PORT}'"],
            "interval": "5s",
            "timeout": "3s",
            "retries": 10,
        },
    }
    return {
        "name": "samtal",
        "services": services,
        "volumes": {"postgres-data": {}},
    }


# ---------------------------------------------------------------- kubernetes

LABEL = "app.kubernetes.io"
SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _meta(name: str, component: str, svc: str | None = None) -> dict[str, Any]:
    labels = {f"{LABEL}/name": name, f"{LABEL}/component": component, f"{LABEL}/part-of": "samtal"}
    if svc:
        labels["samtal.io/service"] = svc
    return {"name": name, "labels": labels}


def _selector(name: str) -> dict[str, str]:
    return {f"{LABEL}/name": name}


def _env_from(svc: str) -> list[dict[str, Any]]:
    return [{"configMapRef": {"name": f"samtal-{svc}"}}, {"secretRef": {"name": f"samtal-{svc}"}}]


def _jwt_env(svc: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"SAMTAL_{svc.upper()}_JWT_PUBLIC_KEYS",
            "valueFrom": {"configMapKeyRef": {"name": "samtal-jwt", "key": "public-keys.json"}},
        }
    ]


def _container(svc: str, process: str) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    return {
        "name": process,
        "image": f"samtal-{svc}",
        "args": [process],
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "envFrom": _env_from(svc),
        "env": _jwt_env(svc),
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3},
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 30},
        "resources": {
            "requests": {"cpu": "100m", "memory": "192Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _deployment(svc: str, process: str, replicas: int) -> dict[str, Any]:
    name = f"{svc}-{process}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, process, svc),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": _selector(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": _meta(name, process, svc)["labels"],
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
                    "containers": [_container(svc, process)],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": _selector(name)},
                        }
                    ],
                },
            },
        },
    }


def _service(name: str, component: str, svc: str | None, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, component, svc),
        "spec": {
            "selector": _selector(name),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


def _pdb(name: str, component: str, svc: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, component, svc),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(name)}},
    }


def _hpa(name: str, component: str, svc: str | None, lo: int, hi: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, component, svc),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": lo,
            "maxReplicas": hi,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def worker_max_replicas(consumers: list[Consumer]) -> int:
    """More workers than the largest partition count of the topics they read sit idle."""
    parts = [REGISTRY.by_topic[c.topic].partitions for c in consumers]
    return max(parts, default=1)


def scaled_object(svc: str, consumers: list[Consumer]) -> dict[str, Any]:
    name = f"{svc}-worker"
    triggers = [
        {
            "type": "kafka",
            "metadata": {
                "bootstrapServers": "kafka:9092",
                "consumerGroup": c.group,
                "topic": c.topic,
                "lagThreshold": "100",
                "activationLagThreshold": "1",
                "offsetResetPolicy": "earliest",
                "allowIdleConsumers": "false",
            },
        }
        for c in consumers
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(name, "worker", svc),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            # at least one: the worker also runs the outbox relay, which must never stop
            "minReplicaCount": 1,
            "maxReplicaCount": worker_max_replicas(consumers),
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": triggers
            or [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}],
        },
    }


def _egress_to(app: str, port: int) -> dict[str, Any]:
    return {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {f"{LABEL}/name": app}}}],
        "ports": [{"protocol": "TCP", "port": port}],
    }


DNS_EGRESS = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
MONITORING_INGRESS = {
    "from": [{"namespaceSelector": {"matchLabels": {"samtal.io/monitoring": "true"}}}],
    "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
}


def network_policy(svc: str, process: str) -> dict[str, Any]:
    name = f"{svc}-{process}"
    ingress = [MONITORING_INGRESS]
    if process == "api":
        ingress.insert(
            0,
            {
                "from": [{"podSelector": {"matchLabels": _selector("gateway")}}],
                "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
            },
        )
    egress = [DNS_EGRESS, _egress_to("kafka", 9092), _egress_to("postgres", 5432)]
    if svc == "notifications" and process == "worker":
        # sending e-mail (SMTP) and SMS (an HTTPS provider) leaves the cluster
        egress.append(
            {
                "to": [
                    {
                        "ipBlock": {
                            "cidr": "0.0.0.0/0",
                            "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": p} for p in (25, 465, 587, 443)],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, process, svc),
        "spec": {
            "podSelector": {"matchLabels": _selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def migrate_job(svc: str) -> dict[str, Any]:
    name = f"{svc}-migrate"
    container = {
        "name": "migrate",
        "image": f"samtal-{svc}",
        "args": ["migrate"],
        "envFrom": [
            {"configMapRef": {"name": f"samtal-{svc}"}},
            {"secretRef": {"name": f"samtal-{svc}"}},
            # the admin DATABASE_URL (creates the role and schema); only here
            {"secretRef": {"name": f"samtal-{svc}-migrate"}},
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "securityContext": SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(name, "migrate", svc),
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": _meta(name, "migrate", svc)["labels"]},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def migrate_network_policy(svc: str) -> dict[str, Any]:
    name = f"{svc}-migrate"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, "migrate", svc),
        "spec": {
            "podSelector": {"matchLabels": _selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [DNS_EGRESS, _egress_to("postgres", 5432)],
        },
    }


def service_manifests(svc: str, consumers: list[Consumer]) -> list[dict[str, Any]]:
    env = service_env(
        svc,
        database_url="postgresql://postgres:5432/samtal",
        kafka="kafka:9092",
        smtp_host="smtp-relay.mail.svc",
        smtp_port="587",
        smtp_from="Samtal <no-reply@samtal.se>",
        # Replace with the clinicians on call (JSON list of person ids) before rolling out.
        on_call_clinicians=LOCAL_ON_CALL,
    )
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"samtal-{svc}", "config", svc),
        "data": env,
    }
    return [
        config,
        _deployment(svc, "api", 2),
        _service(f"{svc}-api", "api", svc, HTTP_PORT),
        _hpa(f"{svc}-api", "api", svc, 2, 10),
        _pdb(f"{svc}-api", "api", svc),
        network_policy(svc, "api"),
        _deployment(svc, "worker", 1),
        _service(f"{svc}-worker", "worker", svc, HTTP_PORT),
        scaled_object(svc, consumers),
        _pdb(f"{svc}-worker", "worker", svc),
        network_policy(svc, "worker"),
        migrate_job(svc),
        migrate_network_policy(svc),
    ]


def _load_render() -> Any:
    spec = importlib.util.spec_from_file_location(
        "samtal_gateway_render", DEPLOY / "gateway" / "render.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gateway_manifests() -> list[dict[str, Any]]:
    render = _load_render()
    envoy = render.render(
        {svc: (f"{svc}-api", HTTP_PORT) for svc in SERVICES},
        '{"keys": []}',
        GATEWAY_PORT,
        jwks_file="/etc/envoy/jwks/jwks.json",
        cors_origins=["https://app.samtal.se", "https://terapeut.samtal.se"],
    )
    name = "gateway"
    container = {
        "name": "envoy",
        "image": "envoyproxy/envoy",
        "args": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "warning"],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": {**SECURITY, "runAsUser": 101, "runAsGroup": 101},
        "volumeMounts": [
            {
                "name": "config",
                "mountPath": "/etc/envoy/envoy.yaml",
                "subPath": "envoy.yaml",
                "readOnly": True,
            },
            {"name": "jwks", "mountPath": "/etc/envoy/jwks", "readOnly": True},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, "gateway"),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": _selector(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": _meta(name, "gateway")["labels"]},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "gateway"}},
                        {
                            "name": "jwks",
                            "configMap": {
                                "name": "samtal-jwt",
                                "items": [{"key": "jwks.json", "path": "jwks.json"}],
                            },
                        },
                    ],
                },
            },
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, "gateway"),
        "spec": {
            "podSelector": {"matchLabels": _selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": GATEWAY_PORT}]}],
            "egress": [
                DNS_EGRESS,
                {
                    "to": [{"podSelector": {"matchLabels": {f"{LABEL}/component": "api"}}}],
                    "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
                },
            ],
        },
    }
    service = _service(name, "gateway", None, 80)
    service["spec"]["ports"][0]["targetPort"] = "http"
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(name, "gateway"),
            "data": {"envoy.yaml": envoy},
        },
        deployment,
        service,
        _hpa(name, "gateway", None, 2, 6),
        _pdb(name, "gateway", None),
        policy,
    ]


def shared_manifests(topic_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    script = create_topics_script(topic_list)
    jwt = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("samtal-jwt", "auth"),
        "data": {
            # Replace both in an overlay: the public keys in force (old and new during a
            # rotation) as a JSON list of PEMs for the services, and the same as a JWKS
            # for the gateway (deploy/gateway/render.py: pem_to_jwks).
            "public-keys.json": "[]",
            "jwks.json": '{"keys": []}',
        },
    }
    topics_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("create-topics", "kafka"),
        "spec": {
            "backoffLimit": 5,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": _meta("create-topics", "kafka")["labels"]},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "create-topics",
                            "image": "apache/kafka",
                            "command": ["sh", "/scripts/create-topics.sh"],
                            "env": [
                                {"name": "BOOTSTRAP", "value": "kafka:9092"},
                                {"name": "REPLICATION_FACTOR", "value": "3"},
                            ],
                            "volumeMounts": [{"name": "scripts", "mountPath": "/scripts"}],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "256Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"},
                            },
                            "securityContext": {
                                **SECURITY,
                                "runAsUser": 1000,
                                "runAsGroup": 1000,
                                "readOnlyRootFilesystem": False,
                            },
                        }
                    ],
                    "volumes": [{"name": "scripts", "configMap": {"name": "kafka-topics"}}],
                },
            },
        },
    }
    default_deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("default-deny", "policy"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    topics_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("create-topics", "kafka"),
        "spec": {
            "podSelector": {"matchLabels": _selector("create-topics")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [DNS_EGRESS, _egress_to("kafka", 9092)],
        },
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "samtal"}},
        jwt,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("kafka-topics", "kafka"),
            "data": {"create-topics.sh": script},
        },
        topics_job,
        topics_policy,
        default_deny,
    ]


def kustomization(files: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "samtal",
        "resources": files,
        "images": [
            *(
                {"name": f"samtal-{svc}", "newName": f"samtal-{svc}", "newTag": "0.1.0"}
                for svc in SERVICES
            ),
            {"name": "envoyproxy/envoy", "newTag": ENVOY_IMAGE.split(":")[1]},
            {"name": "apache/kafka", "newTag": KAFKA_IMAGE.split(":")[1]},
        ],
    }


# ---------------------------------------------------------------- output

HEADER = "# Generated by deploy/generate.py: edit that, then run it again.\n"


def _dump(docs: list[dict[str, Any]] | dict[str, Any]) -> str:
    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    Dumper.ignore_aliases = lambda self, data: True  # type: ignore[method-assign]
    opts = {"Dumper": Dumper, "sort_keys": False, "width": 100, "default_flow_style": False}
    if isinstance(docs, dict):
        return HEADER + yaml.dump(docs, **opts)
    return HEADER + yaml.dump_all(docs, **opts)


def outputs() -> dict[str, str]:
    consumers = all_consumers()
    topic_list = topics(consumers)
    files: dict[str, str] = {
        "topics.json": json.dumps(
            {"generated_by": "deploy/generate.py", "topics": topic_list}, indent=2
        )
        + "\n",
        "kafka/create-topics.sh": create_topics_script(topic_list),
        "compose.yaml": _dump(compose()),
    }
    k8s = {"shared.yaml": shared_manifests(topic_list), "gateway.yaml": gateway_manifests()}
    for svc in SERVICES:
        k8s[f"{svc}.yaml"] = service_manifests(svc, consumers[svc])
    for name, docs in k8s.items():
        files[f"k8s/base/{name}"] = _dump(docs)
    files["k8s/base/kustomization.yaml"] = _dump(kustomization(list(k8s)))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate deploy/ from the registry")
    parser.add_argument("--check", action="store_true", help="fail when a file is stale")
    args = parser.parse_args(argv)
    for svc in SERVICES:
        source = consumers_of(svc)[1]
        if source == "declared":
            print(f"note: {svc} not importable; using DECLARED_CONSUMERS", file=sys.stderr)
    stale = []
    for rel, text in outputs().items():
        path = DEPLOY / rel
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.endswith(".sh"):
            path.chmod(0o755)
    if stale:
        print("stale (run deploy/generate.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
