"""Benchmark: asynchronous (Event) invocations through `kubelambda local --nats` (a real
nats-server, file-backed JetStream), against RequestResponse invocations of the same function.

One trivial function (it creates an empty file named by its request id, which is how events
are counted as handled), at --concurrency slots in each of --replicas instances, fixed
(minReplicas = maxReplicas): as many slots as client connections, so no request waits for a
slot (the runtimes' CPU is printed too: on 2 cores they share the machine with the rest).
--connections client connections, closed loop, from this process (uvloop + httptools; the same
client for every phase, so its own cost cancels out of the ratios). In one run, each round:

1. RequestResponse capacity through local mode with --nats: answers/s for --seconds.
2. Event invocations, as many as (1) answered in --seconds: accepted (202) per second, and
   handled end to end per second, from the first 202 to the last handled event (the
   handler's files' mtimes). Target: handled / (1) >= 0.5.
3. 202 latency, open loop at min(500/s, 0.5 x the 202 rate of (2)) for --latency-seconds.
4. (1)-(3) again through local mode without --nats (events in memory, delivered in-process:
   the embedded path), the reference for the 202 latency and for "no slower than today".

CPU time per event of each process (gateway, runtimes, nats-server) says which one works
hardest. Then, unless --no-breakdown, a third local mode with --nats --no-dispatch on a
nats-server of its own splits the NATS path: Event invocations published only (the gateway
alone), then drained by a separate `kubelambda dispatcher` (consume + invoke). Answers other
than 202 (200 for RequestResponse) are counted and printed; a phase with none stops the run.
The default run takes 2 to 2.5 minutes; --seconds 3 --latency-seconds 3 --rounds 1
--no-breakdown about 40 s.

    python benchmarks/async_events.py [--seconds 6] [--latency-seconds 6] [--rounds 2]
        [--connections 16] [--concurrency 8] [--replicas 2] [--no-breakdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

# The closed loop below speaks HTTP/1.1 with the same parser as loadgen's open loop.
from loadgen import _Connection, free_port, open_loop, percentile, wait_http

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.nats import NatsServer, nats_server

INVOKE_PATH = "/2015-03-31/functions/noop/invocations"
ISSUE_RATE = 500.0  # events/s at which the issue asks for p99 <= 10 ms
FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: noop}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: {concurrency}
  timeoutSeconds: 30
  scaling: {{minReplicas: {replicas}, maxReplicas: {replicas}}}
  env: [{{name: HANDLED, value: "{handled}"}}]
  code:
    inline:
      files:
        app.py: |
          import os
          ROOT = os.environ["HANDLED"]
          def handler(event, context):
              open(os.path.join(ROOT, event["tag"], context.aws_request_id), "w").close()
              return {{"ok": True}}
"""


# --- processes ------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(pid: int) -> list[int]:
    """The processes under `pid`: a runtime's invocation workers are its own children."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _listening_ports() -> dict[str, int]:
    """socket inode -> port of every TCP socket listening on this machine."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports


def runtime_ports(parent: int) -> dict[int, int]:
    """pid -> port of the runtime processes local mode (process `parent`) started: those
    under it that listen on a TCP port (forked from the runtime zygote, their command line
    and environment are the zygote's, so the listening socket is what tells them)."""
    listening = _listening_ports()
    found: dict[int, int] = {}
    for pid in sorted(descendants(parent)):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for link in links:
            inode = link.removeprefix("socket:[").removesuffix("]")
            port = listening.get(inode)
            if link.startswith("socket:[") and port is not None and port not in found.values():
                found[pid] = port
    return found


@dataclass
class Local:
    """One `kubelambda local` process and what is measured of it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    handled: Path
    nats: NatsServer | None = None

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of local mode's process, of its runtimes (with their workers),
        of the nats-server, and of this process (the load generator)."""
        return {
            "gateway": cpu_seconds([self.process.pid]),
            "runtimes": cpu_seconds(descendants(self.process.pid)),
            "client": time.process_time(),
            "nats-server": cpu_seconds([self.nats.process.popen.pid])
            if self.nats and self.nats.process
            else 0.0,
        }


