"""The operator's own metrics, from a real operator against the harness's API server: /metrics
counts reconciles by outcome (ok, invalid spec, error), and a real Prometheus scraping it finds
series for the chart's KubelambdaReconcileFailures rule, rendered by Helm.

Errors come from a ValidatingAdmissionPolicy that refuses status writes of Functions in one
namespace: the operator applies their objects, then cannot record the status, so each reconcile
raises and is retried with backoff, as when the API server refuses or fails a write.
"""

from __future__ import annotations

import json
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.apiserver import ApiServer, api_server
from harness.prometheus import prometheus
from integration.chart.test_render import find, render
from integration.controller.operating import OperatorProcess, wait_condition
from integration.monitoring.test_promql import Scraped
from support.waiting import GiveUp, free_port, wait_for

CRDS = Path(__file__).resolve().parents[3] / "crds"
REFUSING = "kubelambda.dev/test-refuse-status"
POLICY = f"""
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: refuse-function-status}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [kubelambda.dev]
        apiVersions: ["*"]
        operations: [UPDATE]
        resources: [functions/status]
  validations:
    - expression: "false"
      message: this test refuses status writes of Functions here
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: refuse-function-status}}
spec:
  policyName: refuse-function-status
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{{REFUSING}: "true"}}
"""
FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata:
  name: {name}
  annotations: {annotations}
spec:
  runtime: python3.12
  handler: app.handler
  code: {{inline: {{files: {{app.py: "def handler(event, context):\\n    return 1\\n"}}}}}}
"""


def function(name: str, **annotations: str) -> str:
    return textwrap.dedent(FUNCTION.format(name=name, annotations=json.dumps(annotations)))


@dataclass
class Watched:
    api: ApiServer
    operator: OperatorProcess
    metrics_url: str
    scraped: Scraped
    fine: str  # a namespace with a valid and an invalid Function
    refusing: str  # a namespace where Functions' status writes are refused

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The samples of ``name`` the operator serves now, by their labels."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as answer:
            text = answer.read().decode()
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }


def reconciles(watched: Watched, namespace: str, outcome: str) -> float:
    labels = (("kind", "function"), ("namespace", namespace), ("outcome", outcome))
    return watched.samples("kubelambda_operator_reconciles_total").get(labels, 0.0)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    with ExitStack() as stack:
        # No controller-manager: the Functions' pods and Deployment status do not matter here.
        api = stack.enter_context(api_server(log_dir=tmp_path_factory.mktemp("apiserver-logs")))
        api.kubectl("apply", "--server-side", "-f", str(CRDS))
        api.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/functions.kubelambda.dev",
            "crd/triggers.kubelambda.dev",
        )
        api.kubectl("apply", "-f", "-", input=POLICY)
        fine, refusing = (f"m-{uuid.uuid4().hex[:8]}" for _ in range(2))
        api.kubectl("create", "namespace", fine)
        api.kubectl("create", "namespace", refusing)
        api.kubectl("label", "namespace", refusing, f"{REFUSING}=true")
        port = free_port()
        prom = stack.enter_context(prometheus([f"127.0.0.1:{port}"], scrape_seconds=1.0))
        # With --prometheus-url the process runs the autoscaler too, whose ticks are counted.
        operator = OperatorProcess(
            api,
            tmp_path_factory.mktemp("operator"),
            f"--metrics-port={port}",
            f"--prometheus-url={prom.url}",
            f"--autoscaler-port={free_port()}",
        )
        operator.start()
        stack.callback(operator.stop)
        wait_for(
            lambda: serving(operator, f"http://127.0.0.1:{port}/metrics"),
            timeout=60,
            what="the operator to serve /metrics",
        )
        prom.wait_until_scraped(timeout=60)
        watched = Watched(
            api=api,
            operator=operator,
            metrics_url=f"http://127.0.0.1:{port}/metrics",
            scraped=Scraped(prom.url),
            fine=fine,
            refusing=refusing,
        )
        # Prometheus has seen the operator before any reconcile, so rate() sees them all.
        api.kubectl("apply", "-n", fine, "-f", "-", input=function("good"))
        api.kubectl(
            "apply",
            "-n",
            fine,
            "-f",
            "-",
            input=function("bad", **{"kubelambda.dev/function-name": "not a lambda name!"}),
        )
        api.kubectl("apply", "-n", refusing, "-f", "-", input=function("stuck"))
        wait_condition(api, "function", "bad", fine, reason="InvalidSpec")
        yield watched


def serving(operator: OperatorProcess, url: str) -> bool:
    if operator.process is not None and operator.process.poll() is not None:
        raise GiveUp(f"the operator exited:\n{operator.tail()}")
    with urllib.request.urlopen(url, timeout=2) as answer:
        return bool(answer.status == 200)


def test_metrics_count_reconciles_by_outcome(watched: Watched) -> None:
    wait_for(
        lambda: (
            reconciles(watched, watched.fine, "ok") >= 1
            and reconciles(watched, watched.fine, "invalid") >= 1
            and reconciles(watched, watched.refusing, "error") >= 2
        ),
        timeout=60,
        what="ok and invalid reconciles in one namespace, failed ones in the other",
    )
    assert reconciles(watched, watched.fine, "error") == 0
    assert reconciles(watched, watched.refusing, "ok") == 0
    retrying = watched.samples("kubelambda_operator_retrying_objects")
    assert retrying[(("kind", "function"),)] == 1, retrying
    objects = watched.samples("kubelambda_operator_objects")
    assert objects[(("kind", "function"), ("namespace", watched.fine), ("ready", "false"))] >= 1
    assert "this test refuses status writes" in watched.operator.output()
    ticks = watched.samples("kubelambda_autoscaler_tick_duration_seconds_count")
    assert ticks[()] >= 1, ticks


def test_the_reconcile_failures_alert_holds_for_the_failing_namespace_only(
    watched: Watched,
) -> None:
    rule = find(render("monitoring.rules.enabled=true"), "PrometheusRule", "kubelambda")
    alerts = [
        r
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if r["alert"] == "KubelambdaReconcileFailures"
    ]
    assert len(alerts) == 1, "the chart's PrometheusRule has no KubelambdaReconcileFailures rule"
    [alert] = alerts
    series = watched.scraped.wait_for_series(alert["expr"], timeout=60)
    labels = {(s["metric"].get("namespace"), s["metric"].get("kind")) for s in series}
    assert labels == {(watched.refusing, "function")}, series
    assert all(float(s["value"][1]) > 0 for s in series), series
