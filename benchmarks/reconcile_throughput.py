"""Benchmark: reconcile throughput of the operator on the harness's real API server.

1,000 Functions (minReplicas 0) are applied at once with `kubectl apply --server-side`; the
clock runs until every one reports Ready (ScaledToZero), which means its Service and
Deployment exist (its small inline code in the Deployment's pod template, the namespace's shared
NetworkPolicy in place) and its status is written. Prints Functions/s,
the operator's resident memory at the end, and — measured in the same run, with the same
kubectl and server — how fast 1,000 plain ConfigMaps are applied, so the figure reads as a
ratio; and how fast the same 1,000 Functions are merely stored (applied where no operator
watches), the floor set by the API server's validation of them. Targets: >= 20 Functions/s,
<= 150 MiB; at 15,000 Functions (issue 17): >= 0.15 of the ConfigMaps' rate, <= 200 MiB.

It also prints the API requests per Function that the API server counted while the operator
worked (its apiserver_request_total, every client: kubectl's apply of the Functions and this
script's watch included) and the time the server spent on each kind of request, and, from the
operator's own metrics, how many times it reconciled each Function (more than once: watch
events of its own writes, or retries) and how busy its workers were. The script
follows the Functions' status with one watch, not by listing them: a list of 15,000
Functions every quarter second would cost the API server more than the operator does.
``--profile FILE`` samples the operator with py-spy over the measured span (collapsed stacks,
and a summary); ``--tracemalloc FILE`` runs it under tracemalloc (slow: for where memory
goes, not for the figures) and writes its largest allocation sites at the end.

Then (unless ``--no-records``) each Function gets a ``status.autoscaler`` record, written as the
autoscaler writes its decisions (a merge patch of the status, two writers): a new autoscaler
leader writes one for every Function. Printed: how many reconciles they caused (none expected:
they change nothing the operator owns) and the operator's CPU meanwhile.

Last (unless ``--no-restart``), the operator is stopped and another started on the same
Functions, as a new pod after an upgrade or an eviction would be: it lists every Function and
every object they own, and reconciles each Function once, finding nothing to change. Printed:
the time until all are reconciled, its CPU and memory (the same 200 MiB target), and what it
asked of the API server meanwhile (no writes expected).

No controller-manager runs (nothing here needs pods), so the API server and etcd share the
machine only with the operator and kubectl.

    python benchmarks/reconcile_throughput.py [--functions 1000] [--workers 8]
        [--profile FILE] [--tracemalloc FILE] [--no-records] [--no-restart]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.apiserver import ApiServer, api_server  # noqa: E402
from kubelambda.platforms.kubernetes.client import KubeClient  # noqa: E402
from kubelambda.platforms.kubernetes.errors import ApiError  # noqa: E402
from kubelambda.platforms.kubernetes.kinds import FUNCTION  # noqa: E402
from kubelambda.platforms.kubernetes.replicas import AUTOSCALER_MANAGER  # noqa: E402

CODE = 'def handler(event, context):\n    return {"n": %d}\n'

# Runs the operator under tracemalloc; SIGUSR1 writes its largest allocation sites to the file
# named by the first argument, grouped by line, then by file.
TRACED = """
import os, signal, sys, tracemalloc
tracemalloc.start(1)
out = sys.argv.pop(1)
def dump(*_):
    snapshot = tracemalloc.take_snapshot()
    with open(out + ".part", "w") as f:
        for group in ("lineno", "filename"):
            stats = snapshot.statistics(group)
            f.write(f"total {sum(s.size for s in stats) / 2**20:.1f} MiB by {group}\\n")
            for stat in stats[:40]:
                f.write(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} {stat.traceback}\\n")
    os.replace(out + ".part", out)
