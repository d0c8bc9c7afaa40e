"""Every PromQL expression the chart ships, run by a real Prometheus over real components after
traffic: each of the dashboard's queries and variables, and each alert rule, returns series.

Debian's Prometheus scrapes `kubelambda local` (the gateway's admin port), a `kubelambda
dispatcher` delivering Event invocations from NATS JetStream, and a runtime started the way a
function pod runs it, with its metrics port (local mode's instances serve none). The traffic
makes every metric move after Prometheus first saw it, since rate() reads a counter's first
sample as its start: two rounds of a burst at a function at zero (a cold start, 503s beyond the
one held request, a 502 from a failing handler, 200s), scale to zero between them, and one event
whose handler waits on a gate, so the backlog and the oldest event's age stay up meanwhile.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.nats import nats_server
from harness.prometheus import prometheus
from integration.chart.test_render import CHART, find, render
from kubelambda.api import Function, InlineCode, load_manifests
from kubelambda.api.environment import runtime_environment
from support.local import LocalMode, lambda_client, start_local
from support.runtime import RuntimeProcess, start_runtime
from support.waiting import GiveUp, free_port, wait_for

NAMESPACE, FUNCTION = "default", "api"
MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: api}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 1
  timeoutSeconds: 300
  scaling: {{maxReplicas: 1, scaleToZeroAfterSeconds: 2}}
  env: [{{name: GATE, value: "{gate}"}}]
  code:
    inline:
      files:
        app.py: |
          import os, time
          def handler(event, context):
              ask = event.get("queryStringParameters") or event
              time.sleep(float(ask.get("sleep", 0)))
              while ask.get("gate") and not os.path.exists(os.environ["GATE"]):
                  time.sleep(0.05)
              if ask.get("fail"):
                  raise RuntimeError("failed on purpose")
              return {{"ok": True}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: api-http}}
spec:
  function: api
  http: {{path: /api}}
"""
# Grafana's variables as one function's dashboard has them; the rate window spans the test.
SUBSTITUTIONS = {"$namespace": NAMESPACE, "$function": FUNCTION, "$__rate_interval": "5m"}
# Thresholds the traffic crosses, so each alert's whole expression (comparison included) holds.
CROSSED = ("gatewayErrors", "functionErrors", "throttles", "coldStartP95", "asyncEventAge")
# Alerts on the operator's own metrics, which local mode does not serve: test_operator_metrics.py
# runs them against a real operator.
OPERATOR_ALERTS = frozenset({"KubelambdaReconcileFailures"})


@dataclass
class Scraped:
    prometheus_url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now; GiveUp when Prometheus refuses the expression."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise GiveUp(f"Prometheus refused {expr!r}: {exc.read().decode()}") from exc
        return list(body["data"]["result"])

    def wait_for_series(self, expr: str, *, timeout: float = 30) -> list[dict[str, Any]]:
        """The series of `expr` once one has a finite value (scrapes lag the traffic)."""

        def finite() -> list[dict[str, Any]] | None:
            result = self.query(expr)
            return result if any(math.isfinite(float(s["value"][1])) for s in result) else None

        return wait_for(finite, timeout=timeout, what=f"series of {expr!r}", interval=0.5)


def burst(local: LocalMode) -> list[int]:
    """Requests at once at the function (one slot, one held request at most), then a success
    and a failure."""

    def call(_: int) -> int:
        return local.client.get("/api", params={"sleep": "0.5"}).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(call, range(6)))
    codes.append(local.client.get("/api").status_code)
    codes.append(local.client.get("/api", params={"fail": "1"}).status_code)
    return codes


def invoke_runtime(runtime: RuntimeProcess) -> None:
    for body in ("{}", "{}", '{"fail": 1}'):
        assert runtime.invoke(body).status_code == 200, runtime.logs()


