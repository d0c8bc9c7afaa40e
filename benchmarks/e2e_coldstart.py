"""Benchmark: cold start on a real single-node cluster, from zero replicas to the first response.

The product path: the chart installed, one Function per trial (at zero, as the controller
makes them), one request each through the gateway; steps from a pod watch (wake-up: request ->
pod created; scheduled; pod Ready), containerd's log (container started), the answer, and the
gateway's Server-Timing. The raw path, for comparison: a Deployment of the runtime image (the
same pod shape: code in the environment, no volumes) scaled
0 -> 1 through the API and an invocation over the pod's IP as soon as the runtime answers, with
the CNI plugin's address file (sandbox and network) and /healthz polling (runtime ready); what
an eager client could get without waiting for the kubelet's readiness report.
Target: p50 <= 1.5 s. Run as root; the first run builds the cluster's parts and images.

    python benchmarks/e2e_coldstart.py [--trials 20] [--path product|raw|both]
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from coldstart_pool import run_pool
from e2e.kit import apply_ready, function_manifests
from harness.cluster import Cluster, cluster
from harness.kubeapi import KubeApi
from harness.network import NETWORK_NAME
from harness.release import Release, ReleaseFailed, release
from harness.workloads import RUNTIME_PORT, code_configmap, invoke, runtime_deployment
from loadgen import percentile

NAMESPACE = "default"
NAME = "coldstart"
SELECTOR = f"app.kubernetes.io/name={NAME}"
CODE = "def handler(event, context):\n    return {'ok': True}\n"
TRIAL_TIMEOUT = 60.0
POLL = 0.002  # seconds between looks at the IPAM folder and /healthz: well below the steps
STEPS = (
    "wake-up",  # scale call -> the ReplicaSet's pod exists
    "scheduled",  # -> bound to the node
    "sandbox+network",  # -> the CNI plugin gave the pod its IP (kubelet pickup, pause, CNI)
    "container started",  # -> runc started the runtime (containerd's StartContainer returned)
    "runtime ready",  # -> the runtime's /healthz answers (Python start, workers, listen)
    "response",  # -> the first invocation's answer
)
STARTED = re.compile(r'time="([^"]+)" level=info msg="StartContainer for .* returns successfully"')


PRODUCT_STEPS = (
    "wake-up",  # request sent to the gateway -> the function's pod exists (wake-up, scale, RS)
    "scheduled",  # -> bound to the node
    "container started",  # -> runc started the runtime (sandbox, CNI, container)
    "pod Ready",  # -> the kubelet reported the pod Ready (a step only when before the answer)
    "response",  # -> the answer (the pod's announcement or EndpointSlice, forward, invoke, back)
)
FUNCTION_CODE = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"


@dataclass
class Trial:
    began: float
    steps: tuple[str, ...] = STEPS
    marks: dict[str, float] = field(default_factory=dict)
    reported_running: float | None = None
    ready_condition: float | None = None
    gateway_held: float | None = None

    def mark(self, step: str, when: float) -> None:
        self.marks.setdefault(step, when)

    def durations(self) -> dict[str, float]:
        """Each step's own share, in order; a step not seen is folded into the next one."""
        shares, previous = {}, self.began
        for step in self.steps:
            if step in self.marks:
                shares[step] = self.marks[step] - previous
                previous = self.marks[step]
        return shares

    @property
    def total(self) -> float:
        return self.marks["response"] - self.began


def _healthz(ip: str) -> bool:
    # A short timeout: until the pod's interface is up, a SYN goes unanswered rather than
    # refused, and a long timeout would be counted as the runtime's start.
    try:
        with urllib.request.urlopen(f"http://{ip}:{RUNTIME_PORT}/healthz", timeout=0.1) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _observe(trial: Trial, pod: dict[str, Any], seen: float) -> None:
    """Record what this pod event shows, stamped when the event arrived."""
    trial.mark("wake-up", seen)
    if pod["spec"].get("nodeName"):
        trial.mark("scheduled", seen)
    for status in pod["status"].get("containerStatuses", []):
        if "running" in status.get("state", {}) and trial.reported_running is None:
            trial.reported_running = seen
    for condition in pod["status"].get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] == "True":
            trial.ready_condition = trial.ready_condition or seen


