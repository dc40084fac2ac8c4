"""The Grafana dashboards in configs/monitoring/grafana/ against the code that exports the series:
every ray_fairfleet_* name a query reads is exported (by actors/round_metrics.py or
serve/metrics.py, as Ray renames them), every exported series is on a dashboard, every variable a
query uses is defined, and the JSON is a dashboard Grafana imports (datasource variable, unique
ids, panels inside the 24-column grid without overlaps). tests/e2e/test_prometheus_dashboard.py
runs the queries against a real Prometheus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cluster.fl.families import families

from tests.conftest import REPO_ROOT

GRAFANA = REPO_ROOT / "configs" / "monitoring" / "grafana"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
EXPORTERS = (REPO_ROOT / "actors" / "round_metrics.py", REPO_ROOT / "serve" / "metrics.py")
DECLARED = re.compile(r'\b(Gauge|Counter|Histogram)\(\s*"(fairfleet_\w+)"')


def exported_series() -> dict[str, str]:
    """Prometheus name → the name in the code. Ray prefixes ray_, a counter gets _total (once),
    a histogram _bucket, _sum and _count."""
    series = {}
    for path in EXPORTERS:
        for kind, name in DECLARED.findall(path.read_text()):
            if kind == "Gauge":
                series[f"ray_{name}"] = name
            elif kind == "Counter":
                series[f"ray_{name}" if name.endswith("_total") else f"ray_{name}_total"] = name
            else:
                for suffix in ("_bucket", "_sum", "_count"):
                    series[f"ray_{name}{suffix}"] = name
    # A quality gauge per measure a model family reports (RoundMetrics' fairfleet_<metric>).
    for family in families():
        for metric in family.metric_names:
            series[f"ray_fairfleet_{metric}"] = f"fairfleet_{metric}"
    return series


def board(path: Path) -> dict:
    return json.loads(path.read_text())


def queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_there_is_a_dashboard_for_fl_runs_and_one_for_the_retriever():
    uids = {board(p)["uid"] for p in DASHBOARDS}
    assert uids == {"fairfleet-fl", "fairfleet-retriever"}


def test_every_query_reads_an_exported_series_and_every_series_is_shown():
    series = exported_series()
    assert len(set(series.values())) >= 25, sorted(series)
    used = set()
    for path in DASHBOARDS:
        for expr in queries(board(path)):
            for name in re.findall(r"\bray_fairfleet_\w+", expr):
                assert name in series, f"{path.name}: {name} is not exported by {[p.name for p in EXPORTERS]}"
                used.add(series[name])
    assert sorted(set(series.values()) - used) == [], "exported but on no dashboard"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_is_importable(path):
    dashboard = board(path)
    assert dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids, cells = set(), set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids, panel["title"]
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["description"], f"{panel['title']}: say what the panel shows"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable.startswith("__") or variable in variables, (panel["title"], variable)
    for variable in variables.values():
        if variable["type"] == "query":
            assert re.fullmatch(r"label_values\(\w+,\s*\w+\)", variable["query"]["query"])
            assert variable["datasource"]["uid"] == "${datasource}"
