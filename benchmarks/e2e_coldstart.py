"""Benchmark: cold start on a real single-node cluster, from zero replicas to the first response.

Until the product path is on main (chart, controller, gateway's Kubernetes platform), this
measures the raw path the product will take: a Deployment of the runtime image scaled 0 -> 1
through the API, then an invocation over the pod's IP as soon as the kubelet reports it. Each
step is stamped when its watch event arrives here: wake-up (scale call -> pod created), scheduled,
container started (sandbox, CNI, runc), runtime ready (/healthz answers), response; plus when
the kubelet marked the pod Ready, which is what EndpointSlices (and so the gateway) follow.
Target: p50 <= 1.5 s. Run as root; the first run builds the cluster's parts and images.

    python benchmarks/e2e_coldstart.py [--trials 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.cluster import Cluster, cluster
from harness.kubeapi import KubeApi
from harness.workloads import RUNTIME_PORT, code_configmap, invoke, runtime_deployment

NAMESPACE = "default"
NAME = "coldstart"
SELECTOR = f"app.kubernetes.io/name={NAME}"
CODE = "def handler(event, context):\n    return {'ok': True}\n"
TRIAL_TIMEOUT = 60.0
STEPS = ("wake-up", "scheduled", "container started", "runtime ready", "response")


@dataclass
class Trial:
    began: float
    marks: dict[str, float] = field(default_factory=dict)
    ready_condition: float | None = None

    def mark(self, step: str, when: float) -> None:
        self.marks.setdefault(step, when)

    def durations(self) -> dict[str, float]:
        """Each step's own share, in order; missing steps are folded into the next one."""
        shares, previous = {}, self.began
        for step in STEPS:
            if step in self.marks:
                shares[step] = self.marks[step] - previous
                previous = self.marks[step]
        return shares

    @property
    def total(self) -> float:
        return self.marks["response"] - self.began


def _healthz(ip: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:{RUNTIME_PORT}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _observe(trial: Trial, pod: dict[str, Any], seen: float) -> str | None:
    """Record what this pod event shows; return the pod IP once the kubelet reports it."""
    trial.mark("wake-up", seen)
    if pod["spec"].get("nodeName"):
        trial.mark("scheduled", seen)
    for status in pod["status"].get("containerStatuses", []):
        if "running" in status.get("state", {}):
            trial.mark("container started", seen)
    for condition in pod["status"].get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] == "True":
            trial.ready_condition = trial.ready_condition or seen
    ip: str | None = pod["status"].get("podIP")
    return ip


def one_trial(api: KubeApi) -> Trial:
    listing = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}")
    watch = api.watch(
        f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}",
        resource_version=listing["metadata"]["resourceVersion"],
    )
    try:
        trial = Trial(began=time.monotonic())
        api.scale(NAMESPACE, NAME, 1)
        deadline = trial.began + TRIAL_TIMEOUT
        ip = None
        while ip is None:
            event = watch.next(deadline - time.monotonic())
            if event is None:
                raise TimeoutError(f"no pod IP within {TRIAL_TIMEOUT:.0f} s")
            ip = _observe(trial, event.object, event.seen)
        # The IP arrives with the sandbox, often before the container runs: poll the runtime
        # the way an eager client (or the gateway) would, while the watch goes on.
        while not _healthz(ip):
            if time.monotonic() > deadline:
                raise TimeoutError(f"runtime at {ip} not answering within {TRIAL_TIMEOUT:.0f} s")
            time.sleep(0.005)
        trial.mark("runtime ready", time.monotonic())
        answer = invoke(ip, {"trial": True})
        trial.mark("response", time.monotonic())
        if answer.body != {"ok": True}:
            raise RuntimeError(f"unexpected answer {answer.body!r}")
        # Drain what the watch saw meanwhile (container running, Ready) for the breakdown.
        for event in watch.until(time.monotonic() + 3):
            _observe(trial, event.object, event.seen)
            if trial.ready_condition is not None:
                break
    finally:
        watch.stop()
    return trial


def scale_to_zero(api: KubeApi, running: Cluster) -> None:
    api.scale(NAMESPACE, NAME, 0)
    deadline = time.monotonic() + TRIAL_TIMEOUT
    while running.get("pods", "-n", NAMESPACE, "-l", SELECTOR)["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError("pods still there a minute after scaling to zero")
        time.sleep(0.2)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def report(trials: list[Trial]) -> None:
    totals = [t.total for t in trials]
    print(f"\ncold start, zero replicas -> first response over the pod IP ({len(trials)} trials)")
    print(
        f"  p50 {statistics.median(totals) * 1000:6.0f} ms   p95 "
        f"{percentile(totals, 0.95) * 1000:6.0f} ms   (target p50 <= 1500 ms)"
    )
    print("  breakdown, median of each step's own share:")
    medians = {}
    for step in STEPS:
        shares = [t.durations()[step] for t in trials if step in t.durations()]
        medians[step] = statistics.median(shares) if shares else 0.0
        print(f"    {step:18} {medians[step] * 1000:6.0f} ms")
    ready = [t.ready_condition - t.began for t in trials if t.ready_condition is not None]
    if ready:
        print(
            f"  kubelet marks the pod Ready (what EndpointSlices follow): p50 "
            f"{statistics.median(ready) * 1000:.0f} ms after the scale call"
        )
    worst = max(medians, key=lambda step: medians[step])
    print(f"  dominant step: {worst} ({medians[worst] / statistics.median(totals):.0%} of p50)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    started = time.monotonic()
    with cluster() as running:
        print(f"cluster up in {time.monotonic() - started:.0f} s; logs in {running.log_dir}")
        usage = running.resident_mib()
        listed = ", ".join(f"{name} {mib:.0f}" for name, mib in usage.items())
        print(f"cluster idle resident memory: {sum(usage.values()):.0f} MiB ({listed})")
        running.apply(
            [
                code_configmap(f"{NAME}-code", NAMESPACE, {"app.py": CODE}),
                runtime_deployment(
                    name=NAME,
                    namespace=NAMESPACE,
                    image=running.images.runtime.name,
                    handler="app.handler",
                    code_configmap=f"{NAME}-code",
                    replicas=0,
                ),
            ]
        )
        api = KubeApi(running.api)
        # One unmeasured start first: it warms the page cache with the image's files.
        one_trial(api)
        scale_to_zero(api, running)
        trials = []
        for index in range(args.trials):
            trial = one_trial(api)
            trials.append(trial)
            shares = " ".join(f"{k}={v * 1000:.0f}" for k, v in trial.durations().items())
            print(f"trial {index + 1:2}: {trial.total * 1000:5.0f} ms  ({shares})", flush=True)
            scale_to_zero(api, running)
        report(trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