def _new_address(ipam: Path, before: set[str], deadline: float) -> str:
    """host-local writes one file per address it hands out: the new one is this pod's IP, known
    here as soon as the CNI plugin chose it, before the kubelet reports anything."""
    while time.monotonic() < deadline:
        fresh = {p.name for p in ipam.iterdir()} - before if ipam.exists() else set()
        addresses = [name for name in fresh if name.count(".") == 3]
        if addresses:
            return addresses[0]
        time.sleep(POLL)
    raise TimeoutError(f"no pod address handed out within {TRIAL_TIMEOUT:.0f} s")


def _container_started(log: Path, offset: int, began_wall: float) -> float | None:
    """When containerd's StartContainer returned (wall clock), from the log lines written
    since `offset`; its stamps have nanoseconds, the API's have seconds."""
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    for match in STARTED.finditer(text):
        stamp = datetime.datetime.fromisoformat(match.group(1)[:26] + "+00:00").timestamp()
        if stamp >= began_wall:
            return stamp
    return None


def one_trial(api: KubeApi, running: Cluster) -> Trial:
    listing = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}")
    watch = api.watch(
        f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}",
        resource_version=listing["metadata"]["resourceVersion"],
    )
    ipam = running.workdir / "cni" / "ipam" / NETWORK_NAME
    before = {p.name for p in ipam.iterdir()} if ipam.exists() else set()
    log = running.runtime.server.log
    offset = log.stat().st_size
    try:
        trial = Trial(began=time.monotonic())
        wall_offset = time.time() - trial.began  # wall clock = monotonic + offset
        api.scale(NAMESPACE, NAME, 1)
        deadline = trial.began + TRIAL_TIMEOUT
        ip = _new_address(ipam, before, deadline)
        trial.mark("sandbox+network", time.monotonic())
        # Only once the container runs: a connection tried while the pod's interface is still
        # being set up leaves an unanswered ARP entry, and the kernel asks again only a second
        # later (a delay the gateway, which waits for EndpointSlices, never sees).
        while (started := _container_started(log, offset, trial.began + wall_offset)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"container not started within {TRIAL_TIMEOUT:.0f} s")
            time.sleep(POLL)
        trial.mark("container started", started - wall_offset)
        # Poll the runtime as an eager client would, while the watch goes on.
        while not _healthz(ip):
            if time.monotonic() > deadline:
                raise TimeoutError(f"runtime at {ip} not answering within {TRIAL_TIMEOUT:.0f} s")
            time.sleep(POLL)
        trial.mark("runtime ready", time.monotonic())
        answer = invoke(ip, {"trial": True})
        trial.mark("response", time.monotonic())
        if answer.body != {"ok": True}:
            raise RuntimeError(f"unexpected answer {answer.body!r}")
        # The kubelet's reports (running, Ready) come later: wait for them for the breakdown.
        for event in watch.until(time.monotonic() + 5):
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


def report(trials: list[Trial], *, title: str, since: str) -> None:
    totals = [t.total for t in trials]
    p50 = statistics.median(totals)
    print(f"\ncold start, {title} ({len(trials)} trials)")
    print(
        f"  p50 {p50 * 1000:6.0f} ms   p95 {percentile(totals, 0.95) * 1000:6.0f} ms"
        "   (target p50 <= 1500 ms)"
    )
    print("  breakdown, median of each step's own share:")
    medians = {}
    for step in trials[0].steps:
        shares = [t.durations()[step] for t in trials if step in t.durations()]
        medians[step] = statistics.median(shares) if shares else 0.0
        print(f"    {step:18} {medians[step] * 1000:6.0f} ms")
    for label, values in (
        ("kubelet reports the container running", [t.reported_running for t in trials]),
        ("kubelet marks the pod Ready", [t.ready_condition for t in trials]),
    ):
        after = [v - t.began for v, t in zip(values, trials, strict=True) if v is not None]
        if after:
            print(f"  {label}: p50 {statistics.median(after) * 1000:.0f} ms after {since}")
    worst = max(medians, key=lambda step: medians[step])
    print(f"  dominant step: {worst} ({medians[worst] / p50:.0%} of p50)")


