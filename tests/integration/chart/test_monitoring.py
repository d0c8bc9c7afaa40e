"""The chart's dashboard, monitors and alerts without a cluster: all off by default; on, a
dashboard ConfigMap for Grafana's sidecar, monitors that find the gateways, the operator, the
dispatchers and the function pods and keep their metrics' own labels, and alerts that promtool
accepts.
tests/integration/monitoring/ runs every expression against a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from integration.chart.test_render import CHART, find, helm, render
from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import function_labels
from kubelambda.controller.metrics import OperatorMetrics
from kubelambda.gateway.activation import FunctionLoad
from kubelambda.gateway.metrics import GatewayMetrics
from kubelambda_runtime.server import metrics as runtime_metrics

DASHBOARD = CHART / "dashboards" / "kubelambda.json"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
FUNCTION_ALERTS = {
    "KubelambdaGatewayErrors": "gatewayErrors",
    "KubelambdaFunctionErrors": "functionErrors",
    "KubelambdaThrottles": "throttles",
    "KubelambdaSlowColdStarts": "coldStartP95",
    "KubelambdaAsyncEventsWaiting": "asyncEventAge",
}
# On the operator's own metrics: per namespace and kind (function, trigger).
OPERATOR_ALERTS = {"KubelambdaReconcileFailures": "reconcileFailures"}
ALERTS = {**FUNCTION_ALERTS, **OPERATOR_ALERTS}
ALL_ON = (
    "monitoring.dashboard.enabled=true",
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.rules.enabled=true",
)


def dashboard_panels() -> list[dict[str, Any]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in panels if p["type"] != "row"]


def rule_groups(*values: str) -> dict[str, Any]:
    rule = find(render("monitoring.rules.enabled=true", *values), "PrometheusRule", "kubelambda")
    return dict(rule["spec"])


def promtool_check(groups: dict[str, Any], tmp_path: Path) -> str:
    promtool = shutil.which("promtool")
    assert promtool, (
        "promtool is missing: it comes with Debian's prometheus (apt-get install prometheus)"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(groups))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"promtool check rules:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_monitoring_is_off_by_default() -> None:
    docs = render()
    assert not [d for d in docs if d["kind"] in MONITORING_KINDS]
    assert not [d for d in docs if "grafana_dashboard" in d["metadata"].get("labels", {})]


def test_lint_is_clean_with_everything_on() -> None:
    out = helm("lint", "--strict", str(CHART), *[a for v in ALL_ON for a in ("--set", v)])
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


def test_the_dashboard_is_a_configmap_for_grafanas_sidecar() -> None:
    [configmap] = [
        d
        for d in render("monitoring.dashboard.enabled=true")
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kubelambda-dashboard"
    ]
    assert configmap["metadata"]["namespace"] == "kubelambda"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["kubelambda.json"]) == json.loads(DASHBOARD.read_text())


def test_the_dashboards_label_namespace_and_folder_follow_the_values() -> None:
    configmap = find(
        render(
            "monitoring.dashboard.enabled=true",
            "monitoring.dashboard.labels.grafana_dashboard=null",
            "monitoring.dashboard.labels.team-dashboards=yes",
            "monitoring.dashboard.namespace=monitoring",
            "monitoring.dashboard.annotations.grafana_folder=Serverless",
        ),
        "ConfigMap",
        "kubelambda-dashboard",
    )
    metadata = configmap["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["team-dashboards"] == "yes"
    assert "grafana_dashboard" not in metadata["labels"]
    assert metadata["annotations"] == {"grafana_folder": "Serverless"}


def test_every_dashboard_panel_queries_the_chosen_functions() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["query"].startswith("label_values(")
    assert '{namespace="$namespace"}' in variables["function"]["query"]
    panels = dashboard_panels()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert len(panels) >= 12
    for panel in panels:
        targets = panel["targets"]
        assert targets, f"panel {panel['title']!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in targets:
            expr = target["expr"]
            assert 'namespace="$namespace"' in expr, (panel["title"], expr)
            assert 'function=~"$function"' in expr, (panel["title"], expr)


def exported_metric_names() -> set[str]:
    """The series names the components expose, from their own code: the gateway's, the
    runtime's and the operator's collectors with one of everything counted, and the
    dispatcher's gauges."""
    key = FunctionKey("default", "api")
    load = FunctionLoad(
        in_flight=1,
        queued=1,
        ready_instances=1,
        capacity=1,
        requests_total=1,
        last_request_at=None,
    )
    gateway = GatewayMetrics(load=lambda: {key: load})
    gateway.request(key, 200, 0.1)
    gateway.cold_start(key, 0.5)
    stats = runtime_metrics.RuntimeStats(namespace="default", function="api")
    stats.count("success", 0.1)
    from kubelambda.commands.dispatcher import BACKLOG, OLDEST_AGE

    BACKLOG.labels("default", "api").set(1)
    OLDEST_AGE.labels("default", "api").set(1)
    operator = OperatorMetrics()
    operator.reconciled(kind="Function", namespace="default", outcome="error", seconds=0.1)
    operator.state(kind="Function", namespace="default", name="api", body={})
    operator.ticked(0.01)
    operator.scaled(key, current=0, desired=1)
    text = b"".join(
        (
            gateway.render(),
            runtime_metrics.render(stats)[0],
            generate_latest(REGISTRY),
            operator.exposition(),
        )
    ).decode()
    return set(re.findall(r"^(kubelambda_\w+)", text, flags=re.MULTILINE))


