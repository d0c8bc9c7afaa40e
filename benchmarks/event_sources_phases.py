"""The event sources benchmark's phases (benchmarks/event_sources.py): a backlog drained by a plain
client (`reference`) and through local mode's pollers (`kubelambda`), and the latency of
messages sent at a low rate, each way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# CPU from /proc, of local mode and of its runtimes, as the async events benchmark reads it.
from async_events_procs import cpu_seconds, descendants
from event_sources_brokers import Drain, Failed, Source, body

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.local import LocalMode, start_local

REFERENCE_SECONDS = 1.5  # the plain client drains the backlog again until this long in all
HANDLED_WITHIN = 30.0  # seconds for the messages of a latency phase, once published
WARM = 5  # messages through the latency path before it is timed: consumers joined, code warm
FUNCTIONS = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: noop}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: {concurrency}
  scaling: {{minReplicas: 1, maxReplicas: 1}}
  code: {{inline: {{files: {{app.py: "def handler(event, context):\\n    return None\\n"}}}}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: stamp}}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {{minReplicas: 1, maxReplicas: 1}}
  env: [{{name: STAMPS, value: "{stamps}"}}]
  code:
    inline:
      files:
        app.py: |
          import base64, json, os, time
          def handler(event, context):
              ran = time.time()
              if "Records" in event:
                  bodies = [record["body"] for record in event["Records"]]
              else:
                  bodies = [base64.b64decode(record["value"])
                            for records in event["records"].values() for record in records]
              path = os.path.join(os.environ["STAMPS"], context.aws_request_id)
              with open(path + ".tmp", "w") as out:
                  json.dump({{"ran": ran, "sent": [json.loads(b) for b in bodies]}}, out)
              os.replace(path + ".tmp", path)
"""

DURATION = re.compile(r"\tDuration: ([\d.]+) ms")


def machine_seconds() -> float:
    """CPU seconds every process on the machine used so far, all cores (/proc/stat: all but
    idle and iowait; steal counts, as someone else's work)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# --- the phases -----------------------------------------------------------------------------

Seen = Callable[[], list[tuple[dict[str, Any], float]]]  # (message, when it was handled)


async def paced(
    send: Callable[[bytes], Awaitable[Any]], *, rate: float, count: int, first: int = 0
) -> None:
    """`count` messages at `rate`/s, each carrying when it was sent; Kafka's send returns a
    future of the broker's answer, waited for as a JetStream publish is."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(count):
        if (delay := start + n / rate - loop.time()) > 0:
            await asyncio.sleep(delay)
        answer = await send(body(first + n, sent=time.time()))
        if isinstance(answer, asyncio.Future):
            await answer


async def wait_seen(seen: Seen, expected: int, what: str) -> None:
    deadline = time.monotonic() + HANDLED_WITHIN
    while (got := len(seen())) < expected:
        if time.monotonic() > deadline:
            raise Failed(f"{what}: {got} of {expected} handled after {HANDLED_WITHIN:.0f} s")
        await asyncio.sleep(0.1)


async def latency(source: Source, target: str, args: argparse.Namespace, seen: Seen) -> list[float]:
    """Milliseconds from send to handled of `rate * latency_seconds` messages published one at
    a time, after WARM untimed ones."""
    count = int(args.rate * args.latency_seconds)
    what = f"{source.name} {target}"
    async with source.publisher(target) as send:
        await paced(send, rate=args.rate, count=WARM)
        await wait_seen(seen, WARM, f"{what}: warm-up")
        await paced(send, rate=args.rate, count=count, first=WARM)
    await wait_seen(seen, WARM + count, what)
    return [(at - message["sent"]) * 1000 for message, at in seen() if message["n"] >= WARM]


async def reference(source: Source, args: argparse.Namespace, r: int, **_: Any) -> dict[str, Any]:
    """The broker read by a plain client in this process."""
    bulk, trickle = f"refbulk{r}", f"reftrickle{r}"
    await source.create(bulk, args.messages)
    await source.create(trickle)

    def cpu() -> dict[str, float]:
        return {
            "broker": cpu_seconds([source.pid]),
            "client": time.process_time(),
            "machine": machine_seconds(),
        }

    # Drained again by new consumers until it took long enough to time: a fast reference can
    # drain a backlog in a tenth of a second.
    drains: list[Drain] = []
    while sum(d.ended - d.started for d in drains) < REFERENCE_SECONDS:
        reader = f"reference{len(drains)}"
        drains.append(await source.drain(bulk, args.messages, cpu, reader=reader))
    drain = Drain.total(drains)
    arrived: list[tuple[float, bytes]] = []
    async with source.reader(trickle, arrived):
        delays = await latency(
            source, trickle, args, lambda: [(json.loads(data), at) for at, data in arrived]
        )
    return {"drain": drain, "latency": delays}