def product_trial(api: KubeApi, running: Cluster, *, gateway: str, name: str) -> Trial:
    """One request through the gateway to a Function at zero; the pod's steps from a watch and
    containerd's log; the gateway's own account from its Server-Timing header."""
    selector = f"kubelambda.dev/function={name}"
    listing = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}")
    if listing["items"]:
        raise RuntimeError(f"{name} is not at zero: {len(listing['items'])} pod(s)")
    watch = api.watch(
        f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}",
        resource_version=listing["metadata"]["resourceVersion"],
    )
    log = running.runtime.server.log
    offset = log.stat().st_size
    try:
        trial = Trial(began=time.monotonic(), steps=PRODUCT_STEPS)
        wall_offset = time.time() - trial.began
        with urllib.request.urlopen(f"{gateway}/{name}", timeout=TRIAL_TIMEOUT) as answer:
            body = answer.read()
            timing = answer.headers.get("server-timing", "")
        trial.mark("response", time.monotonic())
        if body != b"ok":
            raise RuntimeError(f"unexpected answer {body!r}")
        match = re.search(r"coldstart;dur=([0-9.]+)", timing)
        trial.gateway_held = float(match.group(1)) / 1000 if match else None
        for event in watch.until(time.monotonic() + 3):
            _observe(trial, event.object, event.seen)
            if trial.ready_condition is not None:
                break
        # An announced pod answers before the kubelet reports it: then "pod Ready" is no step.
        if trial.ready_condition is not None and trial.ready_condition < trial.marks["response"]:
            trial.mark("pod Ready", trial.ready_condition)
        started = _container_started(log, offset, trial.began + wall_offset)
        if started is not None:
            trial.mark("container started", started - wall_offset)
    finally:
        watch.stop()
    return trial


def wait_no_function_pods(api: KubeApi, namespace: str, timeout: float = TRIAL_TIMEOUT) -> None:
    """Until no Function's pod is left in `namespace` (the previous trial's terminated)."""
    deadline = time.monotonic() + timeout
    path = f"/api/v1/namespaces/{namespace}/pods?labelSelector=kubelambda.dev/function"
    while api.request("GET", path)["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Function pods still in {namespace} after {timeout:.0f} s")
        time.sleep(0.2)


def run_product(running: Cluster, installed: Release, trials: int) -> list[Trial]:
    """Cold starts through the product: one Function per trial (each at zero, as the
    controller creates them), one request each through the gateway."""
    names = [f"cold{index}" for index in range(trials + 1)]
    objects = [
        item
        for name in names
        for item in function_manifests(
            name, code=FUNCTION_CODE, path=f"/{name}", namespace=NAMESPACE
        )
    ]
    apply_ready(running, objects, namespace=NAMESPACE)
    api = KubeApi(running.api)
    measured, failed = [], 0
    for index, name in enumerate(names):
        # Each trial alone: a Function stays up for scaleToZeroAfterSeconds, and twenty of them
        # would hold the node's CPU requests (the next pods Pending, answered 504).
        wait_no_function_pods(api, NAMESPACE)
        try:
            trial = product_trial(api, running, gateway=installed.gateway_url, name=name)
        except (OSError, RuntimeError) as exc:
            print(f"trial {index:2}: FAILED {exc!r}", flush=True)
            failed += 1
            continue
        finally:
            running.kubectl(
                "delete", f"fn/{name}", f"trig/{name}-http", "-n", NAMESPACE, "--wait=false"
            )
        if index == 0:
            continue  # unmeasured: it warms the page cache with the image's files
        measured.append(trial)
        shares = " ".join(f"{k}={v * 1000:.0f}" for k, v in trial.durations().items())
        hold = f", gateway held {trial.gateway_held * 1000:.0f}" if trial.gateway_held else ""
        print(f"trial {index:2}: {trial.total * 1000:5.0f} ms  ({shares}{hold})", flush=True)
    if failed:
        print(f"{failed} trial(s) failed")
    report(
        measured,
        title="request at zero replicas -> first response through the gateway",
        since="the request",
    )
    before = [
        t
        for t in measured
        if t.reported_running is not None and t.marks["response"] < t.reported_running
    ]
    print(
        f"  answered before the kubelet reported the pod running (it announced itself): "
        f"{len(before)} of {len(measured)}"
    )
    held = [t.gateway_held for t in measured if t.gateway_held is not None]
    if held:
        print(
            f"  Server-Timing coldstart (the gateway's hold): p50 "
            f"{statistics.median(held) * 1000:.0f} ms"
        )
    return measured


