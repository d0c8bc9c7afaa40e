"""Benchmark: the operator's intake of watch events with many Functions and Triggers (issue 17).

The controller's intake (controller/operator.py: each event into its store, and the keys it
affects queued) runs on the event loop kopf's watches feed, so its cost per event at 15,000
objects is time every other event and reconcile waits. For each size (Functions = HTTP
Triggers, one each) it feeds an Operator on a FakeCluster, in one process:

1. A first listing, as after a restart: every Trigger, then every Function (kopf's event type
   None), each Function's arrival queueing the Triggers that name it.
2. Status writes of others (the autoscaler's ``status.autoscaler``) on ``--writes`` Functions,
   which the controller keeps without reconciling.

Printed: CPU per event of each, and the largest size's over the smallest's. Target: no more at
15,000 than at 10, within noise (before the Triggers were indexed by the Function they name,
a Function's arrival decoded every stored Trigger: 5.9 ms each at 2,000, ~45 ms at 15,000).

    python benchmarks/operator_intake.py [--sizes 10,1500,15000] [--writes 2000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from types import MappingProxyType

from kubelambda.api.subscriptions import FakeNotifications
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.operator import Operator
from scale_gateway_routes import function_manifest, trigger_manifest


def operator() -> Operator:
    config = ControllerConfig(
        runtime_images=MappingProxyType({"python3.12": "localhost/kubelambda-runtime:bench"}),
        gateway_url="http://gateway.kubelambda.svc",
        gateway_namespace="kubelambda",
        region="us-east-1",
        account_id="000000000000",
    )
    return Operator(
        cluster=FakeCluster(),
        config=config,
        notifications=FakeNotifications(),
        clock=lambda: datetime.now(UTC),
    )


def listed(count: int) -> tuple[Operator, float]:
    """An operator given a first listing of ``count`` Triggers, then as many Functions, and
    the CPU seconds the Functions took."""
    running = operator()
    for n in range(count):
        running.trigger_event(None, trigger_manifest(n))
    functions = [function_manifest(n) for n in range(count)]
    started = time.process_time()
    for body in functions:
        running.function_event(None, body)
    seconds = time.process_time() - started
    queued = len(running.queue)
    if queued != 2 * count:
        raise SystemExit(f"{queued} keys queued, not every Function and Trigger ({2 * count})")
    return running, seconds


def intake(count: int, writes: int) -> tuple[float, float]:
    """CPU seconds per Function of a first listing (Triggers first), and per status write.
    Small sizes are listed again until some 3,000 Functions were, for a figure above noise."""
    rounds = max(1, 3000 // count)
    listing = sum(listed(count)[1] for _ in range(rounds - 1))
    running, last = listed(count)
    listing = (listing + last) / (rounds * count)
    bodies = []
    for i in range(writes):
        body = function_manifest((i * 7919) % count)
        body["metadata"]["resourceVersion"] = str(100000 + i)
        body["status"] = {"autoscaler": {"desiredReplicas": 0, "reason": "idle"}}
        bodies.append(body)
    started = time.process_time()
    for body in bodies:
        running.function_event("MODIFIED", body)
    return listing, (time.process_time() - started) / writes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,1500,15000")
    parser.add_argument("--writes", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print("the operator's intake, CPU per event, ms (Functions = HTTP Triggers)")
    print(f"  {'objects':>7} {'first listing':>14} {'status write':>13}")
    results = {size: intake(size, args.writes) for size in sizes}
    for size, (listing, write) in results.items():
        print(f"  {size:>7} {listing * 1e3:14.3f} {write * 1e3:13.3f}")
    small, big = results[sizes[0]], results[sizes[-1]]
    print(
        f"  {sizes[-1]} against {sizes[0]}: first listing x{big[0] / small[0]:.2f},"
        f" status write x{big[1] / small[1]:.2f} (target: x1, within noise)"
    )


if __name__ == "__main__":
    main()
