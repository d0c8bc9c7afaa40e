"""The phases of benchmarks/async_events.py: RequestResponse capacity, Event throughput end to
end, the 202's latency in an open loop, and the NATS path split into publish and drain."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import uvloop

from async_events_load import (
    closed_loop,
    invoke_request,
    refused,
    span,
    wait_handled,
)
from async_events_procs import Local, cpu_seconds, local_mode
from harness.nats import nats_server
from loadgen import open_loop, percentile


def sync_capacity(local: Local, *, connections: int, seconds: float, tag: str) -> dict[str, float]:
    (local.handled / tag).mkdir()
    before = local.cpu()
    run = uvloop.run(
        closed_loop(
            local.port,
            invoke_request(local.port, tag=tag, event=False),
            expected=200,
            connections=connections,
            seconds=seconds,
        )
    )
    cpu = local.cpu()
    refused(run, f"{local.name} RequestResponse")
    return {
        "rate": run.ok / (run.ended - run.started),
        **{f"cpu {k}": (cpu[k] - before[k]) / max(run.ok, 1) * 1e6 for k in cpu},
    }


def async_throughput(
    local: Local, *, connections: int, count: int, tag: str
) -> dict[str, float | str]:
    warm_events(local, connections=connections, tag=f"{tag}-warm")
    folder = local.handled / tag
    folder.mkdir()
    before = local.cpu()
    run = uvloop.run(
        closed_loop(
            local.port,
            invoke_request(local.port, tag=tag, event=True),
            expected=202,
            connections=connections,
            count=count,
        )
    )
    accepted = run.statuses[202]
    refused(run, f"{local.name} Event")
    handled, last = wait_handled(folder, accepted)
    cpu = local.cpu()
    return {
        "accepted": accepted,
        "handled": handled,
        "failures": run.failures(),
        "accept rate": accepted / span(run.first, run.last),
        "handled rate": handled / span(run.first, last),
        "accept seconds": span(run.first, run.last),
        "handle seconds": span(run.first, last),
        **{f"cpu {k}": (cpu[k] - before[k]) / max(handled, 1) * 1e6 for k in cpu},
    }


def warm_events(local: Local, *, connections: int, tag: str) -> None:
    """A few events handled first: JetStream's per-function consumer exists while events flow
    (it is opened within a second of a backlog, closed after ~20 s idle)."""
    (local.handled / tag).mkdir()
    run = uvloop.run(
        closed_loop(
            local.port,
            invoke_request(local.port, tag=tag, event=True),
            expected=202,
            connections=connections,
            count=2 * connections,
        )
    )
    wait_handled(local.handled / tag, run.statuses[202])


def latency(
    local: Local, *, rate: float, seconds: float, tag: str, wait: bool = True
) -> dict[str, float | str]:
    """Event invocations on a fixed schedule: the 202's latency, and (`wait`) how long after
    the last one all were handled."""
    (local.handled / tag).mkdir(exist_ok=True)
    request = invoke_request(local.port, tag=tag, event=True)
    run = uvloop.run(open_loop(local.port, request, rate=rate, seconds=seconds))
    sent_end = time.time()
    if not run.latencies:
        raise SystemExit(f"{local.name} open loop: no answer to {run.sent} Event invocations")
    handled, last = wait_handled(local.handled / tag, run.statuses[202]) if wait else (0, 0.0)
    failures = {s: n for s, n in sorted(run.statuses.items()) if s != 202}
    if run.unanswered:
        failures[0] = run.unanswered
    text = ", ".join(f"{s or 'no answer'}: {n}" for s, n in failures.items()) or "none"
    if failures:
        print(f"  !! {local.name} open loop: {run.statuses[202]} answered 202; not: {text}")
    return {
        "p50": percentile(run.latencies, 0.5),
        "p95": percentile(run.latencies, 0.95),
        "p99": percentile(run.latencies, 0.99),
        "failures": text,
        "accepted": run.statuses[202],
        "lost": run.statuses[202] - handled if wait else 0,
        "drain": max(0.0, last - sent_end),
    }


def breakdown(
    work: Path,
    *,
    connections: int,
    count: int,
    replicas: int,
    concurrency: int,
    seconds: float,
    rate: float,
    latency_seconds: float,
) -> dict[str, float]:
    """The NATS path in two halves: a gateway that only publishes (--no-dispatch; its 202
    latency at `rate`, with no delivery in its process), then a separate `kubelambda
    dispatcher` draining all it published, through the same gateway."""
    with ExitStack() as stack:
        broker = stack.enter_context(
            nats_server(store_dir=work / "split-jetstream", log_dir=work, name="split")
        )
        local = stack.enter_context(
            local_mode(work, "split", "--nats", broker.url, "--no-dispatch",
                       replicas=replicas, concurrency=concurrency)
        )  # fmt: skip
        local.nats = broker
        sync = sync_capacity(local, connections=connections, seconds=seconds, tag="sync")
        (local.handled / "publish").mkdir()
        before = local.cpu()
        run = uvloop.run(
            closed_loop(
                local.port,
                invoke_request(local.port, tag="publish", event=True),
                expected=202,
                connections=connections,
                count=count,
            )
        )
        published = local.cpu()
        publish_per = 1e6 / max(run.statuses[202], 1)
        refused(run, "publish only")
        # The 202 latency with no delivery in the gateway's process; these are drained too.
        alone = latency(local, rate=rate, seconds=latency_seconds, tag="publish", wait=False)
        accepted = run.statuses[202] + int(alone["accepted"])
        log = (work / "dispatcher.log").open("wb")
        stack.callback(log.close)
        dispatcher = subprocess.Popen(
            [sys.executable, "-m", "kubelambda.cli", "dispatcher", "--nats", broker.url,
             "--gateway-url", f"http://127.0.0.1:{local.port}", "--metrics-port", "0"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        stack.callback(dispatcher.wait, 30)
        stack.callback(dispatcher.terminate)
        # CPU counted from the first delivery on: the dispatcher's own start-up is not per event.
        folder = local.handled / "publish"
        deadline = time.monotonic() + 60
        while not (already := len(os.listdir(folder))):
            if time.monotonic() > deadline or dispatcher.poll() is not None:
                raise SystemExit(f"the dispatcher delivered nothing; see {work / 'dispatcher.log'}")
            time.sleep(0.01)
        queued, dispatcher_before = local.cpu(), cpu_seconds([dispatcher.pid])
        handled, last = wait_handled(folder, accepted)
        drained, dispatcher_cpu = local.cpu(), cpu_seconds([dispatcher.pid]) - dispatcher_before
        with os.scandir(folder) as entries:
            first = min(entry.stat().st_mtime for entry in entries)
        per = 1e6 / max(handled - already, 1)
        return {
            "sync rate": sync["rate"],
            "sync cpu gateway": sync["cpu gateway"],
            "publish rate": run.statuses[202] / span(run.first, run.last),
            "alone p50": float(alone["p50"]),
            "alone p99": float(alone["p99"]),
            "publish cpu gateway": (published["gateway"] - before["gateway"]) * publish_per,
            "publish cpu nats-server": (published["nats-server"] - before["nats-server"])
            * publish_per,
            "drain rate": (handled - 1) / span(first, last),
            "drain cpu gateway": (drained["gateway"] - queued["gateway"]) * per,
            "drain cpu dispatcher": dispatcher_cpu * per,
            "drain cpu nats-server": (drained["nats-server"] - queued["nats-server"]) * per,
            "lost": accepted - handled,
        }
