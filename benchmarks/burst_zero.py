"""A burst from zero for benchmarks/burst.py: one function at zero instances loaded at a rate
from nothing, then as long again once warm, with its timeline; and how it is printed.
"""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import uvloop

from burst_load import Answers, PeakRss, open_loop, request
from burst_report import dominant, inside, split, statuses
from burst_timeline import Timeline

# The functions' scaleToZeroAfterSeconds: those of the phases before a burst are gone before it.
IDLE_SECONDS = 3


def wait_at_zero(admin: int, names: list[str], *, timeout: float = 90.0) -> None:
    """Wait until the gateway counts no ready instance of `names` (kubelambda_gateway_ready_
    instances), or raise TimeoutError naming those still up."""
    deadline = time.monotonic() + timeout
    gauge = re.compile(r'kubelambda_gateway_ready_instances\{[^}]*function="([^"]+)"[^}]*\} (\S+)')
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=30) as answer:
            ready = {name: float(n) for name, n in gauge.findall(answer.read().decode())}
        up = {name: ready[name] for name in names if ready.get(name, 0) > 0}
        if not up:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"still ready {timeout:.0f} s after their load ended: {up}")
        time.sleep(0.5)


@dataclass
class FromZero:
    """One function's burst from zero, then the same rate once it is warm."""

    name: str
    cold: Answers
    warm: Answers
    inside: tuple[float, int]  # the gateway's own count after the burst (see inside())
    timeline: Timeline
    rss: PeakRss

    def late_p99(self, seconds: float) -> float:
        return self.cold.p(self.cold.latency, self.cold.where(after=seconds / 2), 0.99)

    def warm_p99(self) -> float:
        return self.warm.p(self.warm.latency, self.warm.where(), 0.99)


def from_zero(
    name: str, *, port: int, admin: int, pid: int, log: Path, rate: float, seconds: float
) -> FromZero:
    """Burst `name` from zero at `rate` for `seconds`, then load it as long again, warm."""
    ask = request(name, port)
    with PeakRss(pid) as rss, Timeline(admin, name, log) as timeline:
        cold = uvloop.run(open_loop(port, ask, rate=rate, seconds=seconds))
    after = inside(admin, name)
    warm = uvloop.run(open_loop(port, ask, rate=rate, seconds=seconds))
    return FromZero(name, cold, warm, after, timeline, rss)


def print_from_zero(zero: FromZero, ratio: float, *, warm_p99: float, seconds: float) -> None:
    """Print one function's burst from zero: errors, what held its slowest answers, its last
    half's p99 against its own warm p99 and the warm function's, and its timeline."""
    cold, late, whole = zero.cold, zero.cold.where(after=seconds / 2), zero.cold.where()
    first = min(cold.finished) if cold.finished else float("nan")
    held = [h for h in cold.held if h > 0]
    print(
        f"    {zero.name}: errors {cold.errors} ({statuses(cold)}); first answer after "
        f"{first * 1000:.0f} ms; {len(held)} held, longest {max(held, default=0):.0f} ms; p99 "
        f"whole burst {cold.p(cold.latency, whole, 0.99):.1f} ms, dominated by "
        f"{dominant(cold, whole)}"
    )
    print(
        f"             p99 over the last half {zero.late_p99(seconds):.1f} ms = {ratio:.1f}x its "
        f"own warm p99 ({zero.warm_p99():.1f} ms, errors {zero.warm.errors}, dominated by "
        f"{dominant(zero.warm, zero.warm.where())}), {zero.late_p99(seconds) / warm_p99:.1f}x "
        f"the warm function's; dominated by {dominant(cold, late)}"
    )
    print(f"             {split(cold, (0.0, 0), zero.inside)}")
    print(f"             {zero.timeline.summary()}")
    print(
        f"             gateway peak RSS {zero.rss.peak_kib / 1024:.0f} MiB (from "
        f"{zero.rss.first_kib / 1024:.0f} MiB)"
    )
