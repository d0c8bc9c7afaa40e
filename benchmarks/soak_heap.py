"""`benchmarks/soak.py --heap`: where local mode's memory goes across the soak's cycles. Local
mode runs under `child()` (its interpreter traces allocations with tracemalloc from before the
CLI is imported, and a thread answers probes); at zero in each cycle the benchmark asks for the
traced total, RSS, glibc's and pymalloc's own accounts; a tracemalloc snapshot at zero of cycle
1 and after the last cycle gives the top growths; then malloc_trim(0) says how much of RSS was
memory freed but kept by the allocator. `--spike CYCLE[:N],...` adds, in those cycles, a burst to
the load (the overload the steps seem to follow): N connections in a closed loop, or with
--spike-kind open N requests/s in an open loop (a new connection whenever none is idle, as the
soak's clients do when answers come late).

Measurement only: nothing here is in the product; the probes run in local mode's process only
because that is where its heap is.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import linecache
import os
import runpy
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MIB = 1024 * 1024
FOLDER_ENV = "SOAK_HEAP_FOLDER"  # where probes are asked for and answered
FRAMES_ENV = "SOAK_HEAP_FRAMES"  # tracemalloc's frames per traceback
ASK_SECONDS = 120.0  # a snapshot of a large heap on a busy 2-core machine takes seconds
# mallinfo2's fields (glibc >= 2.33), all size_t; summed over every malloc arena.
MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
             "uordblks", "fordblks", "keepcost")  # fmt: skip
# sys._debugmallocstats() lines kept: pymalloc's arenas (1 MiB each in 3.11) and their blocks.
PYMALLOC = {
    "# arenas allocated current": "arenas",
    "# arenas highwater mark": "arenas_high",
    "# bytes in allocated blocks": "allocated",
    "# bytes in available blocks": "available",
}


# ---- in local mode's interpreter ------------------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _Mallinfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None  # not glibc, or one older than 2.33
    return libc


def _status() -> dict[str, int]:
    """RSS and its anonymous and file-backed parts, bytes (/proc/self/status)."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            found[key] = int(value.split()[0]) * 1024
    return found


