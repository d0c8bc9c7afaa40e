"""Benchmark: the gateway's routing table with 15,000 Functions and 15,000 HTTP routes (issue 17).

Builds the table as the gateway does (``routing_table`` over parsed Function and Trigger
models) for a few table sizes, in this process, and prints for each: the time to build it,
the memory it and the parsed models hold (tracemalloc), the time to rebuild it from models
already parsed (what each Function or Trigger change costs the gateway, which rebuilds the
table whole: ``Gateway.set_routes``), and the cost of a route lookup
(``RoutingTable.match``) for the first route, the last one and a path no route serves. The
figure to read is the lookup cost at 15,000 routes against 10 in the same run.

It measures the table, not a whole gateway process: the watch's copies of the objects and
the server come on top.

    python benchmarks/scale_gateway_routes.py [--sizes 10,1500,15000] [--lookups 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from kubelambda.api import parse_function, parse_trigger
from kubelambda.gateway.exceptions import RouteNotFound
from kubelambda.gateway.routing import RoutingTable, routing_table

NAMESPACE = "bench"


def manifests(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    functions, triggers = [], []
    for n in range(count):
        meta = {"name": f"fn-{n}", "namespace": NAMESPACE, "uid": f"uid-{n}", "generation": 1}
        functions.append(
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Function",
                "metadata": meta,
                "spec": {
                    "runtime": "python3.12",
                    "handler": "app.handler",
                    "code": {
                        "inline": {"files": {"app.py": f"def handler(e, c):\n    return {n}\n"}}
                    },
                },
            }
        )
        triggers.append(
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Trigger",
                "metadata": {**meta, "name": f"fn-{n}-http"},
                "spec": {
                    "function": f"fn-{n}",
                    "http": {
                        "path": f"/fn-{n}",
                        "methods": ["GET", "POST"],
                        "auth": {"type": "none"},
                    },
                },
            }
        )
    return functions, triggers


def per_call(call: Callable[[], object], lookups: int) -> float:
    """Median of five rounds of ``lookups`` calls, µs per call."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(lookups):
            call()
        rounds.append((time.perf_counter() - started) / lookups * 1e6)
    return statistics.median(rounds)


def miss(table: RoutingTable) -> None:
    with contextlib.suppress(RouteNotFound):
        table.match(method="GET", path="/no-such-route/x", host="gateway")


def measure(count: int, lookups: int) -> dict[str, float]:
    functions, triggers = manifests(count)
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    table = routing_table(
        [parse_function(f) for f in functions],
        [parse_trigger(t) for t in triggers],
        default_namespace=NAMESPACE,
    )
    build = time.perf_counter() - started
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    parsed_functions = [spec.spec for spec in table.functions.values() if spec.spec]
    parsed_triggers = [parse_trigger(t) for t in triggers]
    rebuilds = []
    for _ in range(3):
        started = time.perf_counter()
        routing_table(parsed_functions, parsed_triggers, default_namespace=NAMESPACE)
        rebuilds.append(time.perf_counter() - started)
    last = f"/fn-{count - 1}/items"
    return {
        "build_ms": build * 1000,
        "rebuild_ms": statistics.median(rebuilds) * 1000,
        "held_mib": held / 2**20,
        "first_us": per_call(lambda: table.match(method="GET", path="/fn-0", host="g"), lookups),
        "last_us": per_call(lambda: table.match(method="GET", path=last, host="g"), lookups),
        "miss_us": per_call(lambda: miss(table), lookups),
        "resolve_us": per_call(lambda: table.resolve(f"{NAMESPACE}.fn-{count // 2}"), lookups),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,1500,15000")
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {size: measure(size, args.lookups) for size in sizes}
    print(
        "routing table: Functions = HTTP routes; rebuild in ms (median of 3) from parsed"
        " models; lookups in µs (median of 5 rounds)"
    )
    print(
        f"  {'routes':>7} {'build ms':>9} {'rebuild':>8} {'held MiB':>9} {'first':>8} {'last':>8}"
        f" {'miss':>8} {'resolve':>8}"
    )
    for size, r in results.items():
        print(
            f"  {size:>7} {r['build_ms']:9.0f} {r['rebuild_ms']:8.0f} {r['held_mib']:9.1f}"
            f" {r['first_us']:8.1f} {r['last_us']:8.1f} {r['miss_us']:8.1f} {r['resolve_us']:8.1f}"
        )
    small, big = results[sizes[0]], results[sizes[-1]]
    last = big["last_us"] / small["last_us"]
    print(
        f"  {sizes[-1]} routes against {sizes[0]}: last route x{last:.1f},"
        f" miss x{big['miss_us'] / small['miss_us']:.1f}"
        " (issue 17: no slower than with 10 routes, within noise)"
    )


if __name__ == "__main__":
    main()
