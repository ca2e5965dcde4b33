"""deploy/ matches what `samtal-deploy generate` makes from the registry and the services."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.registry import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_generated_files_are_up_to_date(generate) -> None:
    stale = [
        rel
        for rel, text in generate.outputs().items()
        if not (DEPLOY / rel).exists() or (DEPLOY / rel).read_text() != text
    ]
    assert not stale, f"stale: {stale}; run `samtal-deploy generate` (make docs)"


def test_topics_json_lists_every_registry_topic_as_specified(generate) -> None:
    topics = {t["name"]: t for t in json.loads((DEPLOY / "topics.json").read_text())["topics"]}
    for spec in REGISTRY.specs:
        t = topics[spec.topic]
        assert t["partitions"] == spec.partitions, spec.topic
        assert t["compacted"] == spec.compacted, spec.topic
        assert (t["config"].get("cleanup.policy") == "compact") == spec.compacted, spec.topic
        assert t["key_field"] == spec.key_field
    for svc in generate.SERVICES:
        assert generate.dead_letter_topic(svc) in topics


def test_every_consumed_topic_exists(generate) -> None:
    topics = {t["name"]: t for t in json.loads((DEPLOY / "topics.json").read_text())["topics"]}
    for svc, consumers in generate.all_consumers().items():
        assert consumers, f"{svc} consumes nothing?"
        for c in consumers:
            assert c.topic in topics, (svc, c.topic)
            assert c.group in topics[c.topic]["consumer_groups"]


def test_topic_script_creates_each_topic_with_its_partitions_and_policy() -> None:
    script = (DEPLOY / "kafka" / "create-topics.sh").read_text()
    for spec in REGISTRY.specs:
        line = next(ln for ln in script.splitlines() if f"--topic {spec.topic} " in ln)
        assert f"--partitions {spec.partitions}" in line
        assert ("cleanup.policy=compact" in line) == spec.compacted
    assert "--if-not-exists" in script


def test_notifications_knows_where_crisis_alerts_and_mail_go() -> None:
    """Without an on-call roster a crisis alert reaches no clinician: every deployment names one."""
    import yaml

    root = Path(__file__).resolve().parents[2] / "deploy"
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    for process in ("notifications-api", "notifications-worker"):
        env = compose["services"][process]["environment"]
        assert json.loads(env["SAMTAL_NOTIFICATIONS_ON_CALL_CLINICIANS"])
        assert env["SAMTAL_NOTIFICATIONS_SMTP_HOST"] == "mail"
    assert "mail" in compose["services"]
    documents = [
        d
        for d in yaml.safe_load_all(
            (root / "k8s" / "base" / "notifications" / "config.yaml").read_text()
        )
        if d and d.get("kind") == "ConfigMap"
    ]
    data = documents[0]["data"]
    assert json.loads(data["SAMTAL_NOTIFICATIONS_ON_CALL_CLINICIANS"])
    assert data["SAMTAL_NOTIFICATIONS_SMTP_HOST"]