def _pymalloc() -> dict[str, int]:
    """pymalloc's arenas and blocks: sys._debugmallocstats() writes to the C stderr, so fd 2 is
    pointed at a file for the call (a line another thread writes in that moment lands there).
    Nothing while tracemalloc traces: its hooks hide pymalloc from the call (--heap-frames 0)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in PYMALLOC:
            found[PYMALLOC[key.strip()]] = int(value.strip().replace(",", ""))
    return found


def _measure(libc: ctypes.CDLL | None) -> dict[str, Any]:
    """Everything cheap, RSS first (before this probe allocates anything)."""
    status = _status()
    malloc = libc.mallinfo2() if libc is not None else None
    collected = gc.collect()  # cyclic garbage not yet collected is not kept memory
    traced, peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    return {
        **status,
        "malloc": {name: getattr(malloc, name) for name in MALLINFO2} if malloc else {},
        "pymalloc": _pymalloc(),
        "collected": collected,
        "traced": traced,
        "peak": peak,  # since the previous probe
        "tracemalloc": tracemalloc.get_tracemalloc_memory(),
        "threads": threading.active_count(),
    }


def _probe(command: str, libc: ctypes.CDLL | None, snapshot: Path) -> dict[str, Any]:
    found = _measure(libc)
    if command in ("snapshot", "trim") and tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(snapshot))
    found["after_snapshot"] = _status()["VmRSS"]  # what taking one left resident
    if command == "trim" and libc is not None:
        libc.malloc_trim(0)
        found["trimmed"] = {**_status(), "malloc": _measure(libc)["malloc"]}
    return found


def _serve(folder: Path) -> None:
    """Answer probes: `ask` holds a command ("start", "measure", "snapshot", "trim") and a name; the
    answer is NAME.json (and NAME.snapshot). Polled 5 times a second: a stat, nothing more."""
    libc = _libc()
    ask = folder / "ask"
    while True:
        time.sleep(0.2)
        try:
            command, name = ask.read_text().split()
        except (OSError, ValueError):
            continue
        ask.unlink()
        if command == "start" and (frames := int(os.environ[FRAMES_ENV])):
            tracemalloc.start(frames)
        try:
            found = _probe(command, libc, folder / f"{name}.snapshot")
        except Exception as exc:  # the benchmark reports it; local mode goes on serving
            found = {"error": repr(exc)}
        (folder / f"{name}.part").write_text(json.dumps(found))
        (folder / f"{name}.part").rename(folder / f"{name}.json")


def child() -> None:
    """Local mode's entry point under --heap (`python -c`): answer probes in a thread (the
    first, "start", starts tracing: tracing its start-up, 6 frames deep, took 23 s instead of
    1 s), then run the CLI as `kubelambda` does."""
    folder = Path(os.environ[FOLDER_ENV])
    threading.Thread(target=_serve, args=(folder,), name="soak-heap", daemon=True).start()
    sys.argv = ["kubelambda", *sys.argv[1:]]
    runpy.run_module("kubelambda.cli", run_name="__main__", alter_sys=True)


# ---- in the benchmark -----------------------------------------------------------------------


def spikes(text: str, *, connections: int) -> dict[int, int]:
    """`--spike 6,14:2000` -> {6: connections, 14: 2000} (or requests/s, --spike-kind open)."""
    found = {}
    for part in filter(None, text.split(",")):
        cycle, _, count = part.partition(":")
        found[int(cycle)] = int(count) if count else connections
    return found


@dataclass
class HeapRow:
    cycle: int
    spike: int  # the burst's connections (or requests/s) in this cycle (0: none)
    p99: float  # the HTTP Trigger's, ms
    failed: int
    sampled_rss: float  # MiB, the soak's median at zero
    probe: dict[str, Any]


@dataclass
class HeapProbe:
    """Asks local mode's interpreter for probes (see child()) and keeps what they said."""

    folder: Path
    frames: int
    spikes: dict[int, int]
    spike_seconds: float
    spike_kind: str = "closed"
    rows: list[HeapRow] = field(default_factory=list)
    snapshots: dict[str, Path] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)

    def python(self) -> tuple[str, ...]:
        here = str(Path(__file__).resolve().parent)
        return ("-c", f"import sys; sys.path.insert(0, {here!r}); import soak_heap; "
                      "soak_heap.child()")  # fmt: skip

    def env(self) -> dict[str, str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        return {FOLDER_ENV: str(self.folder), FRAMES_ENV: str(self.frames)}

    def ask(self, command: str, name: str) -> dict[str, Any]:
        (self.folder / "ask.part").write_text(f"{command} {name}")
        (self.folder / "ask.part").rename(self.folder / "ask")
        answer = self.folder / f"{name}.json"
        deadline = time.monotonic() + ASK_SECONDS
        while not answer.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"local mode did not answer the heap probe {command} {name}")
            time.sleep(0.1)
        found: dict[str, Any] = json.loads(answer.read_text())
        if "error" in found:
            raise SystemExit(f"heap probe {command} {name} failed in local mode: {found['error']}")
        return found

    async def spike(self, port: int, index: int, request: bytes) -> str:
        """The burst of cycle `index`, if it has one, for --spike-seconds; what it was answered."""
        from async_events_load import closed_loop  # here: the child never needs them
        from loadgen import open_loop

        size = self.spikes.get(index, 0)
        if not size:
            return ""
        if self.spike_kind == "open":
            opened = await open_loop(port, request, rate=size, seconds=self.spike_seconds)
            other = {k: n for k, n in opened.statuses.items() if k != 200}
            return (
                f"spike {size}/s open loop: {opened.sent:,} sent, not 200: {other or 'none'}, "
                f"no answer {opened.unanswered}"
            )
        run = await closed_loop(
            port, request, expected=200, connections=size, seconds=self.spike_seconds
        )
        return f"spike {size} connections: {run.sent:,} sent, not 200: {run.failures()}"

    def start(self) -> None:
        """Once local mode serves: tracing starts (with --heap-frames 0, only the probes)."""
        self.ask("start", "start")

    def at_zero(self, index: int, *, p99: float, failed: int, sampled_rss: float) -> None:
        probe = self.ask("snapshot" if index == 1 else "measure", f"c{index}")
        if (self.folder / "c1.snapshot").exists():
            self.snapshots["first"] = self.folder / "c1.snapshot"
        self.rows.append(HeapRow(index, self.spikes.get(index, 0), p99, failed, sampled_rss, probe))
        print(f"  heap: {row_text(self.rows[-1])}", flush=True)

    def end(self) -> None:
        """After the last cycle, still at zero: a snapshot, then malloc_trim(0)."""
        self.final = self.ask("trim", "final")
        if (self.folder / "final.snapshot").exists():
            self.snapshots["last"] = self.folder / "final.snapshot"


