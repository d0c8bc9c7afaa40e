"""`kubelambda console` against a real API server (the repository's CRDs) and Debian's real
Prometheus scraping a real gateway (local mode's, serving a function of the same name) after
traffic: the page lists the Function with its Deployment's replicas and Prometheus's figures,
and its chart has points, so every PromQL expression the console asks is one Prometheus runs.
With --read-logs the console lists the Function's pods by its label and asks the API server for
their logs, bounded (this server has no kubelet to answer them: the page says why)."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from harness.apiserver import ApiServer, api_server_for_pytest
from harness.prometheus import Prometheus, prometheus
from support.local import LocalMode, start_local
from support.waiting import GiveUp, free_port, wait_for

CRDS = Path(__file__).resolve().parents[3] / "crds"
FUNCTION = """\
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: hello, namespace: default}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {maxReplicas: 4, scaleToZeroAfterSeconds: 120}
  code:
    inline:
      files:
        app.py: |
          def handler(event, context):
              return {"statusCode": 200, "body": "hello"}
"""
TRIGGER = """\
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: hello-http, namespace: default}
spec:
  function: hello
  http: {path: /hello, methods: [GET], auth: {type: none}}
"""
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "hello",
        "namespace": "default",
        "labels": {
            "app.kubernetes.io/managed-by": "kubelambda",
            "kubelambda.dev/function": "hello",
        },
    },
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"kubelambda.dev/function": "hello"}},
        "template": {
            "metadata": {"labels": {"kubelambda.dev/function": "hello"}},
            "spec": {"containers": [{"name": "runtime", "image": "example/runtime"}]},
        },
    },
}
REQUESTS = 6


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    yield from api_server_for_pytest(tmp_path_factory)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LocalMode, Prometheus]]:
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(FUNCTION.replace("namespace: default", "") + TRIGGER)
    admin_port = free_port()
    with ExitStack() as stack:
        prom = stack.enter_context(prometheus([f"127.0.0.1:{admin_port}"], scrape_seconds=1.0))
        local = start_local(manifest, "--no-console", admin_port=admin_port)
        stack.callback(local.stop)
        prom.wait_until_scraped(timeout=60)
        yield local, prom


def _query(prom: Prometheus, expression: str) -> float:
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    result = httpx.get(url, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@contextmanager
def _console(api: ApiServer, prom: Prometheus | None, *flags: str) -> Iterator[str]:
    port = free_port()
    asked = ["--prometheus", prom.url] if prom is not None else []
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "console",
            "--kubeconfig",
            str(api.kubeconfig),
            *asked,
            "--port",
            str(port),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        lines.extend(line.rstrip("\n") for line in process.stdout)

    threading.Thread(target=pump, daemon=True).start()
    url = f"http://127.0.0.1:{port}/"

    def ready() -> bool:
        if process.poll() is not None:
            raise GiveUp(f"kubelambda console exited with {process.returncode}: {lines}")
        return f"kubelambda console: {url}" in lines

    try:
        wait_for(ready, timeout=30, what="kubelambda console to serve")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _apply_hello(api: ApiServer) -> None:
    api.kubectl("apply", "-f", str(CRDS))
    api.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/functions.kubelambda.dev",
        "crd/triggers.kubelambda.dev",
    )
    api.kubectl("apply", "-f", "-", input=FUNCTION + TRIGGER)
    api.kubectl("apply", "-f", "-", input=json.dumps(DEPLOYMENT))


def test_the_cluster_console_shows_functions_with_prometheus_figures(
    api: ApiServer, served: tuple[LocalMode, Prometheus]
) -> None:
    local, prom = served
    _apply_hello(api)
    # increase() counts from a series' first scrape: one request makes the series, the rest
    # come once Prometheus has it.
    selector = '{namespace="default", function="hello"}'
    billed = f"kubelambda_gateway_billed_invocations_total{selector}"
    assert local.client.get("/hello").status_code == 200
    wait_for(lambda: _query(prom, billed) >= 1, timeout=60, interval=0.5, what="a first scrape")
    for _ in range(REQUESTS):
        assert local.client.get("/hello").status_code == 200
    wait_for(
        lambda: (
            _query(prom, billed) >= REQUESTS + 1
            and _query(prom, f"count_over_time({billed}[5m])") >= 4
        ),
        timeout=60,
        interval=0.5,
        what="Prometheus to have scraped the invocations",
    )

    with _console(api, prom) as url:
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200, page.text
        text = page.text
        assert 'class="problem"' not in text, text
        row = re.search(r'<tr data-function="hello">(.*?)</tr>', text)
        assert row is not None, text
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1])
        # ready/desired: the Deployment's 2, none ready (no controller-manager runs here), and
        # the Function's Ready condition not yet written (no operator).
        assert cells[1].startswith("0/2") and "Unknown" in cells[1], cells
        # increase() extrapolates: about REQUESTS, never none.
        assert float(cells[3]) >= REQUESTS - 1, cells
        assert float(cells[4]) > 0, cells  # billed GB-seconds
        assert cells[5] == "0"  # 5xx answers
        assert cells[6] == "-"  # function errors: no function pod is scraped here
        assert cells[7].endswith(" ms") and cells[8].endswith(" ms")  # p50, p99
        points = re.search(r'data-series="requests" data-points="(\d+)"', text)
        assert points is not None and int(points[1]) >= 1, text
        function_page = httpx.get(f"{url}functions/default/hello", timeout=30).text
        assert "kubelambda logs hello --cluster -n default" in function_page
        assert "--read-logs" in function_page  # logs are read only when asked


def _pod(name: str, function: str, node: str = "") -> dict[str, object]:
    spec: dict[str, object] = {"containers": [{"name": "function", "image": "example/runtime"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubelambda.dev/function": function},
        },
        "spec": spec,
    }


def test_with_read_logs_the_console_asks_the_api_server_for_the_function_pods_logs(
    api: ApiServer,
) -> None:
    _apply_hello(api)
    pods = [
        ("hello-1", "hello", "", "2026-01-01T00:00:00Z"),
        ("hello-2", "hello", "", ""),  # stays Pending: not read
        ("hello-3", "hello", "ghost", "2026-01-01T00:01:00Z"),  # on a node that does not exist
        ("other-1", "other", "", "2026-01-01T00:00:00Z"),  # another function's
    ]
    for name, function, node, started in pods:
        api.kubectl("apply", "-f", "-", input=json.dumps(_pod(name, function, node)))
        if started:
            # No scheduler or kubelet runs here: the pod is made to look started.
            status = {"status": {"phase": "Running", "startTime": started}}
            api.kubectl(
                "patch", "pod", name, "--subresource=status", "--type=merge",
                "-p", json.dumps(status),
            )  # fmt: skip
    with _console(api, None, "--read-logs") as url:
        page = httpx.get(f"{url}functions/default/hello", timeout=30)
        assert page.status_code == 200, page.text
        text = page.text.split("<h2>Latest invocations</h2>", 1)[1]
        note = re.search(r'<p class="muted">([^<]*)</p>', text)
        assert note is not None, text
        # The API server took each request (path, container, bounds: it refuses bad ones with
        # 400): hello-1's log is empty (no node serves it), hello-3's node is not found.
        parts = html.unescape(note[1]).split("; ")
        assert parts[0].startswith("cannot read the log of pod hello-3: "), parts
        assert "ghost" in parts[0], parts
        assert parts[1:] == [
            "no invocation in the last 500 lines of the last 60 minutes of 1 pod(s)"
        ], parts
        assert "hello-2" not in text and "other-1" not in text, text