signal.signal(signal.SIGUSR1, dump)
from kubelambda.cli import main
sys.exit(main(sys.argv[1:]))
"""


def documents(kind: str, count: int, namespace: str) -> str:
    items: list[dict[str, Any]] = []
    for n in range(count):
        if kind == "ConfigMap":
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{n}", "namespace": namespace},
                    "data": {"app.py": CODE % n},
                }
            )
        else:
            items.append(
                {
                    "apiVersion": "kubelambda.dev/v1alpha1",
                    "kind": "Function",
                    "metadata": {"name": f"fn-{n}", "namespace": namespace},
                    "spec": {
                        "runtime": "python3.12",
                        "handler": "app.handler",
                        "code": {"inline": {"files": {"app.py": CODE % n}}},
                    },
                }
            )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def timed_apply(api: ApiServer, body: str) -> float:
    started = time.perf_counter()
    api.kubectl("apply", "--server-side", "-f", "-", input=body, timeout=7200)
    return time.perf_counter() - started


def _is_ready(obj: dict[str, Any]) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return True
    return False


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_all_ready(client: KubeClient, namespace: str, count: int, *, timeout: float) -> float:
    """When ``count`` Functions of ``namespace`` are Ready, followed with one list and a watch
    (listing again only when the watch expires)."""
    deadline = time.perf_counter() + timeout
    ready: set[str] = set()
    version: str | None = None
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise SystemExit(f"only {len(ready)} of {count} Functions Ready after {timeout:.0f} s")
        if version is None:
            listed = client.list_objects(FUNCTION, namespace=namespace)
            ready = {item["metadata"]["name"] for item in listed.items if _is_ready(item)}
            version = listed.resource_version
        if len(ready) >= count:
            return time.perf_counter()
        try:
            for event in client.watch(
                FUNCTION,
                namespace=namespace,
                resource_version=version,
                timeout_seconds=max(1, min(60, int(remaining))),
            ):
                version = str(event.object["metadata"].get("resourceVersion") or version)
                if event.type == "BOOKMARK":
                    continue
                name = event.object["metadata"]["name"]
                if event.type != "DELETED" and _is_ready(event.object):
                    ready.add(name)
                else:
                    ready.discard(name)
                if len(ready) >= count:
                    return time.perf_counter()
        except ApiError as exc:
            if exc.status != 410:
                raise
            version = None  # expired: list again


_SAMPLE = re.compile(
    r"^(apiserver_request_total|apiserver_request_duration_seconds_sum)\{(.*)\} (\S+)$"
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


Totals = dict[str, collections.defaultdict[tuple[str, str], float]]


def request_totals(api: ApiServer) -> Totals:
    """The API server's request counts and seconds so far, by (verb, resource[/subresource])."""
    text = api.kubectl("get", "--raw", "/metrics", timeout=120).stdout
    totals: Totals = {
        "apiserver_request_total": collections.defaultdict(float),
        "apiserver_request_duration_seconds_sum": collections.defaultdict(float),
    }
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match[2]))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        totals[match[1]][(labels.get("verb", ""), resource)] += float(match[3])
    return totals


def print_requests(
    before: Totals, after: Totals, functions: int, *, label: str = "while it worked"
) -> None:
    counts = {
        key: n - before["apiserver_request_total"][key]
        for key, n in after["apiserver_request_total"].items()
    }
    seconds = {
        key: n - before["apiserver_request_duration_seconds_sum"][key]
        for key, n in after["apiserver_request_duration_seconds_sum"].items()
    }
    rows = sorted(((n, key) for key, n in counts.items() if n >= functions / 20), reverse=True)
    writes = sum(n for n, (verb, _) in rows if verb not in ("GET", "LIST", "WATCH"))
    print(
        f"  API requests per Function {label} (all clients): {writes / functions:.2f}"
        " writes; by verb and resource, with the server's time in them:"
    )
    for n, key in rows:
        print(
            f"    {key[0]:6} {key[1]:28} {n / functions:5.2f}  {seconds.get(key, 0):7.1f} s"
            f" ({seconds.get(key, 0) / n * 1000:5.1f} ms each)"
        )


