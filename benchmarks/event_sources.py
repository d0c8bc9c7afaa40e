"""Benchmark: queue and kafka Triggers (Lambda's event source mappings) through `kubelambda local
--nats`, against the same broker read by a plain client in this process, in the same run.

For each source (jetstream: a real nats-server; kafka: the harness's Kafka broker), each round:

1. Reference: --messages messages (~100 bytes of JSON) published first, then read by a plain
   client here: nats-py's pull consumer fetching batches of 100 and acking each message; aiokafka
   in a consumer group, committing each batch of up to 100 (again by new consumers until 1.5 s
   were timed). Messages/s from the first ack (or commit) to the last.
2. Through kubelambda: as many messages published first (Kafka: evenly over --concurrency
   partitions), then local mode started with a Trigger at batchSize 100 (a queue needs a window
   of at least 1 s above 10, as on Lambda, so 1 s, which a backlog fills at once; Kafka: window
   0, the smallest), maximumConcurrency --concurrency, onto a no-op function with as many slots.
   The broker counts: the consumer's ack floor (JetStream) or the group's committed offsets
   (Kafka), polled from here. Messages/s from the first ack seen once the functions serve to the
   last. Target: (2) / (1) >= 0.3. The pace from 10% to 90% acked is printed too: a slow end of
   the drain shows there.
3. Latency at a low rate: --rate messages/s for --latency-seconds, each carrying its send time,
   to a second Trigger (batchSize 10, window 0) whose function notes when it ran: ran - sent, all
   of it beyond the window. Reference: the plain client reading such messages as they come.

Reference and kubelambda alternate first from round to round; rates are medians over rounds,
latency percentiles over every round's messages. CPU per message of each process (local mode,
its runtimes, the broker, this client) and the machine's busy cores say which step dominates.
The default run takes 2 to 3 minutes with both sources; --quick about 40 s.

    python benchmarks/event_sources.py [--sources jetstream,kafka] [--rounds 3] [--quick]
        [--messages 20000] [--concurrency 4] [--rate 20] [--latency-seconds 6]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvloop

from event_sources_brokers import BATCH, Failed, JetStream, Kafka, Source
from event_sources_phases import kubelambda, reference
from event_sources_report import latency_percentile, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.kafka import kafka_broker
from harness.nats import nats_server

# --- the run --------------------------------------------------------------------------------


async def run(
    args: argparse.Namespace, work: Path, sources: list[Source], nats_url: str
) -> dict[str, list[dict[str, dict[str, Any]]]]:
    results: dict[str, list[dict[str, dict[str, Any]]]] = {s.name: [] for s in sources}
    for r in range(args.rounds):
        for source in sources:
            phases = [("reference", reference), ("kubelambda", kubelambda)]
            found = {}
            for path, phase in phases[:: -1 if r % 2 else 1]:  # each goes first in turn
                found[path] = await phase(source, args, r, work=work, nats_url=nats_url)
            results[source.name].append(found)
            ref, kl = found["reference"], found["kubelambda"]
            p50 = [latency_percentile(phase, 0.5) for phase in (ref, kl)]
            p99 = [latency_percentile(phase, 0.99) for phase in (ref, kl)]
            print(
                f"round {r + 1} {source.name}: reference {ref['drain'].rate:,.0f}/s, "
                f"kubelambda {kl['drain'].rate:,.0f}/s "
                f"({kl['drain'].rate / ref['drain'].rate:.2f}); latency p50/p99 at "
                f"{args.rate:g}/s: reference {p50[0]:.1f}/{p99[0]:.1f} ms, "
                f"kubelambda {p50[1]:.1f}/{p99[1]:.1f} ms",
                flush=True,
            )
    return results


def kafka_built() -> bool:
    return importlib.util.find_spec("kubelambda.dispatcher.kafka") is not None


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sources",
        default="jetstream,kafka" if kafka_built() else "jetstream",
        help="comma-separated: jetstream, kafka (default: both, or jetstream alone while "
        "kubelambda has no Kafka event source)",
    )
    parser.add_argument("--rounds", type=int, help="reference and kubelambda alternate (3)")
    parser.add_argument("--messages", type=int, help="the backlog drained per phase (20000)")
    parser.add_argument("--latency-seconds", type=float, help="per latency phase (6)")
    parser.add_argument(
        "--rate", type=float, default=20.0, help="messages/s of the latency phase (20)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="maximumConcurrency, slots (4)")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, 10000 messages, 4 s of latency"
    )
    args = parser.parse_args()
    quick = {"rounds": 1, "messages": 10000, "latency_seconds": 4.0}
    full = {"rounds": 3, "messages": 20000, "latency_seconds": 6.0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.messages = max(BATCH, args.messages // BATCH * BATCH)  # whole batches: no window waits
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    for name in args.sources:
        if name not in ("jetstream", "kafka"):
            parser.error(f"--sources: {name!r} is not jetstream or kafka")
        if name == "kafka" and not kafka_built():
            raise SystemExit(
                "the Kafka event source is not built yet (no kubelambda.dispatcher.kafka in "
                "this checkout): run with --sources jetstream"
            )
    return args


def not_retried(record: logging.LogRecord) -> bool:
    """False for what aiokafka logs and then tries again by itself (a group's first join while
    the offsets topic is created, a produce before a new topic's leader is known): noise here,
    where a failure stops the run by its deadline anyway."""
    retried = ("GroupCoordinatorNotAvailable", "retrying")
    message = record.getMessage()
    return not record.name.startswith("aiokafka") or not any(r in message for r in retried)


def main() -> None:
    args = options()
    quiet = logging.StreamHandler()
    quiet.addFilter(not_retried)
    logging.basicConfig(handlers=[quiet], format="%(name)s: %(message)s")
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    started, load = time.monotonic(), os.getloadavg()[0]
    try:
        with ExitStack() as stack:
            server = stack.enter_context(
                nats_server(store_dir=work / "jetstream", log_dir=work, name="bench")
            )
            sources: list[Source] = []
            for name in args.sources:
                if name == "jetstream":
                    sources.append(JetStream(server))
                else:
                    broker = kafka_broker(store_dir=work / "kafka", log_dir=work)
                    sources.append(Kafka(stack.enter_context(broker), partitions=args.concurrency))
            results = uvloop.run(run(args, work, sources, server.url))
    except Failed as exc:
        raise SystemExit(
            f"{exc}\nlogs (local mode, nats-server, Kafka) are kept in {work}"
        ) from exc
    except BaseException:
        print(f"logs (local mode, nats-server, Kafka) are kept in {work}")
        raise
    print(
        f"\nmachine: load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, 2 cores; "
        f"run took {time.monotonic() - started:.0f} s"
    )
    report(args, results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
