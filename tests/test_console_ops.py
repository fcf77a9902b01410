"""The operations kit in deploy/: the Prometheus alert rules (the structure promtool expects) and the
Grafana dashboard, and every metric either names exists on a running service's /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from console_fixtures import Service, console_config

DEPLOY = Path(__file__).parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "frontdesk-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "frontdesk-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "frontdesk-dashboard.json"
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC = re.compile(r"\bfrontdesk_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def exposed(saved_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """The sample names a real service exposes on /metrics (counters as *_total, histograms as
    *_bucket/_sum/_count), after routing a few messages."""
    tmp = tmp_path_factory.mktemp("ops")
    svc = Service(console_config(tmp / "frontdesk.yaml", saved_model, f"sqlite:///{tmp / 's.db'}",
                                 gates={"linear": {"threshold": 0.999999}}))
    try:
        svc.route(["where is my parcel", "I want a refund", "lawyer!!"])
        with svc.api() as c:
            text = c.get("/metrics").text
    finally:
        svc.stop()
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",), "summary": ("_sum", "_count", "_created")}
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    yield names


def rule_file_errors(data: Any) -> list[str]:
    """What ``promtool check rules`` would reject in the structure of a rule file (PromQL itself is
    checked by promtool when installed, see below)."""
    errors: list[str] = []
    if not isinstance(data, dict) or set(data) != {"groups"} or not isinstance(data["groups"], list):
        return ["the file must be a mapping with exactly one key, 'groups', holding a list"]
    seen: set[str] = set()
    for g in data["groups"]:
        if not isinstance(g, dict) or not isinstance(g.get("name"), str) or not g["name"]:
            errors.append(f"group without a name: {g!r:.80}")
            continue
        where = f"group {g['name']}"
        if g["name"] in seen:
            errors.append(f"{where}: duplicate group name")
        seen.add(g["name"])
        errors += [f"{where}: unknown key {k!r}" for k in set(g) - {"name", "interval", "rules", "limit", "query_offset"}]
        if "interval" in g and not DURATION.match(str(g["interval"])):
            errors.append(f"{where}: bad interval {g['interval']!r}")
        for i, r in enumerate(g.get("rules") or []):
            at = f"{where} rule {i}"
            kinds = [k for k in ("alert", "record") if k in r]
            if len(kinds) != 1:
                errors.append(f"{at}: exactly one of 'alert' or 'record' is required")
                continue
            allowed = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"} if kinds == ["alert"] \
                else {"record", "expr", "labels"}
            errors += [f"{at}: key {k!r} not allowed" for k in set(r) - allowed]
            if not NAME.match(str(r[kinds[0]])) and kinds == ["alert"]:
                errors.append(f"{at}: bad alert name {r['alert']!r}")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                errors.append(f"{at}: expr must be a non-empty string")
            elif r["expr"].count("(") != r["expr"].count(")") or r["expr"].count("[") != r["expr"].count("]"):
                errors.append(f"{at}: unbalanced brackets in expr")
            for key in ("for", "keep_firing_for"):
                if key in r and not DURATION.match(str(r[key])):
                    errors.append(f"{at}: bad duration {key}={r[key]!r}")
            for key in ("labels", "annotations"):
                block = r.get(key, {})
                if not isinstance(block, dict) or not all(isinstance(k, str) and NAME.match(k) and isinstance(v, str)
                                                          for k, v in block.items()):
                    errors.append(f"{at}: {key} must map label names to strings")
                for k, v in (block.items() if isinstance(block, dict) else []):
                    if isinstance(v, str) and v.count("{{") != v.count("}}"):
                        errors.append(f"{at}: unbalanced template in {key}.{k}")
    return errors


def test_alert_rules_have_the_structure_promtool_expects() -> None:
    data = yaml.safe_load(RULES.read_text())
    assert rule_file_errors(data) == []
    alerts = {r["alert"] for g in data["groups"] for r in g["rules"]}
    # what issue #12 asks the kit to alert on
    assert {"FrontdeskDriftAlertFiring", "FrontdeskUnknownRateHigh", "FrontdeskEscalationRateHigh", "FrontdeskLLMErrors",
            "FrontdeskLLMCostDaily", "FrontdeskReviewQueueStale"} <= alerts
    assert all(r["labels"].get("severity") in ("info", "warning", "critical") and r["annotations"].get("summary")
               for g in data["groups"] for r in g["rules"])


def test_the_structure_check_catches_broken_files() -> None:
    """The checker above is no rubber stamp."""
    assert rule_file_errors({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": "5 minutes"}]}]})
    assert rule_file_errors({"groups": [{"name": "g", "rules": [{"alert": "A", "record": "b", "expr": "up"}]}]})
    assert rule_file_errors({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(up"}]}]})
    assert rule_file_errors({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "labels": {"a-b": "x"}}]}]})
    assert rule_file_errors({"rules": []})


def test_every_metric_in_the_rules_and_the_dashboard_exists(exposed: set[str]) -> None:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    named = {m for e in exprs for m in METRIC.findall(e)}
    assert all(METRIC.search(e) for e in exprs), [e for e in exprs if not METRIC.search(e)]
    assert named - exposed == set(), f"not on /metrics: {sorted(named - exposed)}"
    assert {"frontdesk_review_queue_oldest_age_seconds", "frontdesk_llm_errors_total", "frontdesk_llm_cost_usd_total",
            "frontdesk_drift_alerts_active"} <= named


def test_grafana_dashboard_is_well_formed() -> None:
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["title"] == "frontdesk" and isinstance(d["schemaVersion"], int)
    assert any(v["type"] == "datasource" and v["name"] == "DS_PROMETHEUS" for v in d["templating"]["list"])
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"panel {p['title']!r} overlaps another"
        cells |= area
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"].count("(") == t["expr"].count(")") for t in p["targets"])
    titles = " ".join(p["title"] for p in d["panels"]).lower()
    for topic in ("traffic per tier", "escalation", "unknown", "confidence", "llm cost", "review queue", "drift"):
        assert topic in titles, topic


def test_promtool_accepts_and_unit_tests_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus): the structure and metric checks "
                    "above still ran; this test adds promtool's own PromQL parsing and the alert unit tests")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, unit.stdout + unit.stderr