_RECONCILES = re.compile(
    r'^kubelambda_operator_reconciles_total\{kind="function",namespace="bench",[^}]*\} (\S+)$'
    r'|^kubelambda_operator_reconcile_duration_seconds_(sum|count)\{kind="function"\} (\S+)$',
    re.MULTILINE,
)


def reconcile_totals(port: int) -> tuple[float, float, float]:
    """The operator's own count of Function reconciles in "bench", and the count and seconds of
    all its Function reconciles (from its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    bench = count = seconds = 0.0
    for match in _RECONCILES.finditer(text):
        if match[1] is not None:
            bench += float(match[1])
        elif match[2] == "sum":
            seconds = float(match[3])
        else:
            count = float(match[3])
    return bench, count, seconds


def print_reconciles(
    before: tuple[float, float, float],
    after: tuple[float, float, float],
    *,
    functions: int,
    workers: int,
    elapsed: float,
) -> None:
    bench, count, seconds = (b - a for a, b in zip(before, after, strict=True))
    mean = seconds / count if count else 0.0
    print(
        f"  reconciles per Function: {bench / functions:.2f}, {mean * 1000:.0f} ms each on"
        f" average; the {workers} workers were busy {seconds / (workers * elapsed):.0%}"
        " of the time (near 100%: Functions waited for a free worker)"
    )


@dataclass
class Records:
    """The autoscaler's records of a decision, one per Function, and what the operator did."""

    seconds: float  # to write them all
    reconciles: float  # Function reconciles in "bench" they caused
    cpu: float  # the operator's CPU seconds from the first write until it was quiet again