def wait_runtimes(local: LocalMode) -> None:
    """Until both functions answered an invocation of their own (the no-op one's is the one
    invocation that is not a batch), so their instances serve."""
    events: dict[str, dict[str, Any]] = {"noop": {}, "stamp": {"Records": []}}
    for function, event in events.items():
        answer = local.client.post(f"/2015-03-31/functions/{function}/invocations", json=event)
        if answer.status_code != 200 or "x-amz-function-error" in answer.headers:
            raise Failed(
                f"{function} answered {answer.status_code} {answer.text[:200]}; local mode "
                f"said:\n{local.output()[-3000:]}"
            )


async def kubelambda(
    source: Source, args: argparse.Namespace, r: int, *, work: Path, nats_url: str
) -> dict[str, Any]:
    """The same through local mode's pollers and the no-op (and stamping) functions."""
    bulk, trickle = f"bulk{r}", f"trickle{r}"
    await source.create(bulk, args.messages)
    await source.create(trickle)
    stamps = work / f"stamps-{source.name}-{r}"
    stamps.mkdir()
    manifest = work / f"{source.name}-{r}.yaml"
    manifest.write_text(
        FUNCTIONS.format(concurrency=args.concurrency, stamps=stamps)
        + source.triggers(bulk, trickle, concurrency=args.concurrency)
    )
    local = await asyncio.to_thread(start_local, manifest, "--nats", nats_url)
    try:
        drain = await drained(source, local, bulk, args.messages)

        def seen() -> list[tuple[dict[str, Any], float]]:
            found = []
            for path in stamps.iterdir():
                if not path.name.endswith(".tmp"):
                    stamp = json.loads(path.read_text())
                    found += [(message, stamp["ran"]) for message in stamp["sent"]]
            return found

        delays = await latency(source, trickle, args, seen)
        # The no-op function's invocations are the bulk Trigger's batches (the runtime's
        # REPORT lines, all in by now): how full they were, how long the function took.
        reports = [line for line in local.lines if line.startswith("[noop] REPORT")]
        durations = [float(m.group(1)) for m in map(DURATION.search, reports) if m]
        return {
            "drain": drain,
            "latency": delays,
            "batches": len(reports) - 1,  # wait_runtimes' own
            "function ms": statistics.mean(durations) if durations else 0.0,
        }
    finally:
        (work / f"local-{source.name}-{r}.log").write_text(local.output())
        await asyncio.to_thread(local.stop)


async def drained(source: Source, local: LocalMode, bulk: str, count: int) -> Drain:
    """Polls the broker until local mode's consumer acked all `count` messages of `bulk`."""
    pid = local.process.pid

    def cpu() -> dict[str, float]:
        return {
            "local mode": cpu_seconds([pid]),
            "runtimes": cpu_seconds(descendants(pid)),
            "broker": cpu_seconds([source.pid]),
            "client": time.process_time(),
            "machine": machine_seconds(),
        }

    # Timed from the first ack seen once both runtimes serve: their start is not per message.
    ready = asyncio.ensure_future(asyncio.to_thread(wait_runtimes, local))
    drain, progress = Drain(), (0, time.monotonic())
    try:
        async with source.acked(bulk) as acked:
            while (done := await acked()) < count:
                if done != progress[0]:
                    progress = (done, time.monotonic())
                elif time.monotonic() - progress[1] > 60 or local.process.poll() is not None:
                    raise Failed(
                        f"{source.name}: {done} of {count} acked, none more for 60 s; local "
                        f"mode said:\n{local.output()[-4000:]}"
                    )
                if drain.started:
                    drain.samples.append((time.monotonic(), done))
                elif done and ready.done():
                    ready.result()
                    drain.mark(done, cpu(), final=False)
                await asyncio.sleep(0.025)
            if not drain.started:
                raise Failed(
                    f"{source.name}: all {count} messages were acked before the runtimes "
                    "answered; measure more --messages"
                )
            drain.mark(done, cpu(), final=True)
    finally:
        await ready
    return drain
