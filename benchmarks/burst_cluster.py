"""Benchmark: two gateway replicas on the real single-node cluster share a burst from zero.

benchmarks/burst.py does this in local mode; here the chart runs (`gateway.replicas: 2`) and the
load generator on the node reaches the gateway's Service, whose ClusterIP kube-proxy spreads
over both gateway pods connection by connection (so every loop opens several connections):

1. capacity: a Function with an HTTP Trigger, warmed up by a closed loop until its Deployment
   is Ready at the autoscaler's count; then a closed loop, and open loops from its rate down
   (burst.py's method) until one has no errors and a p99 within the closed loop's.
2. warm: an open loop at 80% of that rate: the reference p99.
3. from zero: the same rate against another, identical Function at zero; `--bursts` of them in
   turn (3), each deleted and its pods gone before the next. Targets: 0 errors; p99 over the
   burst's last half <= 2x the warm p99, on the bursts' median: one stall of this 2-core node
   (four pods starting beside the load generator, the gateways and the control plane) moves a
   few seconds' p99 tenfold (one burst measured 13.8x, the load generator running late, where
   earlier runs had 0.3-1.3x). Evidence that both gateways held and woke, in
   every burst: each pod's own answers and cold-start holds for the Function (its /metrics);
   and that the autoscaler scaled on their sum: its "scaled to N" lines with the panic window's
   demand, next to each gateway's share of it from Prometheus, by the autoscaler's own PromQL,
   or with the number of gateways whose wake-ups it added up ("2 reporting").

Each pod's share of the answers is printed: the closed loop's (a connection per client) is
kube-proxy's spread; the open loop reuses the connection freed last, so a few connections carry
a steady load and which pod they landed on decides its share. Rates are fractions of the
capacity measured in the same run. Run as root; the first run builds
the cluster's parts and images.

    python benchmarks/burst_cluster.py [--seconds 10] [--fraction 0.8] [--replicas 4] [--bursts 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from burst import load, sustained
from burst_load import closed_loop, open_loop
from burst_report import dominant, print_warm, split, statuses, verdict
from e2e.kit import FUNCTION_LABEL, apply_ready, function_manifests
from harness.cluster import Cluster, cluster
from harness.release import (
    FUNCTIONS_NAMESPACE,
    GATEWAY_ADMIN_PORT,
    GATEWAY_PORT,
    SELECTOR,
    SYSTEM_NAMESPACE,
    Release,
    release,
)
from kubelambda.autoscaler.prometheus import parts

GATEWAYS = 2
CODE = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
READY_TIMEOUT = 120.0
T = TypeVar("T")


class _ToService(uvloop.Loop):
    """burst_load's loops connect to 127.0.0.1 (local mode's gateway): on this event loop each
    of their connections goes to the gateway Service's ClusterIP instead, where kube-proxy picks
    a gateway pod for it."""

    address = ""

    async def create_connection(
        self, protocol_factory: Any, host: str | None = None, port: int | None = None, **kw: Any
    ) -> Any:
        return await super().create_connection(protocol_factory, self.address, port or 0, **kw)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_ToService) as runner:
        return runner.run(coroutine)


Counts = dict[str, float]


def scrape(ip: str, function: str) -> Counts:
    """One gateway pod's own samples for `function`: answers by code, cold-start holds and
    their seconds, request durations (sum and count)."""
    with urllib.request.urlopen(f"http://{ip}:{GATEWAY_ADMIN_PORT}/metrics", timeout=10) as got:
        text = got.read().decode()
    found: Counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                labels.get("function") == function
                and labels.get("namespace") == FUNCTIONS_NAMESPACE
            ):
                name = sample.name.removeprefix("kubelambda_gateway_")
                key = f"{name}:{labels['code']}" if "code" in labels else name
                if "le" not in labels:
                    found[key] = sample.value
    return found


def scrape_all(installed: Release, function: str) -> dict[str, Counts]:
    return {ip: scrape(ip, function) for ip in installed.gateway_pod_ips}


def delta(after: dict[str, Counts], before: dict[str, Counts]) -> dict[str, Counts]:
    return {
        ip: {k: v - before[ip].get(k, 0.0) for k, v in counts.items()}
        for ip, counts in after.items()
    }


def answers(counts: Counts) -> float:
    return sum(v for k, v in counts.items() if k.startswith("requests_total:"))


def shares(moved: dict[str, Counts]) -> str:
    """Each gateway pod's part of the answers, as it counted them."""
    total = sum(answers(c) for c in moved.values()) or 1.0
    return ", ".join(f"{ip} {answers(c):.0f} ({answers(c) / total:.0%})" for ip, c in moved.items())


