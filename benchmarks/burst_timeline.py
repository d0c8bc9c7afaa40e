"""What happened to one function during a burst from zero, for benchmarks/burst.py: when local
mode asked for instances (its log's "name: a -> b instances" lines), when the gateway had them
ready, and how many requests it held for them, sampled every `interval` seconds. A last half
slower than the warm function's shows here as instances late, or a backlog still draining.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Sample:
    at: float  # seconds since the timeline started
    ready: int
    queued: int
    in_flight: int


@dataclass
class Timeline:
    """Samples `function`'s gauges from the gateway's admin port and reads local mode's `log`
    for its scaling lines, in a thread, between __enter__ and __exit__."""

    admin: int
    function: str
    log: Path
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    scalings: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # Bytes, not text: the log grows by thousands of invocation lines a second, and this
        # thread shares the load generator's interpreter.
        self._scaling = re.compile(
            rb"%s: (\d+ -> \d+) instances" % re.escape(self.function.encode())
        )
        self._gauge = re.compile(
            rf"kubelambda_gateway_(ready_instances|queued_requests|in_flight_requests)\{{[^}}]*"
            rf'function="{re.escape(self.function)}"[^}}]*\}} (\S+)'
        )
        self._started = 0.0
        self._log_at = 0

    def __enter__(self) -> Timeline:
        self._log_at = self.log.stat().st_size
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            at = time.monotonic() - self._started
            self._read_log(at)
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.admin}/metrics", timeout=5
                ) as answer:
                    text = answer.read().decode()
            except OSError:
                continue  # a sample missed under load; the next one comes
            gauges = {name: int(float(value)) for name, value in self._gauge.findall(text)}
            self.samples.append(
                Sample(
                    at,
                    ready=gauges.get("ready_instances", 0),
                    queued=gauges.get("queued_requests", 0),
                    in_flight=gauges.get("in_flight_requests", 0),
                )
            )

    def _read_log(self, at: float) -> None:
        with self.log.open("rb") as log:
            log.seek(self._log_at)
            text = log.read()
        end = text.rfind(b"\n") + 1  # a line still being written is read next time
        self._log_at += end
        for match in self._scaling.finditer(text, 0, end):
            self.scalings.append((at, match.group(1).decode()))

    def summary(self) -> str:
        """One line: the scalings asked for, when each new ready count was first seen, and the
        held requests' peak and when they last stood above zero."""
        asked = ", ".join(f"{change} at {at:.1f} s" for at, change in self.scalings) or "none"
        ready: list[str] = []
        seen = 0
        for sample in self.samples:
            if sample.ready > seen:
                seen = sample.ready
                ready.append(f"{seen} at {sample.at:.1f} s")
        peak = max(self.samples, key=lambda s: s.queued, default=None)
        held = [s.at for s in self.samples if s.queued > 0]
        queue = (
            f"held peak {peak.queued} at {peak.at:.1f} s, last held at {held[-1]:.1f} s"
            if peak is not None and held
            else "none held at a sample"
        )
        return (
            f"scalings asked: {asked}; ready: {', '.join(ready) or 'none'}; {queue} "
            f"({len(self.samples)} samples, every {self.interval:g} s)"
        )