def start_function_pod_runtime(
    function: Function, *, workdir: Path, metrics_port: int
) -> RuntimeProcess:
    """The runtime with the environment the operator gives a function pod (metrics port too)."""
    assert isinstance(function.code, InlineCode) and function.handler
    code_dir = workdir / "task"
    for name, source in function.code.files.items():
        (code_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (code_dir / name).write_text(source)
    env = runtime_environment(
        function,
        region="us-east-1",
        account_id="000000000000",
        task_root=str(code_dir),
        port=None,
        metrics_port=metrics_port,
    )
    return start_runtime(
        code_dir=code_dir,
        handler=function.handler,
        env={var.name: var.value or "" for var in env},
    )


def start_dispatcher(
    nats_url: str, gateway_url: str, metrics_port: int, *, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubelambda.cli",
                "dispatcher",
                "--nats",
                nats_url,
                "--gateway-url",
                gateway_url,
                "--metrics-port",
                str(metrics_port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    workdir = tmp_path_factory.mktemp("monitoring")
    gate = workdir / "gate"
    manifest = workdir / "api.yaml"
    manifest.write_text(textwrap.dedent(MANIFEST.format(gate=gate)))
    [function] = [o for o in load_manifests(manifest) if isinstance(o, Function)]
    admin_port, dispatcher_port, runtime_port = free_port(), free_port(), free_port()
    targets = [f"127.0.0.1:{port}" for port in (admin_port, dispatcher_port, runtime_port)]
    with ExitStack() as stack:
        # A broker of its own: local mode and the dispatcher set up the default stream on it.
        broker = stack.enter_context(nats_server(store_dir=workdir / "jetstream", log_dir=workdir))
        prom = stack.enter_context(prometheus(targets, scrape_seconds=1.0))
        # One held request at most, so a burst at one slot is answered 503 beyond it.
        local = start_local(
            manifest,
            "--nats",
            broker.url,
            "--no-dispatch",
            "--max-queued",
            "1",
            admin_port=admin_port,
        )
        stack.callback(local.stop)
        dispatcher = start_dispatcher(
            broker.url, local.url, dispatcher_port, log=workdir / "dispatcher.log"
        )
        stack.callback(stop, dispatcher)
        runtime = start_function_pod_runtime(function, workdir=workdir, metrics_port=runtime_port)
        stack.callback(runtime.stop)
        stack.callback(gate.touch)  # unwound first: the handler waiting on it returns
        prom.wait_until_scraped(timeout=60)
        scraped = Scraped(prom.url)

        codes = burst(local)
        assert {200, 502, 503} <= set(codes), f"the burst was answered {codes}:\n{local.output()}"
        invoke_runtime(runtime)
        for seen in (
            f'kubelambda_gateway_requests_total{{function="api", code="{code}"}}'
            for code in (200, 502, 503)
        ):
            scraped.wait_for_series(seen)
        scraped.wait_for_series('kubelambda_gateway_cold_starts_total{function="api"}')
        scraped.wait_for_series('kubelambda_runtime_invocations_total{outcome="error"}')
        local.wait_for_line("api: 1 -> 0 instances", timeout=60)

        codes = burst(local)
        assert {200, 502, 503} <= set(codes), f"then answered {codes}:\n{local.output()}"
        invoke_runtime(runtime)
        answer = lambda_client(local.url).invoke(
            FunctionName="api", InvocationType="Event", Payload=json.dumps({"gate": True})
        )
        assert answer["StatusCode"] == 202
        scraped.wait_for_series('kubelambda_async_oldest_event_age_seconds{function="api"} > 0')
        yield scraped


def substituted(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know in {expr!r}"
    return expr


def dashboard() -> dict[str, Any]:
    return dict(json.loads((CHART / "dashboards" / "kubelambda.json").read_text()))


DASHBOARD_QUERIES = [
    pytest.param(target["expr"], id=f"{panel['title']} {target['refId']}")
    for panel in dashboard()["panels"]
    for target in panel.get("targets", [])
]


@pytest.mark.parametrize("expr", DASHBOARD_QUERIES)
def test_the_dashboard_query_returns_the_functions_series(scraped: Scraped, expr: str) -> None:
    series = scraped.wait_for_series(substituted(expr))
    assert [s["metric"].get("function") for s in series] == [FUNCTION] * len(series), series


@pytest.mark.parametrize(("variable", "value"), [("namespace", NAMESPACE), ("function", FUNCTION)])
def test_the_dashboard_variable_lists_the_function(
    scraped: Scraped, variable: str, value: str
) -> None:
    [query] = [v["query"] for v in dashboard()["templating"]["list"] if v["name"] == variable]
    # Grafana's label_values(selector, label) is the label's values over the selector's series.
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, f"not a label_values query: {query!r}"
    selector, label = match.groups()
    series = scraped.wait_for_series(f"group by ({label}) ({substituted(selector)})")
    assert value in {s["metric"].get(label) for s in series}


def test_every_alert_expression_holds_on_traffic_that_crosses_its_threshold(
    scraped: Scraped,
) -> None:
    # Each rule as the chart renders it, with a threshold of 0: the whole expression (its
    # comparison too) must hold, for this function, on this traffic.
    values = [f"monitoring.rules.{alert}.threshold=0" for alert in CROSSED]
    rule = find(render("monitoring.rules.enabled=true", *values), "PrometheusRule", "kubelambda")
    rules = [
        r
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if r["alert"] not in OPERATOR_ALERTS
    ]
    assert len(rules) == len(CROSSED)
    for alert in rules:
        series = scraped.wait_for_series(alert["expr"])
        labels = {(s["metric"].get("namespace"), s["metric"].get("function")) for s in series}
        assert labels == {(NAMESPACE, FUNCTION)}, (alert["alert"], series)
        assert all(float(s["value"][1]) > 0 for s in series), (alert["alert"], series)
