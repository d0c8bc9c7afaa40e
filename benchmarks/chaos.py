"""Benchmark: chaos under load on a real single-node cluster, the longer run of the e2e scenario
tests/e2e/chaos (same load, same disruptions, same table line per window).

A steady mixed load on one Function (HTTP Trigger requests, Invoke API RequestResponse calls,
Event invocations, bucket uploads to MinIO that notify it, messages to a JetStream stream on the
release's NATS and to a Kafka topic that its queue and kafka Triggers poll) while, one at a time
and `--rounds` times over, a gateway pod (one of two), the dispatcher, the operator, the
function's pod, the broker (NATS), kube-apiserver and etcd are killed or restarted. For each
window: synchronous requests failed (5xx with Retry-After, deadline, refused, other, hung),
asynchronous events accepted, handled, lost and duplicated, queue and kafka messages produced,
handled, lost and duplicated, and the time until the load is served normally again. Targets:
hung 0, lost 0, every failure a 5xx with Retry-After or a deadline answer. Run as root; the
first run builds the cluster's parts and images.

    python benchmarks/chaos.py [--rounds 3] [--rate 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pytest

from e2e.chaos.faults import FAULTS
from e2e.chaos.load import Pace
from e2e.chaos.scenario import NAME, chaos_load
from e2e.chaos.window import Report, Windows
from harness.cluster import cluster
from harness.release import ReleaseFailed, release

BOUND = 120.0  # seconds to wait for recovery before a window is reported as never recovered


def summary(reports: list[Report]) -> str:
    """One line per disruption over its rounds: totals and the recovery times' median and max."""
    lines = []
    for fault in FAULTS:
        mine = [r for r in reports if r.what == fault.what]
        if not mine:
            continue
        times = [r.recovered_in for r in mine if r.recovered_in is not None]
        recovered = (
            f"median {statistics.median(times):.1f} s, max {max(times):.1f} s" if times else "-"
        )
        never = len(mine) - len(times)
        messages = "".join(
            f"  {source} lost {sum(len(r.messages[source].lost) for r in mine)} of "
            f"{sum(r.messages[source].accepted for r in mine)} duplicates "
            f"{sum(r.messages[source].duplicates for r in mine)}"
            for source in mine[0].messages
        )
        lines.append(
            f"{fault.what:15} rounds {len(mine)}  sync failed {sum(r.failed for r in mine):4d} "
            f"of {sum(sum(r.outcomes.values()) for r in mine):5d}  hung "
            f"{sum(r.outcomes['hung'] for r in mine)}  lost {sum(len(r.lost) for r in mine)} of "
            f"{sum(r.accepted for r in mine)}  duplicates {sum(r.duplicates for r in mine)}"
            f"{messages}  recovered {recovered}" + (f", {never} never" if never else "")
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="times each disruption is applied")
    parser.add_argument(
        "--rate",
        type=float,
        default=4.0,
        help="requests (messages) a second of each kind (HTTP, Invoke, Event, queue, kafka); "
        "uploads half as many",
    )
    parser.add_argument(
        "--no-kafka", action="store_true", help="no Kafka broker, no kafka Trigger in the load"
    )
    args = parser.parse_args()
    pace = Pace(
        http=args.rate,
        invoke=args.rate,
        events=args.rate,
        uploads=args.rate / 2,
        queue=args.rate,
        kafka=0.0 if args.no_kafka else args.rate,
    )
    started = time.monotonic()
    reports: list[Report] = []
    with ExitStack() as stack:
        running = stack.enter_context(cluster())
        print(f"cluster up in {time.monotonic() - started:.0f} s; logs in {running.log_dir}")
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (scratch / "helm").mkdir()
        try:
            chart = stack.enter_context(release(running, workdir=scratch / "helm"))
        except ReleaseFailed as exc:
            print(f"the chart does not run: {exc}")
            return 1
        load = stack.enter_context(chaos_load(running, chart, workdir=scratch, pace=pace))
        windows = Windows(load)
        for round_ in range(args.rounds):
            for fault in FAULTS:
                try:
                    report = windows.measure(fault, running, NAME, bound=BOUND)
                except (
                    pytest.fail.Exception
                ) as exc:  # the load was not served normally before the fault
                    print(f"round {round_ + 1} {fault.what}: {exc}", flush=True)
                    continue
                reports.append(report)
                print(f"round {round_ + 1} {report.line()}", flush=True)
                for example in report.examples:
                    print(f"  {example}", flush=True)
                lost = report.lost + [i for t in report.messages.values() for i in t.lost]
                if lost:
                    print(f"  lost: {lost[:10]}", flush=True)
    print(f"\nover {args.rounds} round(s), {time.monotonic() - started:.0f} s in all:")
    print(summary(reports))
    clean = all(
        r.outcomes["hung"] == 0
        and r.outcomes["refused"] + r.outcomes["other"] == 0
        and not r.lost
        and not any(t.lost for t in r.messages.values())
        and r.recovered_in is not None
        for r in reports
    )
    return 0 if clean and reports else 1


if __name__ == "__main__":
    sys.exit(main())