def records(
    client: KubeClient, operator: subprocess.Popen[bytes], *, functions: int, metrics_port: int
) -> Records:
    """Write ``status.autoscaler`` on every Function of "bench" as a new autoscaler leader does
    (autoscaler/reports.py: two writers, a merge patch of the status), then wait until the
    operator's count of reconciles has not moved for 3 s."""
    status = {
        "autoscaler": {
            "desiredReplicas": 0,
            "reason": "idle",
            "lastDecisionTime": "2026-01-01T00:00:00Z",
        }
    }

    def write(n: int) -> None:
        client.merge_patch(
            FUNCTION,
            namespace="bench",
            name=f"fn-{n}",
            patch={"status": status},
            subresource="status",
            field_manager=AUTOSCALER_MANAGER,
        )

    before = reconcile_totals(metrics_port)[0]
    cpu = cpu_seconds(operator.pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as writers:
        list(writers.map(write, range(functions)))
    seconds = time.perf_counter() - started
    count, still_since = reconcile_totals(metrics_port)[0], time.monotonic()
    while time.monotonic() - still_since < 3:
        time.sleep(0.5)
        now = reconcile_totals(metrics_port)[0]
        if now != count:
            count, still_since = now, time.monotonic()
    return Records(seconds, count - before, cpu_seconds(operator.pid) - cpu)


@dataclass
class Restart:
    """A second operator's start on the Functions the first reconciled."""

    seconds: float  # from its start to every Function reconciled once more
    cpu: float  # the operator's CPU seconds meanwhile
    rss: float  # its RSS then, MiB
    peak: float  # and its peak
    requests: tuple[Totals, Totals]  # the API server's counts before and after


def restart(
    api: ApiServer, args: argparse.Namespace, log: Any, *, metrics_port: int
) -> tuple[subprocess.Popen[bytes], Restart]:
    """Start another operator (the first one stopped) and time it until it has reconciled
    every Function of "bench" once, as a restart does (it lists them all): the process's
    start, its watches' first listing of the Functions and of the objects they own, and the
    reconciles that find nothing to change."""
    before = request_totals(api)
    started = time.perf_counter()
    operator = start_operator(api, args, log, metrics_port=metrics_port)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            if reconcile_totals(metrics_port)[0] >= args.functions:
                break
        except OSError:  # not serving its metrics yet
            pass
        if operator.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the restarted operator did not reconcile every Function")
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(operator.pid)
    rss, peak = rss_mib(operator.pid)
    return operator, Restart(seconds, cpu, rss, peak, (before, request_totals(api)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def summarise_profile(path: Path, top: int = 25) -> None:
    """The functions most often on the operator's stacks (inclusive), from py-spy's raw output."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        total += int(samples)
        for frame in set(stack.split(";")):
            inclusive[re.sub(r":\d+\)$", ")", frame)] += int(samples)
    print(f"  operator profile: {total} samples; on the stack in the most of them:")
    for frame, count in inclusive.most_common(top):
        print(f"    {100 * count / max(total, 1):5.1f}%  {frame[:110]}")


def start_operator(
    api: ApiServer, args: argparse.Namespace, log: Any, *, metrics_port: int
) -> subprocess.Popen[bytes]:
    flags = [
        "operator",
        f"--kubeconfig={api.kubeconfig}",
        "--runtime-image=python3.12=localhost/kubelambda-runtime:bench",
        f"--workers={args.workers}",
        f"--metrics-port={metrics_port}",
        "--log-level=WARNING",
        # No periodic resync within a run: at 15,000 the creation and the records took longer
        # than its 5 minutes, and the resync's reconciles were counted as the records'.
        "--resync-seconds=3600",
        # Not "stored", where the floor's Functions wait unreconciled.
        "--namespace=bench",
        "--namespace=warmup",
    ]
    if args.tracemalloc:
        command = [sys.executable, "-c", TRACED, str(args.tracemalloc.resolve()), *flags]
    else:
        command = [sys.executable, "-m", "kubelambda.cli", *flags]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=api.env())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--profile", type=Path, help="py-spy's collapsed stacks of the operator")
    parser.add_argument("--tracemalloc", type=Path, help="the operator's allocation sites")
    parser.add_argument(
        "--no-records",
        dest="records",
        action="store_false",
        help="skip the autoscaler's status records on the reconciled Functions",
    )
    parser.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="skip the restart of the operator on the reconciled Functions",
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if args.profile and not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    logs = Path(tempfile.mkdtemp(prefix="kubelambda-bench-reconcile-"))
    with api_server(log_dir=logs) as api:
        api.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        api.kubectl("wait", "--for=condition=Established", "crd/functions.kubelambda.dev")
        for namespace in ("reference", "stored", "bench", "warmup"):
            api.kubectl("create", "namespace", namespace)
        client = KubeClient.from_config(api.kubeconfig)

        reference = timed_apply(api, documents("ConfigMap", args.functions, "reference"))
        stored = timed_apply(api, documents("Function", args.functions, "stored"))

        log = (logs / "operator.log").open("wb")
        metrics_port = _free_port()
        operator = start_operator(api, args, log, metrics_port=metrics_port)
        sampler: subprocess.Popen[bytes] | None = None
        try:
            # One Function first, so that start-up (imports, watches) is not in the figure.
            api.kubectl(
                "apply", "--server-side", "-f", "-", input=documents("Function", 1, "warmup")
            )
            wait_all_ready(client, "warmup", 1, timeout=120)
            idle_rss, _ = rss_mib(operator.pid)
            servers = {name: server.popen.pid for name, server in api.servers.items()}
            pids = {"operator": operator.pid, **servers}
            requests_before = request_totals(api)
            reconciles_before = reconcile_totals(metrics_port)
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            if args.profile:
                sampler = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(operator.pid),
                        "--format",
                        "raw",
                        "--gil",
                        "--rate",
                        "50",
                        "--nonblocking",
                        "--output",
                        str(args.profile),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

            started = time.perf_counter()
            submit = timed_apply(api, documents("Function", args.functions, "bench"))
            finished = wait_all_ready(client, "bench", args.functions, timeout=args.timeout)
            rss, peak = rss_mib(operator.pid)
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            if sampler is not None:
                sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                sampler.wait(timeout=60)
            requests_after = request_totals(api)
            reconciles_after = reconcile_totals(metrics_port)
            if args.tracemalloc:
                args.tracemalloc.unlink(missing_ok=True)
                operator.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + 600
                while not args.tracemalloc.exists():
                    if time.monotonic() > deadline:
                        raise SystemExit("the operator wrote no tracemalloc snapshot in 600 s")
                    time.sleep(1)  # a snapshot of a big heap takes a while
            recorded = None
            if args.records and not args.tracemalloc:
                recorded = records(
                    client, operator, functions=args.functions, metrics_port=metrics_port
                )
            restarted = None
            if args.restart and not args.tracemalloc:
                operator.terminate()
                operator.wait(timeout=30)
                operator, restarted = restart(api, args, log, metrics_port=_free_port())
        finally:
            if sampler is not None and sampler.poll() is None:
                sampler.kill()
            operator.terminate()
            operator.wait(timeout=30)
            log.close()

    elapsed = finished - started
    rate = args.functions / elapsed
    reference_rate = args.functions / reference
    floor_rate = args.functions / stored
    print(f"{args.functions} Functions applied at once ({args.workers} reconcile workers)")
    print(f"  load average when done: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"  kubectl apply of them, operator running:  {submit:6.1f} s")
    print(f"  apply -> all Ready:  {elapsed:6.1f} s = {rate:6.1f} Functions/s  (target >= 20)")
    print("  measured in the same run, same kubectl and server:")
    print(
        f"    kubectl apply of {args.functions} ConfigMaps:            {reference:6.1f} s"
        f" = {reference_rate:6.1f}/s"
    )
    print(
        f"    kubectl apply of {args.functions} Functions, no operator: {stored:6.1f} s"
        f" = {floor_rate:6.1f}/s"
    )
    print(
        f"  ratios: reconciled / merely stored Functions {rate / floor_rate:.2f};"
        f" reconciled Functions / applied ConfigMaps {rate / reference_rate:.2f}"
        " (each Function becomes 2 objects and a status; target at 15,000: >= 0.15)"
    )
    print(
        "  CPU seconds from apply to all Ready: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
        + "; per Function: "
        + ", ".join(
            f"{name} {seconds / args.functions * 1000:.1f} ms" for name, seconds in cpu.items()
        )
    )
    print(
        f"  operator RSS: {idle_rss:.0f} MiB idle, {rss:.0f} MiB at the end,"
        f" {peak:.0f} MiB peak  (target <= 150; at 15,000: <= 200)"
    )
    print_requests(requests_before, requests_after, args.functions)
    print_reconciles(
        reconciles_before,
        reconciles_after,
        functions=args.functions,
        workers=args.workers,
        elapsed=elapsed,
    )
    if recorded is not None:
        print(
            f"  the autoscaler's records ({args.functions} status writes in"
            f" {recorded.seconds:.1f} s): {recorded.reconciles / args.functions:.2f} reconciles"
            f" per Function (target 0), operator CPU {recorded.cpu:.1f} s"
            f" ({recorded.cpu / args.functions * 1000:.2f} ms per record)"
        )
    if restarted is not None:
        print(
            f"  operator restart: every Function reconciled once more {restarted.seconds:.1f} s"
            f" after the new process started ({args.functions / restarted.seconds:.0f}/s), its"
            f" CPU {restarted.cpu:.1f} s ({restarted.cpu / args.functions * 1000:.1f} ms per"
            f" Function); RSS {restarted.rss:.0f} MiB then, {restarted.peak:.0f} MiB peak"
            " (target at 15,000: <= 200)"
        )
        print_requests(*restarted.requests, args.functions, label="while it restarted")
    if args.profile:
        summarise_profile(args.profile)
    if args.tracemalloc:
        print(f"  allocation sites: {args.tracemalloc}")
    print(f"  logs: {logs}")


if __name__ == "__main__":
    main()
