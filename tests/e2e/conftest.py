"""Fixtures of the e2e tier: one real single-node cluster for the whole session (`e2e_cluster`)
and the kubelambda chart installed on it (`installed`), with Prometheus scraping its gateway.

Parts the product does not have yet fail the scenarios that need them, naming what is missing;
failed tests get the cluster's log tails and events appended to their report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from e2e.kit import (
    GATEWAY_ADMIN_PORT,
    GATEWAY_PORT,
    INSTALL_TIMEOUT,
    OPERATOR_HEALTH_PORT,
    RELEASE,
    S3_REGION,
    S3_TARGET_ID,
    SYSTEM_NAMESPACE,
    Installed,
    chart_values,
    component_log,
    fail_on_crash,
    http_ok,
    require_chart,
)
from harness.cluster import Cluster, cluster
from harness.prometheus import prometheus
from harness.relay import relay


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


@pytest.fixture(scope="session")
def installed(
    e2e_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """`helm install` of charts/kubelambda with this run's images; waits for the operator and
    gateway pods to be Ready; Prometheus (Debian's, on loopback) scrapes the gateway pods and
    answers the autoscaler through a relay on the node's address."""
    chart = require_chart()
    with ExitStack() as stack:
        prometheus_relay = stack.enter_context(relay(e2e_cluster.node_ip))
        values = tmp_path_factory.mktemp("helm") / "values.json"
        values.write_text(
            json.dumps(chart_values(e2e_cluster, prometheus_url=prometheus_relay.url))
        )
        e2e_cluster.helm(
            "install",
            RELEASE,
            str(chart),
            "--namespace",
            SYSTEM_NAMESPACE,
            "--create-namespace",
            "--values",
            str(values),
            timeout=180,
        )
        selector = f"app.kubernetes.io/instance={RELEASE}"
        deadline = time.monotonic() + INSTALL_TIMEOUT
        while True:
            fail_on_crash(e2e_cluster, SYSTEM_NAMESPACE, selector)
            pods = e2e_cluster.ready_pods(SYSTEM_NAMESPACE, selector)
            by_component = {
                p["metadata"]["labels"].get("app.kubernetes.io/component"): p for p in pods
            }
            # The operator has no readiness probe: Ready only means started. Its liveness
            # endpoint answers once kopf has logged in and runs.
            if "gateway" in by_component and "operator" in by_component:
                operator_ip = by_component["operator"]["status"]["podIP"]
                if http_ok(f"http://{operator_ip}:{OPERATOR_HEALTH_PORT}/healthz"):
                    break
            if time.monotonic() > deadline:
                state = e2e_cluster.kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-o", "wide")
                pytest.fail(
                    f"operator and gateway pods not Ready (and the operator's /healthz not "
                    f"answering) {INSTALL_TIMEOUT:.0f} s after helm install:\n{state.stdout}\n"
                    f"operator log:\n{component_log(e2e_cluster, 'operator')}"
                )
            time.sleep(0.5)
        gateways = [
            p
            for p in pods
            if p["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"
        ]
        ips = tuple(p["status"]["podIP"] for p in gateways)
        scraper = stack.enter_context(prometheus([f"{ip}:{GATEWAY_ADMIN_PORT}" for ip in ips]))
        host, port = scraper.url.removeprefix("http://").split(":")
        prometheus_relay.target = (host, int(port))
        yield Installed(
            namespace=SYSTEM_NAMESPACE,
            gateway_url=f"http://{ips[0]}:{GATEWAY_PORT}",
            gateway_pod_ips=ips,
            prometheus_url=scraper.url,
            s3_webhook_arn=f"arn:minio:sqs:{S3_REGION}:{S3_TARGET_ID}:webhook",
        )
        e2e_cluster.helm("uninstall", RELEASE, "--namespace", SYSTEM_NAMESPACE, check=False)
