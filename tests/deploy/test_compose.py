"""deploy/compose.yaml against the Compose Specification's JSON Schema, and its wiring.

The schema is the one `check-jsonschema` vendors (builtin `vendor.compose-spec`, from
github.com/compose-spec/compose-spec, Apache-2.0), kept current by its releases."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="PyPI `jsonschema` is missing")
    cj = pytest.importorskip(
        "check_jsonschema", reason="PyPI `check-jsonschema` ships the compose-spec schema"
    )
    path = Path(cj.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def compose(yaml_module) -> dict[str, Any]:
    return yaml_module.safe_load((DEPLOY / "compose.yaml").read_text())


def errors(validator, doc) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_compose_file_follows_the_compose_spec(validator, compose) -> None:
    assert errors(validator, compose) == []


@pytest.mark.parametrize("breakage", ["unknown-key", "bad-condition", "ports-type"])
def test_a_broken_compose_file_is_rejected(validator, compose, breakage) -> None:
    broken = copy.deepcopy(compose)
    api = broken["services"]["booking-api"]
    if breakage == "unknown-key":
        api["restart_policy"] = "always"
    elif breakage == "bad-condition":
        api["depends_on"]["booking-migrate"]["condition"] = "service_finished"
    else:
        broken["services"]["gateway"]["ports"] = "8080:8080"
    assert errors(validator, broken)


def test_start_order_and_health(compose) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
    for s in ("catalog", "matching", "booking", "notifications"):
        for proc in ("api", "worker"):
            svc = services[f"{s}-{proc}"]
            assert svc["command"] == [proc]
            assert (
                svc["depends_on"][f"{s}-migrate"]["condition"] == "service_completed_successfully"
            )
            assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
            assert "healthcheck" in svc
            env = svc["environment"]
            assert env[f"SAMTAL_{s.upper()}_KAFKA_IDEMPOTENCE"] == "true"
            assert env[f"SAMTAL_{s.upper()}_HTTP_HOST"] == "0.0.0.0"
        assert services[f"{s}-migrate"]["command"] == ["migrate"]
        assert services["gateway"]["depends_on"][f"{s}-api"]["condition"] == "service_healthy"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft


def test_local_files_compose_mounts_are_what_render_writes(compose, render, tmp_path) -> None:
    render.write_local(tmp_path)
    mounted = [v.split(":")[0] for v in compose["services"]["gateway"]["volumes"]]
    assert mounted == ["./.local/envoy.yaml"]
    assert (tmp_path / "envoy.yaml").exists() and (tmp_path / "samtal.env").exists()
    env_lines = (tmp_path / "samtal.env").read_text().splitlines()
    assert len(env_lines) == 4 and all("_JWT_PUBLIC_KEYS=[" in ln for ln in env_lines)
    config = json.loads((tmp_path / "envoy.yaml").read_text())
    clusters = config["static_resources"]["clusters"]
    for c in clusters:
        host = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert host["socket_address"]["address"] in compose["services"]