def inside(moved: dict[str, Counts]) -> tuple[float, int]:
    """The gateways' summed request durations, for burst.split."""
    duration = "request_duration_seconds"
    summed = sum(c.get(f"{duration}_sum", 0.0) for c in moved.values())
    return summed, int(sum(c.get(f"{duration}_count", 0.0) for c in moved.values()))


def deployment(running: Cluster, name: str) -> tuple[int, int]:
    """(spec.replicas, status.readyReplicas) of the Function's Deployment."""
    items = running.get("deployments", "-n", FUNCTIONS_NAMESPACE, "-l", f"{FUNCTION_LABEL}={name}")[
        "items"
    ]
    if not items:
        raise SystemExit(f"the controller made no Deployment for Function {name}")
    return int(items[0]["spec"].get("replicas", 1)), int(items[0]["status"].get("readyReplicas", 0))


def wait(condition: Any, *, what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not true after {timeout:.0f} s")
        time.sleep(0.2)


def status_of(url: str, method: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as got:
            return int(got.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def promql(
    installed: Release, expression: str, *, at: float | None = None, function: str = ""
) -> dict[str, float]:
    """An instant query's values (now, or at unix time `at`) by scraped instance: of Function
    `function`'s series, or of every series when they have no `function` label."""
    asked = {"query": expression, **({"time": f"{at:.3f}"} if at is not None else {})}
    url = f"{installed.prometheus_url}/api/v1/query?{urllib.parse.urlencode(asked)}"
    with urllib.request.urlopen(url, timeout=10) as got:
        result = json.load(got)["data"]["result"]
    return {
        s["metric"].get("instance", "all"): float(s["value"][1])
        for s in result
        if s["metric"].get("function", function) == function
    }


def demand_by_gateway(installed: Release, at: float, function: str) -> dict[str, float]:
    """Function `function`'s panic-window demand (in flight + queued) at `at`, by gateway: the
    autoscaler's own PromQL (autoscaler/prometheus.py) with `instance` kept in the sum."""
    found: dict[str, float] = {}
    for name in ("panic_in_flight", "panic_queued"):
        summed = dict(parts())[name]
        by_pod = summed.replace("by (namespace, function)", "by (namespace, function, instance)")
        if by_pod == summed:
            raise SystemExit(f"the autoscaler's PromQL changed shape: {summed}")
        for instance, value in promql(installed, by_pod, at=at, function=function).items():
            found[instance] = found.get(instance, 0.0) + value
    return found


_STAMP = re.compile(r"^(\S+?)(?:\.(\d+))?Z\s+(.*)$")


def operator_lines(running: Cluster, since: str, needle: str) -> list[tuple[float, str]]:
    """The operator's log lines since `since` (RFC 3339) holding `needle`, with unix times."""
    done = running.kubectl(
        "logs", "-n", SYSTEM_NAMESPACE, "-l", f"{SELECTOR},app.kubernetes.io/component=operator",
        f"--since-time={since}", "--timestamps", "--tail=-1", check=False,
    )  # fmt: skip
    found = []
    for line in done.stdout.splitlines():
        match = _STAMP.match(line)
        if match and needle in match.group(3):
            stamp = datetime.datetime.fromisoformat(
                f"{match.group(1)}.{(match.group(2) or '0')[:6]:0<6}+00:00"
            ).timestamp()
            found.append((stamp, match.group(3)))
    return found


def gateway_log(running: Cluster, pod: str, since: str) -> list[str]:
    done = running.kubectl(
        "logs", "-n", SYSTEM_NAMESPACE, pod, f"--since-time={since}", check=False
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="each open-loop phase")
    parser.add_argument("--fraction", type=float, default=0.8, help="of capacity, for the burst")
    parser.add_argument("--concurrency", type=int, default=1, help="the Functions' concurrency")
    # Two Functions' pods at 73m CPU each (128 MB) must fit the node's 2 cores beside the release.
    parser.add_argument("--replicas", type=int, default=4, help="the Functions' maxReplicas")
    parser.add_argument("--clients", type=int, default=32, help="closed loop connections")
    parser.add_argument(
        "--bursts", type=int, default=3, help="Functions burst from zero in turn (median taken)"
    )
    args = parser.parse_args()
    began = time.monotonic()
    with cluster() as running, tempfile.TemporaryDirectory() as scratch:
        print(f"cluster up in {time.monotonic() - began:.0f} s; logs in {running.log_dir}")
        with release(
            running, workdir=Path(scratch), overrides={"gateway": {"replicas": GATEWAYS}}
        ) as installed:
            return measure(running, installed, args)


@dataclass(frozen=True)
class Burst:
    """One Function's burst from zero: its last half's p99 over the warm p99, and the checks."""

    errors: int
    ratio: float
    held: dict[str, float]  # cold-start holds by gateway pod
    answered: dict[str, float]  # answers by gateway pod
    both_held: bool
    summed: bool


def measure(running: Cluster, installed: Release, args: argparse.Namespace) -> int:
    service = urllib.parse.urlsplit(installed.gateway_service_url)
    _ToService.address = str(service.hostname)
    port = int(service.port or 80)
    names = ["warm", *(f"burst-{n}" for n in range(1, args.bursts + 1))]
    objects = []
    for name in names:
        made = function_manifests(
            name, code=CODE, path=f"/{name}",
            scaling={"maxReplicas": args.replicas, "scaleToZeroAfterSeconds": 600},
        )  # fmt: skip
        made[0]["spec"]["concurrency"] = args.concurrency
        objects += made
    apply_ready(running, objects, namespace=FUNCTIONS_NAMESPACE)
    ips = installed.gateway_pod_ips
    pods = {
        p["status"]["podIP"]: p["metadata"]["name"]
        for p in running.ready_pods(
            SYSTEM_NAMESPACE, f"{SELECTOR},app.kubernetes.io/component=gateway"
        )
    }
    # Both gateways route every path (405 to DELETE, without invoking anything), and
    # Prometheus scrapes both: the autoscaler sees the whole load.
    for ip in ips:
        for name in names:
            url = f"http://{ip}:{GATEWAY_PORT}/{name}"
            wait(lambda u=url: status_of(u, "DELETE") == 405, what=f"gateway {ip} routes {url}")
    wait(
        lambda: len(promql(installed, "up == 1")) >= GATEWAYS,
        what=f"Prometheus scraping {GATEWAYS} gateways",
    )
    warm_ask = f"GET /warm HTTP/1.1\r\nhost: {service.netloc}\r\n\r\n".encode()
    load_before = load()
    # Warm up (from zero, then the autoscaler's panic), until its pods are all Ready.
    run(closed_loop(port, warm_ask, connections=args.clients, seconds=6))
    wait(lambda: len(set(deployment(running, "warm"))) == 1, what="warm's pods Ready")
    warm_pods = deployment(running, "warm")[1]
    marks = [scrape_all(installed, "warm")]
    saturation = run(closed_loop(port, warm_ask, connections=args.clients, seconds=5))
    marks.append(scrape_all(installed, "warm"))
    capacity, probes = sustained(port, warm_ask, saturation, run=run)
    rate = args.fraction * capacity
    marks.append(scrape_all(installed, "warm"))
    warm = run(open_loop(port, warm_ask, rate=rate, seconds=args.seconds))
    marks.append(scrape_all(installed, "warm"))
    warm_after = deployment(running, "warm")

    print(
        f"burst_cluster: {GATEWAYS} gateway replicas behind their Service "
        f"{installed.gateway_service_url}, HTTP trigger, function concurrency {args.concurrency}, "
        f"maxReplicas {args.replicas}; {args.seconds:.0f} s per open-loop phase; load average "
        f"{load_before} before"
    )
    errors = sum(n for status, n in saturation.statuses.items() if status >= 400)
    print(
        f"  capacity   closed loop, {args.clients} connections, warm at {warm_pods} pods: "
        f"{saturation.rate:.0f} answers/s, p99 {saturation.p99:.1f} ms, errors {errors}; "
        f"share by gateway pod: {shares(delta(marks[1], marks[0]))}"
    )
    print(f"             open-loop probes: {probes}; capacity taken: {capacity:.0f} req/s")
    warm_p99 = print_warm(warm, fraction=args.fraction, rate=rate)
    warm_moved = delta(marks[3], marks[2])
    print(f"             {split(warm, (0.0, 0), inside(warm_moved))}")
    print(
        f"             share by gateway pod: {shares(warm_moved)}; warm at {warm_after[0]} "
        f"replicas ({warm_after[1]} Ready) after it"
    )
    print(
        f"  from zero  {args.bursts} Functions in turn, each an open loop at {rate:.0f} req/s from "
        "zero, then deleted and its pods gone before the next"
    )
    bursts = []
    for name in names[1:]:
        bursts.append(burst(running, installed, name, port=port, rate=rate, warm_p99=warm_p99,
                            seconds=args.seconds, pods=pods))  # fmt: skip
        retire(running, name)
    errors = sum(b.errors for b in bursts)
    ratio = statistics.median(b.ratio for b in bursts)
    each = ", ".join(f"{b.ratio:.1f}" for b in bursts)
    print(
        f"  verdicts   errors from zero {errors} (target 0: {verdict(errors == 0)}); last half's "
        f"p99 over the warm p99, median {ratio:.1f}x of {each}"
        f" (target <= 2x: {verdict(ratio <= 2)}); both gateways held in every burst: "
        f"{verdict(all(b.both_held for b in bursts))}; the autoscaler scaled on their sum in every "
        f"burst: {verdict(all(b.summed for b in bursts))}; load average {load()} after"
    )
    print(
        json.dumps(
            {
                "capacity_rps": round(capacity),
                "rate_rps": round(rate),
                "errors_from_zero": errors,
                "late_p99_over_warm_p99": [round(b.ratio, 2) for b in bursts],
                "late_p99_over_warm_p99_median": round(ratio, 2),
                "held_by_gateway": [b.held for b in bursts],
                "answers_by_gateway": [b.answered for b in bursts],
            }
        )
    )
    return 0 if errors == 0 else 1


def burst(
    running: Cluster,
    installed: Release,
    name: str,
    *,
    port: int,
    rate: float,
    warm_p99: float,
    seconds: float,
    pods: dict[str, str],
) -> Burst:
    """Burst Function `name` from zero at `rate` for `seconds` and print what it saw: errors,
    its last half's p99 against `warm_p99`, each gateway pod's answers and holds (`pods`: their
    names by IP), and the autoscaler's decisions beside each gateway's part of the demand."""
    if deployment(running, name)[0] != 0:
        raise SystemExit(f"Function {name} is not at zero before its burst")
    service = urllib.parse.urlsplit(installed.gateway_service_url)
    ask = f"GET /{name} HTTP/1.1\r\nhost: {service.netloc}\r\n\r\n".encode()
    before = scrape_all(installed, name)
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    cold = run(open_loop(port, ask, rate=rate, seconds=seconds))
    moved = delta(scrape_all(installed, name), before)
    replicas = deployment(running, name)
    scaled = operator_lines(running, since, f"{FUNCTIONS_NAMESPACE}/{name} scaled to")
    logs = {ip: gateway_log(running, pods.get(ip, ip), since) for ip in moved}

    late = cold.where(after=seconds / 2)
    ratio = cold.p(cold.latency, late, 0.99) / warm_p99
    held = [h for h in cold.held if h > 0]
    print(
        f"    {name}: errors {cold.errors} ({statuses(cold)}); first answer after "
        f"{min(cold.finished, default=float('nan')) * 1000:.0f} ms; {len(held)} held, longest "
        f"{max(held, default=0):.0f} ms; {cold.connections} connections opened; p99 whole burst "
        f"{cold.p(cold.latency, cold.where(), 0.99):.1f} ms, dominated by "
        f"{dominant(cold, cold.where())}"
    )
    print(
        f"             p99 over the last half {cold.p(cold.latency, late, 0.99):.1f} ms = "
        f"{ratio:.1f}x warm p99; dominated by {dominant(cold, late)}"
    )
    print(f"             {split(cold, (0.0, 0), inside(moved))}")
    for ip, counts in moved.items():
        holds = counts.get("cold_starts_total", 0.0)
        waited = counts.get("cold_start_seconds_sum", 0.0)
        by_code = {k.split(":")[1]: int(v) for k, v in counts.items() if k.startswith("requests_")}
        print(
            f"             gateway {pods.get(ip, ip)} ({ip}): answered {answers(counts):.0f} "
            f"{by_code}; held {holds:.0f} for the cold start, mean hold "
            f"{1000 * waited / max(holds, 1):.0f} ms; {len(logs[ip])} log lines during the burst"
            + "".join(f"\n               | {line[:160]}" for line in logs[ip][:3])
        )
    summed = False
    for at, line in scaled:
        by_pod = demand_by_gateway(installed, at, name)
        found = re.search(r"panic mode: ([\d.]+) (?:concurrent|requests held)", line)
        told = float(found.group(1)) if found else float("nan")
        pieces = " + ".join(f"{ip} {value:.1f}" for ip, value in sorted(by_pod.items()))
        # On the gateways' wake-ups: their reports, added up ("N reporting").
        reporting = re.search(r"\((\d+) reporting\)", line)
        summed = (
            summed
            or (reporting is not None and int(reporting.group(1)) == GATEWAYS)
            or (len(by_pod) == GATEWAYS and told > max(by_pod.values()) * 1.2)
        )
        print(
            f"             autoscaler {line[line.find('scaled to') :][:150]}\n"
            f"               Prometheus then, by gateway: {pieces or 'none'} = "
            f"{sum(by_pod.values()):.1f}"
        )
    print(f"             at {replicas[0]} replicas ({replicas[1]} Ready) after its burst")
    return Burst(
        errors=cold.errors,
        ratio=ratio,
        held={ip: c.get("cold_starts_total", 0.0) for ip, c in moved.items()},
        answered={ip: answers(c) for ip, c in moved.items()},
        both_held=all(c.get("cold_starts_total", 0.0) > 0 for c in moved.values()),
        summed=summed,
    )


def retire(running: Cluster, name: str) -> None:
    """Delete Function `name` and wait until its pods are gone: the next burst is not to share
    the node's 2 cores with them."""
    running.kubectl("delete", "fn", name, "-n", FUNCTIONS_NAMESPACE, "--wait=true")
    wait(
        lambda: (
            not running.get("pods", "-n", FUNCTIONS_NAMESPACE, "-l", f"{FUNCTION_LABEL}={name}")[
                "items"
            ]
        ),
        what=f"Function {name}'s pods gone",
    )


if __name__ == "__main__":
    sys.exit(main())
