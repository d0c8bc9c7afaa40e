"""What the warm-pool scenarios (test_warm_pool.py) share: Functions in the pool's namespace, a
record of every pod version a watch shows there (a specialised pod lives only until the hand-over),
a steady client loop through the gateway, and the pool's own state (unclaimed pods, /healthz).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from e2e.kit import http_get, wait_for
from harness.cluster import Cluster
from harness.kubeapi import KubeApi, Watch
from harness.release import POOL_NAMESPACE, POOL_SIZE

POOL_LABEL = "kubelambda.dev/pool"  # unclaimed pool pods only
FROM_POOL_LABEL = "kubelambda.dev/from-pool"  # every pod a pool started
SPECIALIZED_FOR = "kubelambda.dev/specialized-for"
FUNCTION_LABEL = "kubelambda.dev/function"
POOL_PORT = 8079
POOL_POD_PREFIX = "kubelambda-pool-"  # the pool Deployment's pods' names (and hostnames)


def function(
    name: str, *, code: str, env: list[dict[str, Any]] | None = None, timeout: int = 3
) -> list[dict[str, Any]]:
    """A Function in the pool's namespace (inline app.handler, open to unsigned Invoke API
    calls) and its HTTP Trigger at /NAME."""
    spec: dict[str, Any] = {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": code}}},
        "timeoutSeconds": timeout,
        "invoke": {"anonymous": True},
    }
    if env:
        spec["env"] = env
    return [
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": POOL_NAMESPACE},
            "spec": spec,
        },
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": f"{name}-http", "namespace": POOL_NAMESPACE},
            "spec": {"function": name, "http": {"path": f"/{name}", "methods": ["GET", "POST"]}},
        },
    ]


def function_status(running: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = running.get("fn", name, "-n", POOL_NAMESPACE).get("status") or {}
    return found


def wait_at_zero_on_pool_path(running: Cluster, *names: str, timeout: float = 120) -> None:
    """Each Function Ready, at zero replicas, and its status saying the pool serves it."""
    for name in names:

        def ready(name: str = name) -> bool:
            status = function_status(running, name)
            conditions = status.get("conditions") or []
            return status.get("coldStartPath") == "pool" and any(
                c["type"] == "Ready" and c["status"] == "True" for c in conditions
            )

        wait_for(ready, what=f"Function {name} Ready with coldStartPath pool", timeout=timeout)


def events(running: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    """The Events of reason `reason` about Function `name`."""
    found: list[dict[str, Any]] = running.get(
        "events",
        "-n",
        POOL_NAMESPACE,
        f"--field-selector=involvedObject.name={name},reason={reason}",
    )["items"]
    return found


def pool_state(ip: str) -> str:
    """A pool pod's /healthz state (the node reaches pods as the kubelet's probes do)."""
    status, _, body = http_get(f"http://{ip}:{POOL_PORT}/healthz", timeout=3)
    return str(json.loads(body).get("state", f"HTTP {status}"))


def unclaimed_pool_pods(running: Cluster) -> list[dict[str, Any]]:
    """Pool pods not claimed nor being deleted (Ready or not)."""
    pods: list[dict[str, Any]] = running.get("pods", "-n", POOL_NAMESPACE, "-l", POOL_LABEL)[
        "items"
    ]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def wait_pool_full(running: Cluster, *, timeout: float = 120) -> list[dict[str, Any]]:
    """POOL_SIZE unclaimed pool pods, each Ready and `waiting`, and no other unclaimed one."""

    def full() -> list[dict[str, Any]] | None:
        pods = unclaimed_pool_pods(running)
        ready = running.ready_pods(POOL_NAMESPACE, POOL_LABEL)
        if len(pods) != POOL_SIZE or len(ready) != POOL_SIZE:
            return None
        states = [pool_state(p["status"]["podIP"]) for p in ready]
        return ready if states == ["waiting"] * POOL_SIZE else None

    found: list[dict[str, Any]] = wait_for(
        full, what=f"the warm pool: {POOL_SIZE} Ready pods, all waiting", timeout=timeout
    )
    return found


@dataclass
class PodLog:
    """Every version of every pod of the pool's namespace a watch delivered, by pod name, with
    the monotonic time it arrived."""

    versions: dict[str, list[tuple[float, str, dict[str, Any]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seen: float, kind: str, pod: dict[str, Any]) -> None:
        with self.lock:
            self.versions.setdefault(pod["metadata"]["name"], []).append((seen, kind, pod))

    def of(self, name: str) -> list[tuple[float, str, dict[str, Any]]]:
        with self.lock:
            return list(self.versions.get(name, []))

    def names(self) -> list[str]:
        with self.lock:
            return list(self.versions)

    def first(self, name: str, *, ready: bool = False, deleting: bool = False) -> float | None:
        """When `name` was first seen Ready (or with a deletionTimestamp, or gone)."""
        for seen, kind, pod in self.of(name):
            if ready and _is_ready(pod):
                return seen
            if deleting and (kind == "DELETED" or pod["metadata"].get("deletionTimestamp")):
                return seen
        return None


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


@contextmanager
def pod_log(running: Cluster) -> Iterator[PodLog]:
    """Record the pool namespace's pods from now until the block ends."""
    api = KubeApi(running.api)
    path = f"/api/v1/namespaces/{POOL_NAMESPACE}/pods"
    listing = api.request("GET", path)
    log = PodLog()
    now = time.monotonic()
    for pod in listing["items"]:
        log.add(now, "LISTED", pod)
    watch: Watch = api.watch(path, resource_version=listing["metadata"]["resourceVersion"])
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            try:
                event = watch.next(0.2)
            except Exception:  # the watch ended: the scenario sees missing versions
                return
            if event is not None and event.type in ("ADDED", "MODIFIED", "DELETED"):
                log.add(event.seen, event.type, event.object)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        watch.stop()
        thread.join(timeout=5)


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic
    took: float
    status: int
    body: bytes

    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


