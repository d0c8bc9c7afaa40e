"""The kubelambda Helm chart installed on the e2e cluster with this run's images, its operator,
gateway, broker (NATS) and dispatcher pods Ready, and a Prometheus (Debian's, on loopback) scraping
the gateway pods, reached by the operator's autoscaler through a relay on the node's address, and
a warm pool of POOL_SIZE pods in POOL_NAMESPACE only. The broker's store is a hostPath
PersistentVolume made beforehand, as an admin pre-provisions one where no dynamic provisioner
runs. The release's namespace and the functions' (the pool's too) enforce Pod Security
`restricted`, so every pod the chart and the operator make must pass it. The e2e fixtures and
the cold-start benchmark use `release()`; parts still missing raise ReleaseFailed naming them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.cluster import Cluster
from harness.prometheus import prometheus
from harness.relay import relay

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubelambda"
RELEASE = "kubelambda"
SYSTEM_NAMESPACE = "kubelambda-system"
FUNCTIONS_NAMESPACE = "default"  # where the e2e scenarios' Functions run (tests/e2e/kit.py)
# The one namespace with a warm pool (tests/e2e/warm_pool, the cold-start benchmark's pool path):
# Functions elsewhere take the Deployment path, as without a pool.
POOL_NAMESPACE = "warm"
POOL_SIZE = 2
# Pod Security admission's labels: pods breaking the `restricted` profile are refused.
RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
GATEWAY_PORT = 8080  # the chart's gateway.port: the pod's public port
GATEWAY_ADMIN_PORT = 9090  # the chart's gateway.adminPort: /metrics, /healthz
OPERATOR_HEALTH_PORT = 8081  # the chart's operator.healthPort: liveness /healthz
S3_TARGET_ID = "kubelambda"  # the webhook target id the harness's MinIO is started with
S3_REGION = "us-east-1"
# What the chart's Deployments run: `kubelambda <cmd>`.
CHART_COMMANDS = ("operator", "gateway", "dispatcher")
# The release's pods, by app.kubernetes.io/component, that must be Ready before a scenario runs.
COMPONENTS = ("operator", "gateway", "nats", "dispatcher")
# The broker's volume: a StorageClass without a provisioner, and one PersistentVolume of it
# made before the install (the single node has no dynamic provisioner).
STORAGE_CLASS = "kubelambda-e2e-local"
NATS_VOLUME_SIZE = "1Gi"
NATS_UID = 10001  # the chart's podSecurityContext: hostPath volumes ignore fsGroup
INSTALL_TIMEOUT = 180.0
CRASH_REASONS = ("CrashLoopBackOff", "ErrImageNeverPull", "CreateContainerConfigError")
# The kubelet waits one second for its watch of a pod's Secret or ConfigMap to sync, then reports
# CreateContainerConfigError with this message and tries again on the pod's next sync: on a busy
# node a pod passes through it on its way to running.
KUBELET_CACHE_WAIT = "failed to sync "


class ReleaseFailed(RuntimeError):
    """The chart could not be installed or its pods do not run; the message says why."""


@dataclass(frozen=True)
class Release:
    """The installed release, and where its gateway answers (a gateway pod's IP: clients run on
    the node, and pod IPs stay on this machine)."""

    namespace: str
    gateway_url: str
    gateway_pod_ips: tuple[str, ...]
    prometheus_url: str
    s3_webhook_arn: str
    # The gateway's Service (its ClusterIP, which kube-proxy serves on the node too): it stays
    # when the gateway's pods are replaced.
    gateway_service_url: str

    def s3_token(self, running: Cluster) -> str:
        """The bearer token the gateway expects from MinIO (the chart keeps it in a Secret)."""
        secret = running.get("secret", f"{RELEASE}-gateway", "-n", self.namespace)
        return base64.b64decode(secret["data"]["s3-token"]).decode()


def missing_parts() -> str | None:
    """What the product still lacks for the chart to run, or None."""
    if not (CHART / "Chart.yaml").exists():
        return (
            f"the Helm chart is missing: {CHART}/Chart.yaml does not exist. It comes with issue 4 "
            "(controller, CRDs and chart, plus operator/Dockerfile)."
        )
    # The control-plane image runs `kubelambda <command>`; a command the CLI lacks would only
    # show up as pods crashing, minutes later.
    from kubelambda.cli import build_parser

    known: set[str] = set()
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            known |= set(action.choices)
    missing = [command for command in CHART_COMMANDS if command not in known]
    if missing:
        return (
            f"the chart's pods run `kubelambda {' / '.join(CHART_COMMANDS)}`, but the CLI "
            f"(operator/kubelambda/cli.py) has no {', '.join(missing)} command yet (issue 4: "
            f"the controller's and gateway's entry points). Known: {', '.join(sorted(known))}"
        )
    return None


def chart_values(running: Cluster, *, prometheus_url: str) -> dict[str, Any]:
    """Values that point the chart at this run's images (imported, never pulled), one gateway
    and one dispatcher replica (two cores), the broker's pre-provisioned volume, the node's
    Prometheus relay and the harness MinIO's webhook ARN."""
    repository, tag = running.images.control_plane.name.rsplit(":", 1)
    nats_repository, nats_tag = running.images.nats.name.rsplit(":", 1)
    return {
        "nats": {
            "image": {"repository": nats_repository, "tag": nats_tag, "pullPolicy": "Never"},
            "storage": {
                "storageClassName": STORAGE_CLASS,
                "size": NATS_VOLUME_SIZE,
                "maxFileStore": "768Mi",
            },
            "stream": {"maxBytes": 256 * 2**20},
            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
        },
        # A dead dispatcher's events go to the next one after 20 s, not a minute: the
        # async_events scenario kills one mid-delivery.
        "dispatcher": {
            "replicas": 1,
            "ackWaitSeconds": 20,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        },
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "runtime": {
            "images": {
                runtime: running.images.runtime.name
                for runtime in ("python3.12", "provided.al2023", "provided.al2")
            },
            "pullPolicy": "Never",
        },
        "prometheus": {"url": prometheus_url},
        # Schedules' clock 60 times as fast: rate(1 minute) ticks every second (tests/e2e/schedule).
        "operator": {"extraArgs": ["--schedule-speed=60"]},
        # apiKey routes read their Secret (tests/e2e/invoke_auth).
        "gateway": {"replicas": 1, "readApiKeySecrets": True},
        "s3": {"webhookArn": f"arn:minio:sqs:{S3_REGION}:{S3_TARGET_ID}:webhook"},
        # The chart binds the pool's rights on pods in POOL_NAMESPACE alone (it must exist).
        "warmPool": {"size": POOL_SIZE, "namespaces": [POOL_NAMESPACE]},
    }


