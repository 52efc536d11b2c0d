"""The Grafana dashboard and the alert rules only use metrics the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from services.monitor.metrics import MonitorMetrics
from services.scorer.metrics import ScorerMetrics

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "fraudstream-monitor.json"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bfraudstream_[a-z0-9_]+")


def exported() -> set[str]:
    names: set[str] = set()
    suffixes_of = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    registries = (MonitorMetrics(CollectorRegistry()).registry, ScorerMetrics(CollectorRegistry()).registry)
    for registry in registries:
        for family in registry.collect():
            suffixes = suffixes_of.get(family.type, ("",))
            names |= {family.name + s for s in suffixes}
    return names


def test_dashboard_uses_only_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    uid = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]["uid"]
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    assert {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p} == {uid}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used - exported() == set()
    monitor = {n for n in exported() if n.startswith("fraudstream_monitor_")}
    # Every monitor metric is on the dashboard (histogram parts count once).
    shown = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert {re.sub(r"_(bucket|sum|count)$", "", m) for m in monitor} - shown <= {
        "fraudstream_monitor_agent_heartbeat_timestamp_seconds",
        "fraudstream_monitor_champion_info",
    }


def test_alert_rules_use_only_exported_metrics() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used and used - exported() == set()