def _mib(value: float) -> str:
    return f"{value / MIB:.1f}"


def row_text(row: HeapRow) -> str:
    p = row.probe
    malloc, pym = p.get("malloc", {}), p.get("pymalloc", {})
    return (
        f"RSS {_mib(p['VmRSS'])} MiB (anon {_mib(p['RssAnon'])}, file {_mib(p['RssFile'])}); "
        f"traced {_mib(p['traced'])} (peak since last {_mib(p['peak'])}, tracemalloc's own "
        f"{_mib(p['tracemalloc'])}); glibc: heap {_mib(malloc.get('arena', 0))}, in use "
        f"{_mib(malloc.get('uordblks', 0))}, free kept {_mib(malloc.get('fordblks', 0))}, "
        f"mmapped {_mib(malloc.get('hblkhd', 0))}; pymalloc: "
        + (
            f"{pym['arenas']} arenas (high {pym['arenas_high']}), blocks used "
            f"{_mib(pym['allocated'])}, free {_mib(pym['available'])}"
            if pym
            else "n/a under tracemalloc"
        )
        + f"; gc freed {p['collected']}; threads {p['threads']}"
        + (
            f"; the snapshot left {(p['after_snapshot'] - p['VmRSS']) / MIB:+.1f} MiB resident"
            if row.cycle == 1
            else ""
        )
    )


def _slope(rows: list[HeapRow], value: list[float], seconds: list[float]) -> float:
    """MiB per hour by least squares (NaN under 5 cycles)."""
    if len(rows) < 5:
        return float("nan")
    return statistics.linear_regression([s / 3600 for s in seconds], value).slope


def _frame(trace: tracemalloc.StatisticDiff) -> str:
    frame = trace.traceback[0]
    name = "/".join(Path(frame.filename).parts[-3:])
    return f"{name}:{frame.lineno}"