@contextmanager
def local_mode(
    work: Path, name: str, *options: str, replicas: int, concurrency: int
) -> Iterator[Local]:
    """`kubelambda local` serving the function with `replicas` instances, all ready."""
    folder = work / name
    handled = folder / "handled"
    handled.mkdir(parents=True)
    manifest = folder / "function.yaml"
    manifest.write_text(
        FUNCTION.format(concurrency=concurrency, replicas=replicas, handled=handled)
    )
    port, admin = free_port(), free_port()
    log = folder / "local.log"  # a file, not a pipe: three log lines per invocation
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelambda.cli", "local", str(manifest), "--port", str(port),
             "--admin-port", str(admin), *options],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{admin}/healthz", process=proc, timeout=30)
        deadline = time.monotonic() + 30
        while len(found := runtime_ports(proc.pid)) < replicas:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{name}: {len(found)} of {replicas} instances; see {log}")
            time.sleep(0.05)
        for runtime_port in found.values():
            wait_http(f"http://127.0.0.1:{runtime_port}/healthz", process=proc, timeout=30)
        yield Local(name=name, process=proc, port=port, handled=handled)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- load -----------------------------------------------------------------------------------


def invoke_request(port: int, *, tag: str, event: bool) -> bytes:
    """An Invoke API request (Event or RequestResponse) whose event names the tag's folder."""
    body = json.dumps({"tag": tag}).encode()
    kind = "Event" if event else "RequestResponse"
    return (
        f"POST {INVOKE_PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"x-amz-invocation-type: {kind}\r\n\r\n"
    ).encode() + body


@dataclass
class ClosedRun:
    """What a closed-loop run saw: answers by status, requests without one, and the wall-clock
    times of the first and last answers with the `expected` status."""

    expected: int
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    first: float = 0.0
    last: float = 0.0
    started: float = 0.0
    ended: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses[self.expected]

    def failures(self) -> str:
        """Answers other than the expected one, and requests without an answer, by status."""
        bad = {s: n for s, n in sorted(self.statuses.items()) if s != self.expected}
        if self.unanswered:
            bad[0] = self.unanswered
        return ", ".join(f"{s or 'no answer'}: {n}" for s, n in bad.items()) or "none"


async def closed_loop(
    port: int,
    request: bytes,
    *,
    expected: int,
    connections: int,
    count: int | None = None,
    seconds: float | None = None,
) -> ClosedRun:
    """`connections` clients, each sending `request` again as soon as the last is answered,
    until `count` are sent (or `seconds` pass); a connection the server closed is replaced."""
    loop = asyncio.get_running_loop()
    run = ClosedRun(expected=expected, started=time.time())
    deadline = time.monotonic() + (seconds or 1e9)

    async def client() -> None:
        conn: _Connection | None = None
        while (run.sent < count) if count is not None else (time.monotonic() < deadline):
            if conn is None or conn.transport is None or conn.transport.is_closing():
                try:
                    _, conn = await loop.create_connection(_Connection, "127.0.0.1", port)
                except OSError:
                    run.unanswered += 1
                    await asyncio.sleep(0.1)  # the server is out of descriptors: back off
                    continue
            run.sent += 1
            conn.waiter = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(request)
            try:
                status = await asyncio.wait_for(conn.waiter, 60)
            except (ConnectionError, TimeoutError):
                run.unanswered += 1
                conn.transport.close()
                continue
            run.statuses[status] += 1
            if status == expected:
                now = time.time()
                run.first = run.first or now
                run.last = now
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    run.ended = time.time()
    return run


def refused(run: ClosedRun, what: str) -> None:
    """Print the answers that were not the expected one; stop if none was."""
    if run.failures() == "none":
        return
    message = f"{what}: {run.ok} answered {run.expected}; not: {run.failures()}"
    if not run.ok:
        raise SystemExit(f"nothing to measure: {message}")
    print(f"  !! {message}", flush=True)


def span(start: float, end: float) -> float:
    """Seconds from `start` to `end`, never zero (one answer alone spans no time)."""
    return max(end - start, 1e-3)


def last_handled(folder: Path) -> float:
    """When the last event recorded under `folder` was handled (wall clock)."""
    with os.scandir(folder) as entries:
        return max((entry.stat().st_mtime for entry in entries), default=0.0)


