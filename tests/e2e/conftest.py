"""Fixtures of the e2e tier: one real single-node cluster for the whole session (`cluster`), the
kubelambda chart installed on it (`installed`), and helpers to wait for pods with deadlines.

Parts the product does not have yet fail the scenarios that need them, naming what is missing;
failed tests get the cluster's log tails appended to their report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster, cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubelambda"
RELEASE = "kubelambda"
SYSTEM_NAMESPACE = "kubelambda-system"


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real cluster: built parts from the cache, images imported, node Ready."""
    with cluster(log_dir=tmp_path_factory.mktemp("cluster-logs")) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    running = getattr(item, "funcargs", {}).get("e2e_cluster")
    if report.failed and isinstance(running, Cluster):
        report.sections.append(("cluster logs", running.log_tails(30)))
        events = running.kubectl(
            "get", "events", "--all-namespaces", "--sort-by=.lastTimestamp", check=False
        )
        report.sections.append(("cluster events", events.stdout[-6000:]))


def wait_for(condition: Callable[[], Any], *, what: str, timeout: float) -> Any:
    """Poll `condition` until it returns something truthy; fail at the deadline naming `what`
    and the last error (the API answering 'not found' while an object appears is 'not yet')."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # any failure means "not yet"; the last one is reported
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not true after {timeout:.0f} s (last error: {last!r})")
        time.sleep(0.1)


@dataclass(frozen=True)
class Installed:
    """The chart's release: where the gateway answers (its pod IP; routes stay on this host)."""

    namespace: str
    gateway_url: str


def require_chart() -> Path:
    if not (CHART / "Chart.yaml").exists():
        pytest.fail(
            f"the Helm chart is missing: {CHART}/Chart.yaml does not exist. It comes with issue 4 "
            "(controller, CRDs and chart, plus operator/Dockerfile); this scenario runs as soon "
            "as it is on main."
        )
    return CHART


def chart_values(running: Cluster) -> dict[str, Any]:
    """Values that point the chart at the images this harness built and imported. The chart's
    values schema is the chart author's; these are the names DESIGN.md and issue 4 use."""
    control = running.images.control_plane.name
    runtime = running.images.runtime.name

    def split(name: str) -> dict[str, str]:
        repository, tag = name.rsplit(":", 1)
        return {"repository": repository, "tag": tag, "pullPolicy": "Never"}

    return {
        "image": split(control),
        "operator": {"image": split(control)},
        "gateway": {"image": split(control)},
        "runtimeImage": runtime,
        "runtime": {"image": split(runtime)},
    }


@pytest.fixture(scope="session")
def installed(e2e_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`helm install` of charts/kubelambda with this run's images; waits for every pod of the
    release to be Ready and returns where its gateway answers."""
    chart = require_chart()
    values = tmp_path_factory.mktemp("helm") / "values.json"
    values.write_text(json.dumps(chart_values(e2e_cluster)))
    e2e_cluster.helm(
        "install",
        RELEASE,
        str(chart),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--create-namespace",
        "--values",
        str(values),
        "--wait",
        "--timeout=5m",
        timeout=360,
    )
    pods = e2e_cluster.wait_ready_pods(
        SYSTEM_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}", timeout=180, count=2
    )
    gateways = [p for p in pods if "gateway" in p["metadata"]["name"]]
    if not gateways:
        names = [p["metadata"]["name"] for p in pods]
        pytest.fail(f"the chart made no pod named like a gateway; Ready pods: {names}")
    ip = gateways[0]["status"]["podIP"]
    ports = [
        port["containerPort"]
        for container in gateways[0]["spec"]["containers"]
        for port in container.get("ports", [])
        if port.get("name") in ("http", "public", "gateway")
    ]
    return Installed(
        namespace=SYSTEM_NAMESPACE, gateway_url=f"http://{ip}:{ports[0] if ports else 8080}"
    )
