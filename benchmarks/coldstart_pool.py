"""The warm pool's path of benchmarks/e2e_coldstart.py: one fresh Function per trial in the
release's pool namespace, at zero, one request through the gateway, served by a specialised pool
pod. e2e_coldstart.py's main calls ``run_pool`` with the release it installed.

The breakdown joins three clocks: this process's (request sent, the pod's relabel and the
Function's EndpointSlice turning ready, seen by watches; the answer), and the operator's own
account of the warm start in its WarmStarted Event (from the wake-up to the relabel: claim and
code read, specialisation with the handler's init, relabel). The wake-up is what remains between
the request and the operator's start, so it includes the watch's delivery of the relabel, and
can come out a few ms below zero when the watch shows the relabel before the operator has the
patch's answer (that slack then counts in the relabel step). The gateway sends to the pod the
wake-up's answer names, so "EndpointSlice ready" is a step only in trials where the slice was
ready before the answer came (the gateway got the pod from its watch, not from the answer). A
trial whose first answer came from the Deployment's pod (the answer names the pod that gave it)
still counts in p50/p95; the steps only from trials the pool served.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.kit import apply_ready, function_manifests
from harness.cluster import Cluster
from harness.kubeapi import KubeApi
from harness.release import POOL_NAMESPACE, POOL_SIZE, Release
from loadgen import percentile

POOL_LABEL = "kubelambda.dev/pool"
SPECIALIZED_FOR = "kubelambda.dev/specialized-for"
POOL_PORT = 8079
TRIAL_TIMEOUT = 60.0
# The answer names the pod that gave it: a pool pod's name starts with POOL_POD.
CODE = (
    "import socket\n\n\ndef handler(event, context):\n"
    "    return {'statusCode': 200, 'body': socket.gethostname()}\n"
)
POOL_POD = "kubelambda-pool-"
STEPS = (
    "wake-up",  # request sent -> the operator starts the warm start (gateway, wake call)
    "claim+code read",  # -> a pool pod picked, the code and Secrets read (operator)
    "specialise",  # -> the pod answered 200: files written, runtime forked, init run
    "relabel",  # -> the pod's patch (Function labels, owner) applied
    "EndpointSlice ready",  # -> the Function's EndpointSlice lists the pod ready (watch)
    "response",  # -> the gateway dispatched and the answer came back
)
WARM_STARTED = re.compile(
    r"after (?P<total>\d+) ms: claimed and code read in (?P<claim>\d+) ms, specialised in"
    r" (?P<specialise>\d+) ms \(the handler's init (?P<init>[\d.?]+) ms\), relabelled in"
    r" (?P<relabel>\d+) ms"
)


@dataclass
class PoolTrial:
    began: float
    marks: dict[str, float] = field(default_factory=dict)
    init_ms: float | None = None
    event: str = ""
    fallback: bool = False  # no WarmStarted: the Deployment served it

    def durations(self) -> dict[str, float]:
        shares, previous = {}, self.began
        for step in STEPS:
            if step in self.marks:
                shares[step] = self.marks[step] - previous
                previous = self.marks[step]
        return shares

    @property
    def total(self) -> float:
        return self.marks["response"] - self.began


def _ready(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def wait_pool_full(api: KubeApi, *, timeout: float = 120.0) -> list[dict[str, Any]]:
    """POOL_SIZE unclaimed pool pods, all Ready, and nothing else of the namespace starting or
    stopping (a previous trial's pods would share the cores with the next one)."""
    deadline = time.monotonic() + timeout
    while True:
        pods = api.request("GET", f"/api/v1/namespaces/{POOL_NAMESPACE}/pods")["items"]
        pool = [p for p in pods if POOL_LABEL in p["metadata"].get("labels", {})]
        if len(pool) == POOL_SIZE == len(pods) and all(_ready(p) for p in pool):
            return pool
        if time.monotonic() > deadline:
            names = [(p["metadata"]["name"], _ready(p)) for p in pods]
            raise TimeoutError(f"the pool not full and alone after {timeout:.0f} s: {names}")
        time.sleep(0.2)


def _warm_started(api: KubeApi, name: str, deadline: float) -> str | None:
    path = (
        f"/api/v1/namespaces/{POOL_NAMESPACE}/events?fieldSelector="
        f"involvedObject.name={name},reason=WarmStarted"
    )
    while time.monotonic() < deadline:
        items = api.request("GET", path)["items"]
        if items:
            return str(items[0]["message"])
        time.sleep(0.1)
    return None


def pool_trial(api: KubeApi, *, gateway: str, name: str) -> PoolTrial:
    import urllib.request

    pods = f"/api/v1/namespaces/{POOL_NAMESPACE}/pods"
    slices = (
        f"/apis/discovery.k8s.io/v1/namespaces/{POOL_NAMESPACE}/endpointslices"
        f"?labelSelector=kubernetes.io/service-name={name}"
    )
    pod_watch = api.watch(
        pods, resource_version=api.request("GET", pods)["metadata"]["resourceVersion"]
    )
    slice_watch = api.watch(
        slices, resource_version=api.request("GET", slices)["metadata"]["resourceVersion"]
    )
    try:
        trial = PoolTrial(began=time.monotonic())
        with urllib.request.urlopen(f"{gateway}/{name}", timeout=TRIAL_TIMEOUT) as answer:
            body = answer.read()
        response = time.monotonic()
        if not body:
            raise RuntimeError("an empty answer")
        relabelled = ready = None
        for event in pod_watch.until(time.monotonic() + 2):
            meta = event.object["metadata"]
            if meta.get("annotations", {}).get(SPECIALIZED_FOR, "").endswith(f"/{name}"):
                relabelled = event.seen
                break
        for event in slice_watch.until(time.monotonic() + 2):
            endpoints = event.object.get("endpoints") or []
            if any((e.get("conditions") or {}).get("ready") for e in endpoints):
                ready = event.seen
                break
        message = _warm_started(api, name, time.monotonic() + 5)
    finally:
        pod_watch.stop()
        slice_watch.stop()
    found = WARM_STARTED.search(message or "")
    if found is None or relabelled is None or not body.startswith(POOL_POD.encode()):
        trial.fallback = True  # the Deployment's pod answered first
        trial.event = f"{body.decode(errors='replace')} answered; {message or 'no WarmStarted'}"
    else:
        trial.event = message or ""
        ms = {key: float(value) / 1000 for key, value in found.groupdict().items() if key != "init"}
        trial.init_ms = float(found["init"]) if found["init"] != "?" else None
        wake = relabelled - ms["total"]
        trial.marks["wake-up"] = wake
        trial.marks["claim+code read"] = wake + ms["claim"]
        trial.marks["specialise"] = wake + ms["claim"] + ms["specialise"]
        # The gateway sends to the pod the wake-up's answer names: the answer may come before
        # this watch shows the relabel.
        trial.marks["relabel"] = min(relabelled, response)
    if ready is not None and ready <= response:
        trial.marks["EndpointSlice ready"] = ready
    trial.marks["response"] = response
    return trial


def _delete(running: Cluster, name: str) -> None:
    running.kubectl(
        "delete",
        f"fn/{name}",
        f"trig/{name}-http",
        "-n",
        POOL_NAMESPACE,
        "--wait=false",
        check=False,
    )


def pool_pod_memory(running: Cluster, pod: dict[str, Any]) -> str:
    """The idle memory of one pool pod's cgroup, read on the node (v2 memory.current, or v1
    memory.usage_in_bytes), with its working set (less inactive file pages)."""
    uid = pod["metadata"]["uid"]
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")):
        for folder in root.glob("kubepods*/**/"):
            if uid.replace("-", "_") not in folder.name and uid not in folder.name:
                continue
            for usage_file in ("memory.current", "memory.usage_in_bytes"):
                usage = folder / usage_file
                if usage.exists():
                    used = int(usage.read_text())
                    stat = dict(
                        (line.split()[0], int(line.split()[1]))
                        for line in (folder / "memory.stat").read_text().splitlines()
                    )
                    # v1's pod folder holds no process itself: its totals count the containers.
                    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
                    rss = stat.get("total_rss", stat.get("anon", 0))
                    return (
                        f"{used / 2**20:.1f} MiB ({usage}); working set"
                        f" {(used - inactive) / 2**20:.1f} MiB, anonymous {rss / 2**20:.1f} MiB"
                    )
    return f"no cgroup found for pod uid {uid}"


def run_pool(running: Cluster, installed: Release, trials: int) -> list[PoolTrial]:
    """Cold starts through the warm pool; prints each trial, the summary and one pool pod's idle
    memory; answers the measured trials (the caller prints them beside the other paths)."""
    api = KubeApi(running.api)
    names = [f"pool{index}" for index in range(trials + 1)]
    objects = [
        item
        for name in names
        for item in function_manifests(name, code=CODE, path=f"/{name}", namespace=POOL_NAMESPACE)
    ]
    apply_ready(running, objects, namespace=POOL_NAMESPACE)
    pool = wait_pool_full(api)
    print(f"idle pool pod {pool[0]['metadata']['name']}: {pool_pod_memory(running, pool[0])}")
    measured: list[PoolTrial] = []
    failed = 0
    for index, name in enumerate(names):
        wait_pool_full(api)
        try:
            trial = pool_trial(api, gateway=installed.gateway_url, name=name)
        except (OSError, RuntimeError) as exc:
            print(f"pool trial {index:2}: FAILED {exc!r}", flush=True)
            failed += 1
            continue
        finally:
            _delete(running, name)
        if index == 0:
            continue  # unmeasured: the first warm start fills the operator's caches
        measured.append(trial)
        shares = " ".join(f"{k}={v * 1000:.0f}" for k, v in trial.durations().items())
        extra = " FALLBACK: " + trial.event if trial.fallback else f", init {trial.init_ms} ms"
        print(f"pool trial {index:2}: {trial.total * 1000:5.0f} ms  ({shares}{extra})", flush=True)
    if failed:
        print(f"{failed} pool trial(s) failed")
    report_pool(measured)
    return measured


def report_pool(trials: list[PoolTrial]) -> None:
    totals = [t.total for t in trials]
    p50 = statistics.median(totals)
    warm = [t for t in trials if not t.fallback]
    print(f"\ncold start, warm pool ({len(trials)} trials, {len(trials) - len(warm)} fell back)")
    print(
        f"  p50 {p50 * 1000:6.0f} ms   p95 {percentile(totals, 0.95) * 1000:6.0f} ms"
        "   (targets p50 <= 100 ms, p95 <= 150 ms)"
    )
    print("  breakdown, median of each step's own share (trials served by the pool):")
    medians = {}
    for step in STEPS:
        shares = [t.durations()[step] for t in warm if step in t.durations()]
        medians[step] = statistics.median(shares) if shares else 0.0
        print(f"    {step:20} {medians[step] * 1000:6.0f} ms")
    inits = [t.init_ms for t in warm if t.init_ms is not None]
    if inits:
        print(
            "  the pool pod's initMs (request to runtime ready):"
            f" p50 {statistics.median(inits):.0f} ms"
        )
    worst = max(medians, key=lambda step: medians[step])
    print(f"  dominant step: {worst} ({medians[worst] / p50:.0%} of p50)")