def test_the_dashboard_and_the_rules_name_only_metrics_the_components_export() -> None:
    exported = exported_metric_names()
    exprs = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    exprs += [r["expr"] for g in rule_groups()["groups"] for r in g["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\bkubelambda_\w+", expr)}
    assert used, "no kubelambda metric in the dashboard or the rules"
    assert used <= exported, f"not exported by any component: {sorted(used - exported)}"


def test_the_service_monitor_scrapes_the_gateways_admin_service_keeping_function_labels() -> None:
    docs = render("monitoring.serviceMonitor.enabled=true", "monitoring.labels.release=kps")
    monitor = find(docs, "ServiceMonitor", "kubelambda-gateway")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        d
        for d in docs
        if d["kind"] == "Service" and selector.items() <= d["metadata"]["labels"].items()
    ]
    [endpoint] = monitor["spec"]["endpoints"]
    serving = [s for s in services if endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}]
    assert [s["metadata"]["name"] for s in serving] == ["kubelambda-gateway-admin"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kubelambda"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "5s"
    # The metrics' namespace is the function's: without honorLabels Prometheus would rename it
    # exported_namespace and put the gateway pod's there.
    assert endpoint["honorLabels"] is True


def test_the_operator_is_annotated_and_its_service_monitored_keeping_object_labels() -> None:
    docs = render("monitoring.serviceMonitor.enabled=true", "monitoring.labels.release=kps")
    monitor = find(docs, "ServiceMonitor", "kubelambda-operator")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    service = find(docs, "Service", "kubelambda-operator")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    pod = find(docs, "Deployment", "kubelambda-operator")["spec"]["template"]
    [container] = pod["spec"]["containers"]
    [served] = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert f"--metrics-port={served['containerPort']}" in container["args"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(served["containerPort"]),
        "prometheus.io/path": "/metrics",
    }
    # The reconciles' namespace is the Function's or Trigger's, not the operator pod's.
    assert (endpoint["path"], endpoint["interval"], endpoint["honorLabels"]) == (
        "/metrics",
        "30s",
        True,
    )
    docs = render(
        "monitoring.serviceMonitor.enabled=true", "monitoring.serviceMonitor.operator.enabled=false"
    )
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceMonitor"} == {
        "kubelambda-gateway"
    }