def run_raw(running: Cluster, trials: int) -> list[Trial]:
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
                # The pod shape the controller gives a small inline-code Function: no volumes.
                code_in_environment={"app.py": CODE},
            ),
        ]
    )
    api = KubeApi(running.api)
    # One unmeasured start first: it warms the page cache with the image's files.
    one_trial(api, running)
    scale_to_zero(api, running)
    measured = []
    for index in range(trials):
        trial = one_trial(api, running)
        measured.append(trial)
        shares = " ".join(f"{k}={v * 1000:.0f}" for k, v in trial.durations().items())
        print(f"trial {index + 1:2}: {trial.total * 1000:5.0f} ms  ({shares})", flush=True)
        scale_to_zero(api, running)
    report(
        measured,
        title="raw: Deployment 0 -> 1, first response over the pod IP",
        since="the scale call",
    )
    return measured


def _line(label: str, totals: list[float], target: str) -> str:
    if not totals:
        return f"  {label:44} not measured"
    return (
        f"  {label:44} p50 {statistics.median(totals) * 1000:6.0f} ms"
        f"   p95 {percentile(totals, 0.95) * 1000:6.0f} ms   {target}"
    )


def side_by_side(raw: list[Trial], product: list[Trial], pool: list[float]) -> None:
    """The paths measured in this run, one line each."""
    started = [
        t.marks["container started"] - t.began for t in raw if "container started" in t.marks
    ]
    print("\nside by side (this run):")
    print(_line("raw: scale call -> container started", started, "(reference)"))
    print(_line("raw: scale call -> first response (pod IP)", [t.total for t in raw], ""))
    print(
        _line(
            "Deployment path (request -> response)", [t.total for t in product], "target p50 <= 600"
        )
    )
    print(_line("warm pool (request -> response)", pool, "targets p50 <= 100, p95 <= 150"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--path",
        choices=("product", "raw", "pool", "all", "both"),
        default="all",
        help="through the installed chart's gateway (Deployment path), the raw Deployment path,"
        " the warm pool's path, or all three (default; `both` is the same)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    with cluster() as running, tempfile.TemporaryDirectory() as scratch:
        print(f"cluster up in {time.monotonic() - started:.0f} s; logs in {running.log_dir}")
        usage = running.resident_mib()
        listed = ", ".join(f"{name} {mib:.0f}" for name, mib in usage.items())
        print(f"cluster idle resident memory: {sum(usage.values()):.0f} MiB ({listed})")
        paths = ("raw", "product", "pool") if args.path in ("all", "both") else (args.path,)
        raw = run_raw(running, args.trials) if "raw" in paths else []
        product: list[Trial] = []
        pool: list[float] = []
        if "product" in paths or "pool" in paths:
            with ExitStack() as stack:
                try:
                    installed = stack.enter_context(release(running, workdir=Path(scratch)))
                except ReleaseFailed as exc:
                    print(f"\nproduct and pool paths unavailable, not measured: {exc}")
                    installed = None
                if installed is not None and "pool" in paths:
                    pool = [t.total for t in run_pool(running, installed, args.trials)]
                if installed is not None and "product" in paths:
                    product = run_product(running, installed, args.trials)
        side_by_side(raw, product, pool)
    return 0


if __name__ == "__main__":
    sys.exit(main())