def component_log(running: Cluster, component: str, *, lines: int = 40) -> str:
    """The last lines of a release component's container log."""
    done = running.kubectl(
        "logs",
        "-n",
        SYSTEM_NAMESPACE,
        "-l",
        f"{SELECTOR},app.kubernetes.io/component={component}",
        f"--tail={lines}",
        check=False,
    )
    return done.stdout or done.stderr


def crash_report(running: Cluster) -> str | None:
    """If a pod of the release crashed (or cannot start), what happened and its log; else None.
    The kubelet's wait for its Secret and ConfigMap caches is not a crash (KUBELET_CACHE_WAIT): if
    it never ends, the wait's deadline reports the pod."""
    for pod in running.get("pods", "-n", SYSTEM_NAMESPACE, "-l", SELECTOR)["items"]:
        for status in pod["status"].get("containerStatuses", []):
            waiting = status.get("state", {}).get("waiting", {})
            terminated = status.get("lastState", {}).get("terminated")
            passing = waiting.get("message", "").startswith(KUBELET_CACHE_WAIT)
            cannot_start = waiting.get("reason") in CRASH_REASONS and not passing
            if status.get("restartCount", 0) > 0 or cannot_start:
                name = pod["metadata"]["name"]
                logs = running.kubectl(
                    "logs", "-n", SYSTEM_NAMESPACE, name, "--previous", "--tail=40", check=False
                )
                return (
                    f"pod {name} of the release does not run: {waiting or terminated}\n"
                    f"its log:\n{logs.stdout or logs.stderr}"
                )
    return None


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it: mappings merged key by key, anything else replaced
    (as helm merges a second values file)."""
    merged = dict(base)
    for key, value in overrides.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = _merged(below, value)
        else:
            merged[key] = value
    return merged


class Kubectl(Protocol):
    """What runs kubectl against a cluster: the e2e Cluster, or a bare ApiServer in tests."""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]: ...


def refused_pods(running: Kubectl, namespace: str) -> str:
    """The events of controllers that could not create pods in `namespace` (Pod Security
    admission's refusals among them), or "" when there are none."""
    done = running.kubectl(
        "get", "events", "-n", namespace, "--field-selector=reason=FailedCreate", check=False
    )
    return done.stdout if "FailedCreate" in done.stdout else ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def enforce_restricted(running: Kubectl, namespaces: tuple[str, ...]) -> None:
    """Create `namespaces` where missing and label them to enforce Pod Security `restricted`
    (helm's --create-namespace makes an unlabelled namespace, so this comes before it)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            for namespace in namespaces
        ],
    }
    # `create --save-config` would fail on existing ones (default); apply creates the rest.
    running.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    labels = [f"{key}={value}" for key, value in RESTRICTED_LABELS.items()]
    running.kubectl("label", "--overwrite", "namespace", *namespaces, *labels)


def provision_broker_volume(running: Cluster) -> None:
    """What an admin does where no provisioner makes volumes: a StorageClass that provisions
    nothing, and a hostPath PersistentVolume of it for the broker's claim, in a folder the
    broker's user owns (hostPath volumes ignore fsGroup)."""
    folder = running.workdir / "volumes" / "nats-0"
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, NATS_UID, NATS_UID)
    folder.chmod(0o770)
    running.apply(
        [
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain",
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"{RELEASE}-nats-0"},
                "spec": {
                    "capacity": {"storage": NATS_VOLUME_SIZE},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": STORAGE_CLASS,
                    "hostPath": {"path": str(folder), "type": "Directory"},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": [running.node_name],
                                        }
                                    ]
                                }
                            ]
                        }
                    },
                },
            },
        ]
    )