def report(probe: HeapProbe, cycle_seconds: list[float], *, top: int = 15) -> None:
    rows = probe.rows[1:] if len(probe.rows) > 1 else probe.rows  # cycle 0 is the warm-up
    elapsed = [sum(cycle_seconds[1 : r.cycle + 1]) for r in rows]
    print("\nheap (local mode's interpreter, at zero of each cycle; MiB):")
    print(
        f"  {'cycle':>5} {'spike':>5} {'p99':>6} {'RSS':>6} {'anon':>6} {'traced':>6} "
        f"{'peak':>6} {'glibc heap':>10} {'free kept':>9} {'pymalloc':>8} {'used':>6}"
    )
    for r in rows:
        p, m, y = r.probe, r.probe.get("malloc", {}), r.probe.get("pymalloc", {})
        print(f"  {r.cycle:>5} {r.spike or '':>5} {r.p99:>6.0f} {_mib(p['VmRSS']):>6} "
              f"{_mib(p['RssAnon']):>6} {_mib(p['traced']):>6} {_mib(p['peak']):>6} "
              f"{_mib(m.get('arena', 0)):>10} {_mib(m.get('fordblks', 0)):>9} "
              f"{y.get('arenas', 0):>8} {_mib(y.get('allocated', 0)):>6}")  # fmt: skip
    first, last = rows[0].probe, rows[-1].probe
    for label, key in (("traced", "traced"), ("RSS", "VmRSS"), ("RSS anon", "RssAnon")):
        values = [r.probe[key] / MIB for r in rows]
        print(f"  {label}: {first[key] / MIB:.1f} → {last[key] / MIB:.1f} MiB (cycle "
              f"{rows[0].cycle} → {rows[-1].cycle}); trend "
              f"{_slope(rows, values, elapsed):+.1f} MiB/h")  # fmt: skip
    final = probe.final
    if "trimmed" in final:
        t = final["trimmed"]
        print(
            f"  malloc_trim(0) after the last cycle: RSS {_mib(final['after_snapshot'])} → "
            f"{_mib(t['VmRSS'])} MiB (anon {_mib(t['RssAnon'])}); glibc free kept "
            f"{_mib(final['malloc'].get('fordblks', 0))} → "
            f"{_mib(t['malloc'].get('fordblks', 0))} MiB; taking the snapshot left "
            f"{(final['after_snapshot'] - final['VmRSS']) / MIB:+.1f} MiB resident first"
        )
    if len(probe.snapshots) < 2:
        return
    skip = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<*>")]
    before = tracemalloc.Snapshot.load(str(probe.snapshots["first"])).filter_traces(skip)
    after = tracemalloc.Snapshot.load(str(probe.snapshots["last"])).filter_traces(skip)
    diffs = after.compare_to(before, "lineno")
    total = sum(d.size_diff for d in diffs)
    print(f"  top growths by file:line, cycle 1 → after the last (net {total / 1024:+,.0f} KiB "
          f"over {len(diffs):,} lines):")  # fmt: skip
    for d in diffs[:top]:
        source = linecache.getline(d.traceback[0].filename, d.traceback[0].lineno).strip()
        print(f"    {d.size_diff / 1024:+9,.1f} KiB {d.count_diff:+7,} blocks  {_frame(d)}  "
              f"{source[:60]}")  # fmt: skip
    for d in after.compare_to(before, "traceback")[:3]:
        print(
            f"  traceback of {d.size_diff / 1024:+,.1f} KiB ({d.count_diff:+,} blocks), newest "
            "first:"
        )
        for frame in list(d.traceback)[::-1]:
            source = linecache.getline(frame.filename, frame.lineno).strip()
            where = "/".join(Path(frame.filename).parts[-3:])
            print(f"    {where}:{frame.lineno}  {source[:70]}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heap", action="store_true", help="trace local mode's heap (slower)")
    parser.add_argument(
        "--heap-frames", type=int, default=6,
        help="tracemalloc's frames per traceback; 0: no tracemalloc (then pymalloc's own stats)",
    )  # fmt: skip
    parser.add_argument(
        "--spike",
        default="",
        help="cycles with a burst: CYCLE[:N],... (N connections; requests/s if open)",
    )
    parser.add_argument("--spike-connections", type=int, default=1000, help="N by default")
    parser.add_argument("--spike-seconds", type=float, default=5.0)
    parser.add_argument("--spike-kind", choices=("closed", "open"), default="closed")


def heap_probe(args: argparse.Namespace, work: Path) -> HeapProbe | None:
    if not args.heap:
        return None
    return HeapProbe(
        folder=work / "heap",
        frames=args.heap_frames,
        spikes=spikes(args.spike, connections=args.spike_connections),
        spike_seconds=args.spike_seconds,
        spike_kind=args.spike_kind,
    )


async def with_spike(load: Awaitable[T], spike: Awaitable[str]) -> tuple[T, str]:
    """Run the cycle's load and its spike (if any) at once."""
    return await asyncio.gather(load, spike)
