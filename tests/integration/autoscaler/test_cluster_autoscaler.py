"""The autoscaler as it runs on a cluster, against a real API server and a real Prometheus:
wake-ups scale a Deployment through /scale, one Lease holder acts, decisions show in status."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from harness.prometheus import prometheus
from kubelambda.autoscaler.prometheus import PrometheusSource
from kubelambda.autoscaler.service import AutoscalerService, WakeEndpoint
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT
from kubelambda.platforms.kubernetes.kinds import FUNCTION as FUNCTION_KIND
from kubelambda.platforms.kubernetes.lease import LeaseElector
from kubelambda.platforms.kubernetes.replicas import DeploymentReplicas
from support.waiting import free_port, wait_for

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: sleepy, namespace: default}
spec:
  runtime: python3.12
  handler: app.handler
  code: {inline: {files: {app.py: "def handler(e, c):\\n    return 1\\n"}}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleepy
  namespace: default
  labels: {kubelambda.dev/function: sleepy}
spec:
  replicas: 0
  selector: {matchLabels: {kubelambda.dev/function: sleepy}}
  template:
    metadata: {labels: {kubelambda.dev/function: sleepy}}
    spec:
      containers: [{name: runtime, image: localhost/kubelambda-runtime:test}]
"""


TOKEN = "wake-token-of-this-release"


@contextmanager
def service(kube_api, prometheus_url: str, identity: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The autoscaler wired as ``kubelambda operator`` wires it, with informers (instead of
    the operator's kopf) feeding it Function and Deployment events."""
    port = free_port()
    client = KubeClient.from_config(kube_api.kubeconfig)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def blocking(call: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(call, *args, **kwargs)

    async def run() -> None:
        replicas = DeploymentReplicas(client, run=blocking)
        elector = LeaseElector(client, namespace="default", name="autoscaler", identity=identity)

        async def hold_lease() -> bool:
            held: bool = await blocking(elector.try_hold)
            return held

        autoscaler = AutoscalerService(
            source=PrometheusSource(prometheus_url),
            replicas=replicas,
            hold_lease=hold_lease,
            wake=WakeEndpoint(host="127.0.0.1", port=port, token=TOKEN),
            tick_seconds=0.5,
        )
        informers = [
            Informer(client, FUNCTION_KIND, on_event=autoscaler.function_event, loop=loop),
            Informer(client, DEPLOYMENT, on_event=replicas.deployment_event, loop=loop),
        ]
        for informer in informers:
            informer.start()
        try:
            await autoscaler.run(stop)
        finally:
            for informer in informers:
                informer.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()))
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{url}/healthz"), timeout=30, what=f"{identity} to serve")
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        client.close()


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=2) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def _post(url: str, token: str | None = TOKEN) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _replicas(kube_api) -> int:  # type: ignore[no-untyped-def]
    out = kube_api.kubectl("get", "deployment", "sleepy", "-o", "jsonpath={.spec.replicas}")
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def prom() -> Iterator[str]:
    with prometheus([]) as running:  # nothing to scrape: the autoscaler sees no metrics
        yield running.url


def test_wake_scales_through_scale_and_one_lease_holder_acts(kube_api, prom, tmp_path):
    manifest = tmp_path / "sleepy.yaml"
    manifest.write_text(FUNCTION)
    kube_api.kubectl("apply", "-f", str(manifest))
    with service(kube_api, prom, "first") as first:
        wait_for(lambda: _get(f"{first}/healthz")["leading"], timeout=30, what="a leader")
        with service(kube_api, prom, "second") as second:
            assert _get(f"{second}/healthz")["leading"] is False
            assert _post(f"{second}/wake/default/sleepy") == 503  # standing by
            assert _replicas(kube_api) == 0

            assert _post(f"{first}/wake/default/nosuch") == 404
            # Only the gateway, which holds the release's token, may ask.
            assert _post(f"{first}/wake/default/sleepy", token=None) == 401
            assert _post(f"{first}/wake/default/sleepy", token="guessed") == 401
            assert _replicas(kube_api) == 0
            assert _post(f"{first}/wake/default/sleepy") == 202
            wait_for(lambda: _replicas(kube_api) == 1, timeout=30, what="replicas 0 -> 1")

        managers = kube_api.kubectl(
            "get", "deployment", "sleepy", "--show-managed-fields", "-o", "json"
        ).stdout
        scale_managers = [
            entry["manager"]
            for entry in json.loads(managers)["metadata"]["managedFields"]
            if entry.get("subresource") == "scale"
        ]
        assert scale_managers == ["kubelambda-autoscaler"]

        def reported() -> str | None:
            out = kube_api.kubectl(
                "get", "fn", "sleepy", "-o", "jsonpath={.status.autoscaler.reason}"
            ).stdout.strip()
            # Before the wake-up it said why it stayed at zero; after, why it keeps one.
            return out if "no metrics" in out else None

        # No metrics in Prometheus is not "no traffic": the autoscaler keeps what it has.
        wait_for(reported, timeout=30, what="status.autoscaler to explain the kept replica")
        assert _replicas(kube_api) == 1
        wide = kube_api.kubectl("get", "fn", "sleepy", "-o", "wide").stdout
        assert "no metrics" in wide  # the Scaling column