def wait_handled(folder: Path, expected: int, *, stall: float = 30.0) -> tuple[int, float]:
    """Wait until `expected` events are handled, or none more is for `stall` seconds; how many
    were, and when the last one was. Only counts while waiting: stat()ing thousands of files
    ten times a second would take CPU from what is measured."""
    seen, progress = -1, time.monotonic()
    while True:
        count = len(os.listdir(folder))
        if count >= expected:
            break
        if count != seen:
            seen, progress = count, time.monotonic()
        elif time.monotonic() - progress > stall:
            print(f"  !! {folder.name}: {count} of {expected} handled, none more for {stall:.0f} s")
            break
        time.sleep(0.1)
    return count, last_handled(folder)


# --- phases ---------------------------------------------------------------------------------


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


# --- the run --------------------------------------------------------------------------------


def one_round(
    nats: Local, embedded: Local, args: argparse.Namespace, index: int
) -> dict[str, dict[str, float | str]]:
    results: dict[str, dict[str, float | str]] = {}
    for local in (nats, embedded):
        sync = sync_capacity(
            local, connections=args.connections, seconds=args.seconds, tag=f"sync{index}"
        )
        events = async_throughput(
            local,
            connections=args.connections,
            count=int(sync["rate"] * args.seconds),
            tag=f"async{index}",
        )
        results[local.name] = {
            **{f"sync {k}": v for k, v in sync.items()},
            **{f"async {k}": v for k, v in events.items()},
        }
    # The issue's rate, unless this machine cannot accept twice that through the NATS path.
    capacity = float(results["nats"]["async accept rate"])
    rate = min(ISSUE_RATE, 0.5 * capacity)
    for local in (nats, embedded):
        found = latency(local, rate=rate, seconds=args.latency_seconds, tag=f"latency{index}")
        results[local.name].update({f"latency {k}": v for k, v in found.items()})
        results[local.name]["latency rate"] = rate
    print(
        f"round {index + 1}: "
        + " | ".join(
            f"{path}: RequestResponse {float(r['sync rate']):,.0f}/s, Event accepted "
            f"{float(r['async accept rate']):,.0f}/s, handled {float(r['async handled rate']):,.0f}"
            f"/s ({float(r['async handled rate']) / float(r['sync rate']):.2f}), 202 p99 at "
            f"{rate:.0f}/s {float(r['latency p99']):.1f} ms"
            for path, r in results.items()
        ),
        flush=True,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="per closed-loop phase")
    parser.add_argument("--latency-seconds", type=float, default=6.0, help="per open-loop phase")
    parser.add_argument("--rounds", type=int, default=2, help="paths alternate in each round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8, help="the function's slots")
    parser.add_argument("--replicas", type=int, default=2, help="the function's instances")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the split NATS path")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    try:
        run(args, work)
    except BaseException:
        print(f"logs (local mode, nats-server, dispatcher) are kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)  # tens of thousands of files, two JetStream stores


def run(args: argparse.Namespace, work: Path) -> None:
    started, load = time.monotonic(), os.getloadavg()[0]
    with ExitStack() as stack:
        broker = stack.enter_context(
            nats_server(store_dir=work / "jetstream", log_dir=work, name="bench")
        )
        shape = {"replicas": args.replicas, "concurrency": args.concurrency}
        nats = stack.enter_context(local_mode(work, "nats", "--nats", broker.url, **shape))
        nats.nats = broker
        embedded = stack.enter_context(local_mode(work, "embedded", **shape))
        for local in (nats, embedded):  # warm both paths before anything is timed
            sync_capacity(local, connections=args.connections, seconds=1, tag="warm")
        rounds = [one_round(nats, embedded, args, index) for index in range(args.rounds)]
    split = None
    if not args.no_breakdown:
        count = int(statistics.median(float(r["nats"]["sync rate"]) for r in rounds) * args.seconds)
        split = breakdown(
            work,
            connections=args.connections,
            count=count,
            seconds=args.seconds,
            rate=statistics.median(float(r["nats"]["latency rate"]) for r in rounds),
            latency_seconds=args.latency_seconds,
            **shape,
        )
    print(
        f"\nmachine: load average {load:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores: "
        "other work on them lowers RequestResponse capacity, which needs both, more than the "
        "NATS path, which one process bounds, so it inflates the NATS ratio)"
    )
    report(args, rounds, split, elapsed=time.monotonic() - started)


def _median(rounds: list[dict[str, dict[str, float | str]]], path: str, key: str) -> float:
    return statistics.median(float(r[path][key]) for r in rounds)


def report(
    args: argparse.Namespace,
    rounds: list[dict[str, dict[str, float | str]]],
    split: dict[str, float] | None,
    *,
    elapsed: float,
) -> None:
    def med(path: str, key: str) -> float:
        return _median(rounds, path, key)

    slots = args.concurrency * args.replicas
    print(
        f"async events: function concurrency {args.concurrency} x {args.replicas} instances "
        f"({slots} slots), {args.connections} client connections, {args.rounds} round(s) of "
        f"{args.seconds:g} s; run took {elapsed:.0f} s; medians over rounds"
    )
    print(f"  {'':<44} {'NATS (--nats)':>14} {'embedded':>14}")

    def row(label: str, key: str, fmt: str = "{:,.0f}") -> None:
        cells = [fmt.format(med(p, key)) for p in ("nats", "embedded")]
        print(f"  {label:<44} {cells[0]:>14} {cells[1]:>14}")

    row("RequestResponse capacity, req/s", "sync rate")
    row("Event: accepted (202) per s", "async accept rate")
    row("Event: handled end to end per s", "async handled rate")
    row("  time to accept all, s", "async accept seconds", "{:.1f}")
    row("  time to handle all (from first 202), s", "async handle seconds", "{:.1f}")
    ratios = {p: [float(r[p]["async handled rate"]) / float(r[p]["sync rate"]) for r in rounds]
              for p in ("nats", "embedded")}  # fmt: skip
    cells = [f"{statistics.median(ratios[p]):.2f}" for p in ("nats", "embedded")]
    print(f"  {'handled Event / RequestResponse':<44} {cells[0]:>14} {cells[1]:>14}")
    for process in ("gateway", "runtimes", "nats-server", "client"):
        sync = [f"{med(p, f'sync cpu {process}'):.0f}" for p in ("nats", "embedded")]
        event = [f"{med(p, f'async cpu {process}'):.0f}" for p in ("nats", "embedded")]
        label = f"CPU us per call, {process}: sync | event"
        print(f"  {label:<44} {sync[0] + ' | ' + event[0]:>14} {sync[1] + ' | ' + event[1]:>14}")
    rate = med("nats", "latency rate")
    which = "the issue's 500/s" if rate >= ISSUE_RATE else "0.5 x the NATS path's 202 rate"
    print(f"  202 latency, open loop at {rate:.0f} events/s ({which}), ms:")
    for q in ("p50", "p95", "p99"):
        row(f"    {q}", f"latency {q}", "{:.1f}")
    row("    handled after the last 202, s", "latency drain", "{:.1f}")
    nats_rate, embedded_rate = (
        med("nats", "async handled rate"),
        med("embedded", "async handled rate"),
    )
    nats_p99, ratio = med("nats", "latency p99"), statistics.median(ratios["nats"])
    embedded_ratio = statistics.median(ratios["embedded"])
    met = {True: "met", False: "missed"}
    print("  ratios and targets:")
    for label, value, note in (
        (
            "NATS handled Event / RequestResponse",
            f"{ratio:.2f}",
            f"target >= 0.5 ({met[ratio >= 0.5]}; a file-backed path measured 0.17)",
        ),
        (
            f"NATS 202 p99 at {rate:.0f}/s, ms",
            f"{nats_p99:.1f}",
            f"target <= 10 ({met[nats_p99 <= 10]}); "
            f"{nats_p99 / med('embedded', 'latency p99'):.1f}x the embedded path's",
        ),
        (
            "embedded handled Event / RequestResponse",
            f"{embedded_ratio:.2f}",
            "the reference for 'no slower than today'",
        ),
        ("NATS / embedded, handled Event", f"{nats_rate / embedded_rate:.2f}", ""),
    ):
        print(f"    {label:<42} {value:>6}   {note}")
    for path, values in ratios.items():
        if max(values) > 1.2 * min(values):
            print(
                f"  !! {path}: the rounds disagree ({', '.join(f'{v:.2f}' for v in values)}): "
                "the machine was busy with other work; run again when it is quiet"
            )
    for path in ("nats", "embedded"):
        for r in rounds:
            bad = [f"{k}: {r[path][k]}" for k in ("async failures", "latency failures")
                   if r[path][k] != "none"]  # fmt: skip
            lost = int(float(r[path]["async accepted"]) - float(r[path]["async handled"]))
            lost += int(float(r[path]["latency lost"]))
            if bad or lost:
                print(f"  !! {path}: answers not 202: {'; '.join(bad) or 'none'}; lost: {lost}")
    if split is not None:
        report_split(split, rate)
    for line in dominant(med, split):
        print(f"  {line}")
    summary = {
        "nats_sync_rate": round(med("nats", "sync rate")),
        "nats_event_rate": round(nats_rate),
        "nats_ratio": round(ratio, 2),
        "embedded_sync_rate": round(med("embedded", "sync rate")),
        "embedded_event_rate": round(embedded_rate),
        "embedded_ratio": round(embedded_ratio, 2),
        "latency_rate": round(rate),
        "nats_p99_ms": round(med("nats", "latency p99"), 1),
        "embedded_p99_ms": round(med("embedded", "latency p99"), 1),
    }
    print(json.dumps(summary))


def report_split(split: dict[str, float], rate: float) -> None:
    print(
        f"  NATS path split (its own nats-server, `local --no-dispatch` + `kubelambda "
        f"dispatcher`): RequestResponse {split['sync rate']:,.0f}/s; publish only "
        f"{split['publish rate']:,.0f}/s ({split['publish rate'] / split['sync rate']:.2f}x); "
        f"drain {split['drain rate']:,.0f}/s ({split['drain rate'] / split['sync rate']:.2f}x)"
    )
    print(
        f"    CPU us per event: gateway {split['sync cpu gateway']:.0f} per RequestResponse,"
        f" {split['publish cpu gateway']:.0f} to publish, {split['drain cpu gateway']:.0f} "
        f"while drained; dispatcher {split['drain cpu dispatcher']:.0f}; nats-server "
        f"{split['publish cpu nats-server']:.0f} publish + "
        f"{split['drain cpu nats-server']:.0f} drain; lost {split['lost']:.0f}"
    )
    print(
        f"    202 latency at {rate:.0f}/s with no delivery in the gateway's process: p50 "
        f"{split['alone p50']:.1f} ms, p99 {split['alone p99']:.1f} ms"
    )


def dominant(med: Callable[[str, str], float], split: dict[str, float] | None) -> list[str]:
    """Which step of the NATS path sets its end-to-end rate, as far as the figures tell."""
    accept, handle = med("nats", "async accept seconds"), med("nats", "async handle seconds")
    side = "delivery (consume + invoke)" if handle > 1.5 * accept else "the publish"
    lines = [
        f"dominates: {side}: the events were accepted in {accept:.1f} s and handled in "
        f"{handle:.1f} s from the first 202"
    ]
    gateway, sync = med("nats", "async cpu gateway"), med("nats", "sync cpu gateway")
    bound = 1e6 / gateway
    lines.append(
        f"  local mode's one Python process (gateway and dispatcher, one core) spends "
        f"{gateway:.0f} us of CPU per event, {gateway / sync:.1f}x a RequestResponse's "
        f"{sync:.0f} us: at most {bound:,.0f} events/s; handled: "
        f"{med('nats', 'async handled rate') / bound:.0%} of that"
    )
    if split is not None:
        steps = {
            "publish": split["publish cpu gateway"],
            "consume (dispatcher: fetch, decode, HTTP call, ack)": split["drain cpu dispatcher"],
            "invoke (the gateway serving that call)": split["drain cpu gateway"],
        }
        named = ", ".join(f"{name} {cpu:.0f}" for name, cpu in steps.items())
        largest = max(steps, key=steps.__getitem__)
        verdict = (
            f"largest: {largest}"
            if steps[largest] > 1.25 * min(steps.values())
            else "none dominates, each is about a third"
        )
        lines.append(f"  split, CPU us per event: {named}; {verdict}")
    return lines


if __name__ == "__main__":
    main()