def test_pod_monitors_scrape_the_dispatchers_and_the_function_pods() -> None:
    docs = render("monitoring.podMonitor.enabled=true", "monitoring.labels.release=kps")
    dispatchers = find(docs, "PodMonitor", "kubelambda-dispatcher")
    pod = find(docs, "Deployment", "kubelambda-dispatcher")["spec"]["template"]
    assert (
        dispatchers["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    [endpoint] = dispatchers["spec"]["podMetricsEndpoints"]
    [container] = pod["spec"]["containers"]
    assert endpoint["port"] in {p["name"] for p in container["ports"]}
    assert endpoint["honorLabels"] is True
    functions = find(docs, "PodMonitor", "kubelambda-functions")
    assert functions["spec"]["selector"]["matchLabels"].items() <= function_labels("any").items()
    assert functions["spec"]["namespaceSelector"] == {"any": True}
    [endpoint] = functions["spec"]["podMetricsEndpoints"]
    # The port the operator names on function pods (controller/resources/deployment.py).
    assert (endpoint["port"], endpoint["interval"], endpoint["honorLabels"]) == (
        "metrics",
        "30s",
        True,
    )
    for monitor in (dispatchers, functions):
        assert monitor["metadata"]["labels"]["release"] == "kps"


def test_pod_monitors_follow_the_broker_and_the_function_namespaces() -> None:
    docs = render(
        "monitoring.podMonitor.enabled=true",
        "nats.install=false",
        "functionNamespaces={team-a,team-b}",
    )
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "PodMonitor"}
    assert names == {"kubelambda-functions"}, "no broker, no dispatchers to scrape"
    functions = find(docs, "PodMonitor", "kubelambda-functions")
    assert functions["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    docs = render(
        "monitoring.podMonitor.enabled=true", "monitoring.podMonitor.functions.enabled=false"
    )
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "PodMonitor"} == {
        "kubelambda-dispatcher"
    }


def test_each_alert_is_per_function_with_its_threshold_for_and_severity_from_values() -> None:
    values = [
        f"monitoring.rules.{key}.{field}={value}"
        for key in ALERTS.values()
        for field, value in (("threshold", "0.25"), ("for", "7m"), ("severity", "page"))
    ]
    spec = rule_groups("monitoring.labels.release=kps", *values)
    [group] = spec["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert set(rules) == set(ALERTS)
    for name, rule in rules.items():
        per_function = name in FUNCTION_ALERTS
        assert rule["expr"].rstrip().endswith("> 0.25"), (name, rule["expr"])
        by = "by (namespace, function" if per_function else "by (namespace, kind)"
        assert by in rule["expr"], name
        assert rule["for"] == "7m", name
        assert rule["labels"] == {"severity": "page"}, name
        where = (
            "{{ $labels.namespace }}/{{ $labels.function }}"
            if per_function
            else "{{ $labels.kind }}s in namespace {{ $labels.namespace }}"
        )
        for text in (rule["annotations"]["summary"], rule["annotations"]["description"]):
            assert where in text, (name, text)
        assert "0.25" in rule["annotations"]["description"], name


def test_the_default_thresholds() -> None:
    rules = {r["alert"]: r for g in rule_groups()["groups"] for r in g["rules"]}
    thresholds = {name: float(rule["expr"].rsplit(">", 1)[1]) for name, rule in rules.items()}
    assert thresholds == {
        "KubelambdaGatewayErrors": 0.05,
        "KubelambdaFunctionErrors": 0.05,
        "KubelambdaThrottles": 0.01,
        "KubelambdaSlowColdStarts": 5.0,
        "KubelambdaAsyncEventsWaiting": 300.0,
        "KubelambdaReconcileFailures": 0.0,
    }
    # A failing object is retried at least every 5 minutes: 15 minutes is three failures.
    assert {name: rule["for"] for name, rule in rules.items()} == {
        **dict.fromkeys(FUNCTION_ALERTS, "5m"),
        "KubelambdaReconcileFailures": "15m",
    }


@pytest.mark.parametrize("values", [(), ("monitoring.rules.throttles.threshold=0",)])
def test_promtool_accepts_the_rules(values: tuple[str, ...], tmp_path: Path) -> None:
    out = promtool_check(rule_groups(*values), tmp_path)
    assert f"SUCCESS: {len(ALERTS)} rules found" in out
