"""Benchmark: reconcile throughput of the operator on the harness's real API server.

1,000 Functions (minReplicas 0) are applied at once with `kubectl apply --server-side`; the
clock runs until every one reports Ready (ScaledToZero), which means its ConfigMap,
NetworkPolicy, Service and Deployment exist and its status is written. Prints Functions/s,
the operator's resident memory at the end, and — measured in the same run, with the same
kubectl and server — how fast 1,000 plain ConfigMaps are applied, so the figure reads as a
ratio; and how fast the same 1,000 Functions are merely stored (applied where no operator
watches), the floor set by the API server's validation of them. Targets: >= 20 Functions/s,
<= 150 MiB.

No controller-manager runs (nothing here needs pods), so the API server and etcd share the
machine only with the operator and kubectl.

    python benchmarks/reconcile_throughput.py [--functions 1000] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.apiserver import ApiServer, api_server  # noqa: E402
from kubelambda.platforms.kubernetes.client import KubeClient  # noqa: E402
from kubelambda.platforms.kubernetes.kinds import FUNCTION  # noqa: E402

CODE = 'def handler(event, context):\n    return {"n": %d}\n'


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
    api.kubectl("apply", "--server-side", "-f", "-", input=body, timeout=600)
    return time.perf_counter() - started


def ready_count(client: KubeClient, namespace: str) -> int:
    listed = client.list_objects(FUNCTION, namespace=namespace)
    ready = 0
    for item in listed.items:
        for condition in (item.get("status") or {}).get("conditions") or ():
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                ready += 1
    return ready


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
    deadline = time.perf_counter() + timeout
    while (ready := ready_count(client, namespace)) < count:
        if time.perf_counter() > deadline:
            raise SystemExit(f"only {ready} of {count} Functions Ready after {timeout:.0f} s")
        time.sleep(0.25)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
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
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubelambda.cli",
                "operator",
                f"--kubeconfig={api.kubeconfig}",
                "--runtime-image=python3.12=localhost/kubelambda-runtime:bench",
                f"--workers={args.workers}",
                "--log-level=WARNING",
                # Not "stored", where the floor's Functions wait unreconciled.
                "--namespace=bench",
                "--namespace=warmup",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=api.env(),
        )
        try:
            # One Function first, so that start-up (imports, watches) is not in the figure.
            api.kubectl(
                "apply", "--server-side", "-f", "-", input=documents("Function", 1, "warmup")
            )
            wait_all_ready(client, "warmup", 1, timeout=120)
            idle_rss, _ = rss_mib(operator.pid)
            servers = {name: server.popen.pid for name, server in api.servers.items()}
            pids = {"operator": operator.pid, **servers}
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}

            started = time.perf_counter()
            submit = timed_apply(api, documents("Function", args.functions, "bench"))
            finished = wait_all_ready(client, "bench", args.functions, timeout=args.timeout)
            rss, peak = rss_mib(operator.pid)
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            log.close()

    elapsed = finished - started
    rate = args.functions / elapsed
    reference_rate = args.functions / reference
    floor_rate = args.functions / stored
    print(f"{args.functions} Functions applied at once ({args.workers} reconcile workers)")
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
        " (each Function becomes 4 objects and a status)"
    )
    print(
        "  CPU seconds from apply to all Ready: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
    )
    print(
        f"  operator RSS: {idle_rss:.0f} MiB idle, {rss:.0f} MiB at the end,"
        f" {peak:.0f} MiB peak  (target <= 150)"
    )
    print(f"  logs: {logs}")


if __name__ == "__main__":
    main()
