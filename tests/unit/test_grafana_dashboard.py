"""deploy/grafana-dashboard.json: a dashboard Grafana can import (its panels laid out without
overlap, each with a Prometheus query), querying only metrics and labels that the API and the
workers export, and shipped by the kustomization as a ConfigMap for Grafana's sidecar."""
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
# Where the metrics are declared: the API's, the use cases', the workers'.
SOURCES = ("web/metrics.py", "observability/metrics.py", "tasks/telemetry.py")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported() -> dict[str, set[str]]:
    """metric name -> its labels, read from the declarations (Counter/Histogram/GaugeMetricFamily)."""
    metrics: dict[str, set[str]] = {}
    for source in SOURCES:
        text = (ROOT / source).read_text()
        for match in re.finditer(r'(Counter|Histogram|GaugeMetricFamily)\(\s*"(boxoffice_\w+)"(.*?)\)\n', text, re.S):
            kind, name, rest = match.groups()
            listed = re.search(r"\[([^\]]*)\]", rest)  # the label names: the declaration's one list
            labels = set(re.findall(r'"(\w+)"', listed.group(1))) if listed else set()
            metrics[name] = labels
            if kind == "Histogram":
                for suffix in HISTOGRAM_SUFFIXES:
                    metrics[name + suffix] = labels | {"le"}
    return metrics


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def test_the_declarations_are_read():
    metrics = exported()
    assert metrics["boxoffice_http_requests_total"] == {"endpoint", "method", "status"}
    assert metrics["boxoffice_show_remaining_seats"] == {"show_id"}
    assert "le" in metrics["boxoffice_task_duration_seconds_bucket"]


def test_the_dashboard_has_the_shape_grafana_imports():
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    cells = set()
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "stat"} and panel["title"] and panel["targets"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['title']} overlaps another"
                cells.add((x, y))
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])


def test_every_query_uses_exported_metrics_and_their_labels():
    metrics = exported()
    for expr in expressions():
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        names = set(re.findall(r"\bboxoffice_\w+", expr))
        assert names, expr
        for name in names:
            assert name in metrics, f"{name} is not exported ({expr})"
        for selector_metric, selector in re.findall(r"(boxoffice_\w+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", selector):
                assert label in metrics[selector_metric], f"{selector_metric} has no label {label}"
        for grouped in re.findall(r"by \(([^)]*)\)", expr):
            labels = set().union(*(metrics[name] for name in names))
            for label in (part.strip() for part in grouped.split(",")):
                assert label in labels, f"grouping by {label}, which {names} do not have"


def test_the_dashboard_shows_what_the_on_sale_page_shows():
    joined = "\n".join(expressions())
    for needed in ('endpoint="/bookings"', "boxoffice_show_remaining_seats", 'status="CONFIRMED"',
                   'status="PAYMENT_FAILED"', "boxoffice_queue_joins_written_total", "boxoffice_consistency_violations"):
        assert needed in joined, needed


def test_the_kustomization_ships_it_as_a_configmap_for_grafanas_sidecar():
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    generated = {each["name"]: each for each in kustomization["configMapGenerator"]}
    entry = generated["boxoffice-grafana-dashboard"]
    assert entry["files"] == ["grafana-dashboard.json"]
    assert entry["options"]["labels"] == {"grafana_dashboard": "1"}
