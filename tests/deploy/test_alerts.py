"""deploy/prometheus/alerts.yaml: a well-formed Prometheus rule file whose samtal_*
metrics are ones the code exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


@pytest.fixture(scope="module")
def rules(yaml_module) -> list[dict[str, Any]]:
    doc = yaml_module.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names))
    return [r for g in doc["groups"] for r in g["rules"]]


def check_rule(rule: dict[str, Any]) -> list[str]:
    problems = []
    if set(rule) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}:
        problems.append(f"unknown keys {set(rule)}")
    if not isinstance(rule.get("alert"), str) or not rule["alert"]:
        problems.append("no alert name")
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append("no expr")
    else:
        for a, b in ("()", "[]", "{}"):
            if expr.count(a) != expr.count(b):
                problems.append(f"unbalanced {a}{b} in expr")
    if "for" in rule and not DURATION.match(str(rule["for"])):
        problems.append(f"bad duration {rule['for']!r}")
    if rule.get("labels", {}).get("severity") not in {"page", "warning", "info"}:
        problems.append("severity must be page, warning or info")
    annotations = rule.get("annotations", {})
    if not annotations.get("summary") or not annotations.get("description"):
        problems.append("summary and description are required")
    if not all(
        isinstance(v, str) for v in (*rule.get("labels", {}).values(), *annotations.values())
    ):
        problems.append("labels and annotations are strings")
    return problems


def test_every_rule_is_well_formed(rules) -> None:
    bad = {r.get("alert"): p for r in rules if (p := check_rule(r))}
    assert not bad, bad
    alerts = [r["alert"] for r in rules]
    assert len(alerts) == len(set(alerts))


def test_a_malformed_rule_is_caught() -> None:
    assert check_rule(
        {
            "alert": "X",
            "expr": "sum(rate(x[5m])",
            "for": "5 minutes",
            "labels": {"severity": "loud"},
        }
    )


def test_the_alerts_that_matter_are_there(rules) -> None:
    text = " ".join(r["expr"] for r in rules)
    for metric in (
        "kafka_consumergroup_lag",
        "samtal_outbox_pending",
        "samtal_outbox_oldest_seconds",
        "samtal_dead_letters_total",
        "samtal_intakes_awaiting_triage_oldest_seconds",
        "samtal_rights_requests_overdue",
    ):
        assert metric in text, metric


def _exported() -> str:
    sources = [*ROOT.glob("chassis/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    return "\n".join(p.read_text() for p in sources)


def test_samtal_metrics_in_alerts_are_exported_by_the_code(rules) -> None:
    code = _exported()
    used = {m for r in rules for m in re.findall(r"samtal_[a-z_]+", r["expr"])}
    base = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    missing = {m for m in base if f'"{m}"' not in code}
    assert not missing, missing