def _wait_running(running: Cluster, timeout: float, *, gateways: int = 1) -> list[dict[str, Any]]:
    """The release's pods Ready (operator, `gateways` gateways, broker, dispatcher) and the
    operator's /healthz answering (it has no readiness probe, so Ready only means started); fail
    at once if a pod crashes."""
    deadline = time.monotonic() + timeout
    while True:
        crashed = crash_report(running)
        if crashed:
            raise ReleaseFailed(crashed)
        pods = running.ready_pods(SYSTEM_NAMESPACE, SELECTOR)
        by_component = {p["metadata"]["labels"].get("app.kubernetes.io/component"): p for p in pods}
        ready_gateways = sum(
            p["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway" for p in pods
        )
        if ready_gateways >= gateways and all(c in by_component for c in COMPONENTS):
            operator_ip = by_component["operator"]["status"]["podIP"]
            if _http_ok(f"http://{operator_ip}:{OPERATOR_HEALTH_PORT}/healthz"):
                return pods
        if time.monotonic() > deadline:
            state = running.kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-o", "wide")
            missing = [c for c in COMPONENTS if c not in by_component]
            claims = running.kubectl("get", "pvc,pv", "-A", check=False)
            refused = refused_pods(running, SYSTEM_NAMESPACE)
            raise ReleaseFailed(
                f"pods of the release not Ready ({', '.join(missing) or 'the operator /healthz'}) "
                f"{timeout:.0f} s after helm install:\n{state.stdout}\n{claims.stdout}\n"
                + (f"pods refused:\n{refused}\n" if refused else "")
                + f"operator log:\n{component_log(running, 'operator')}"
            )
        time.sleep(0.5)


@contextmanager
def release(
    running: Cluster,
    *,
    workdir: Path,
    timeout: float = INSTALL_TIMEOUT,
    overrides: Mapping[str, Any] | None = None,
) -> Iterator[Release]:
    """`helm install` the chart, wait for it to run, and start Prometheus on its gateway pods;
    uninstall and stop Prometheus however the block ends. `overrides` are merged over
    `chart_values` (nested mappings key by key), e.g. {"gateway": {"replicas": 2}}: then every
    gateway replica is Ready, and scraped, before the block starts."""
    missing = missing_parts()
    if missing:
        raise ReleaseFailed(missing)
    with ExitStack() as stack:
        # The relay exists before the install, since the chart takes the Prometheus URL; its
        # target is set once Prometheus knows the gateway pods to scrape.
        to_prometheus = stack.enter_context(relay(running.node_ip))
        chosen = _merged(chart_values(running, prometheus_url=to_prometheus.url), overrides or {})
        values = workdir / "values.json"
        values.write_text(json.dumps(chosen))
        provision_broker_volume(running)
        enforce_restricted(running, (SYSTEM_NAMESPACE, FUNCTIONS_NAMESPACE, POOL_NAMESPACE))
        running.helm(
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            SYSTEM_NAMESPACE,
            "--create-namespace",
            "--values",
            str(values),
            timeout=180,
        )
        stack.callback(
            running.helm, "uninstall", RELEASE, "--namespace", SYSTEM_NAMESPACE, check=False
        )
        pods = _wait_running(running, timeout, gateways=int(chosen["gateway"]["replicas"]))
        ips = tuple(
            p["status"]["podIP"]
            for p in pods
            if p["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"
        )
        scraper = stack.enter_context(prometheus([f"{ip}:{GATEWAY_ADMIN_PORT}" for ip in ips]))
        host, port = scraper.url.removeprefix("http://").split(":")
        to_prometheus.target = (host, int(port))
        service = running.get("service", f"{RELEASE}-gateway", "-n", SYSTEM_NAMESPACE)
        yield Release(
            namespace=SYSTEM_NAMESPACE,
            gateway_url=f"http://{ips[0]}:{GATEWAY_PORT}",
            gateway_pod_ips=ips,
            prometheus_url=scraper.url,
            s3_webhook_arn=f"arn:minio:sqs:{S3_REGION}:{S3_TARGET_ID}:webhook",
            gateway_service_url=(
                f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
            ),
        )