def request(url: str, *, timeout: float = 60.0) -> Answer:
    sent = time.monotonic()
    try:
        status, _, body = http_get(url, timeout=timeout)
    except OSError as exc:  # refused, reset, timed out: a failed request like any other
        status, body = 0, repr(exc).encode()
    return Answer(sent=sent, took=time.monotonic() - sent, status=status, body=body)


class SteadyLoop:
    """`rate` requests a second to `url` for `seconds`, each in its own thread so a slow answer
    does not slow the loop; `answers` in the order they were sent."""

    def __init__(self, url: str, *, rate: float, seconds: float) -> None:
        self.url, self.rate, self.seconds = url, rate, seconds
        self._answers: dict[int, Answer] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._runner = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SteadyLoop:
        self._runner.start()
        return self

    def _one(self, index: int) -> None:
        answer = request(self.url)
        with self._lock:
            self._answers[index] = answer

    def _run(self) -> None:
        began = time.monotonic()
        for index in range(int(self.rate * self.seconds)):
            wake = began + index / self.rate
            time.sleep(max(0.0, wake - time.monotonic()))  # pacing the load, not a wait
            thread = threading.Thread(target=self._one, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def answer(self, index: int) -> Answer | None:
        with self._lock:
            return self._answers.get(index)

    def join(self, timeout: float) -> list[Answer]:
        deadline = time.monotonic() + timeout
        self._runner.join(max(0.0, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return [self._answers[i] for i in sorted(self._answers)]


def invoke_anonymous(
    url: str, name: str, *, timeout: float = 60.0
) -> tuple[int, dict[str, str], Any]:
    """An unsigned Invoke API call of Function `name` in the pool's namespace."""
    target = f"{url}/2015-03-31/functions/{POOL_NAMESPACE}.{name}/invocations"
    call = urllib.request.Request(target, data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            headers = {k.lower(): v for k, v in answer.headers.items()}
            return answer.status, headers, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()
