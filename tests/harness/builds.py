"""Runs the harness's build steps at the lowest priority, logging to the cache and measuring each.

Used by `binaries`, `gomodules`, `images` and `kafka`: every step records wall time, the peak
memory of its largest process (`ru_maxrss` from wait4) and of its whole process group (sampled
from /proc), and reports itself through `progress` while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.cache import cache_dir
from harness.procs import die_with_parent, tail
from harness.progress import REPORTER, Meter, Reporter

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class PartUnavailable(RuntimeError):
    """A real part the tests need could not be had; the message says what failed and how to get
    it."""


@dataclass
class Measure:
    """Wall time and peak memory of one or more steps that together build a part."""

    seconds: float = 0.0
    peak_process_mib: float = 0.0
    peak_group_mib: float = 0.0
    steps: list[str] = field(default_factory=list)

    def add(self, *, what: str, seconds: float, process_mib: float, group_mib: float) -> None:
        self.seconds += seconds
        self.peak_process_mib = max(self.peak_process_mib, process_mib)
        self.peak_group_mib = max(self.peak_group_mib, group_mib)
        self.steps.append(what)


@dataclass(frozen=True)
class BuildRecord:
    part: str
    version: str
    seconds: float
    peak_process_mib: float
    peak_group_mib: float
    finished: str

    def line(self) -> str:
        return (
            f"{self.part} {self.version}: {self.seconds:.0f} s, peak "
            f"{self.peak_process_mib:.0f} MiB (largest process), "
            f"{self.peak_group_mib:.0f} MiB (all processes of the build)"
        )


def record(part: str, version: str, measure: Measure) -> BuildRecord:
    """Append a finished build to build-times.jsonl, so cold build figures survive the run."""
    entry = BuildRecord(
        part=part,
        version=version,
        seconds=round(measure.seconds, 1),
        peak_process_mib=round(measure.peak_process_mib),
        peak_group_mib=round(measure.peak_group_mib),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    with (cache_dir() / "build-times.jsonl").open("a") as out:
        out.write(json.dumps(asdict(entry)) + "\n")
    return entry


def last_seconds(part: str) -> float | None:
    """How long the last recorded cold build of `part` took (any version), for the estimate a
    step's start line gives; None when build-times.jsonl has none."""
    try:
        lines = (cache_dir() / "build-times.jsonl").read_text().splitlines()
    except OSError:
        return None
    for text in reversed(lines):
        try:
            entry = json.loads(text)
        except ValueError:
            continue  # a line cut short by a killed run
        if isinstance(entry, dict) and entry.get("part") == part:
            seconds = entry.get("seconds")
            return float(seconds) if isinstance(seconds, int | float) else None
    return None


def _group_rss_bytes(pgid: int) -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            # Fields after the parenthesised command name: state, ppid, pgrp, ...
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            total += int(Path(entry.path, "statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, ValueError, IndexError):
            continue  # the process ended between listing and reading
    return total


class _GroupSampler(threading.Thread):
    """Samples the summed resident memory of a process group until told to stop."""

    def __init__(self, pgid: int) -> None:
        super().__init__(daemon=True)
        self.pgid = pgid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.peak = max(self.peak, _group_rss_bytes(self.pgid))


def run_step(
    argv: Sequence[str],
    *,
    what: str,
    log: Path,
    cwd: Path,
    env: Mapping[str, str],
    measure: Measure,
    how_to_get: str,
    timeout: float = 5400.0,
    meter: Meter | None = None,
    reporter: Reporter | None = None,
) -> None:
    """Run one build command under `nice -n 19` (interactive work keeps a core), appending its
    output to `log`; raise PartUnavailable with the log's tail if it fails or overruns `timeout`.
    It is a phase of the step being reported (or a step of its own), `meter` its progress."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with (reporter or REPORTER).phase(what, meter=meter):
        with log.open("a") as out:
            out.write(f"\n$ (cd {cwd} && {' '.join(argv)})\n")
            out.flush()
            started = time.monotonic()
            proc = subprocess.Popen(
                ["nice", "-n", "19", *argv],
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: sampled, and killed as one
                preexec_fn=die_with_parent,  # a killed test run leaves no build hogging the cores
            )
            sampler = _GroupSampler(proc.pid)
            sampler.start()
            killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
            killer.start()
            try:
                # wait4 rather than Popen.wait: its rusage carries the peak RSS of the largest
                # process of the build (the compiler or the linker).
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            finally:
                killer.cancel()
                sampler.done.set()
                sampler.join()
            seconds = time.monotonic() - started
            out.write(f"# exit {proc.returncode} after {seconds:.1f} s\n")
        measure.add(
            what=what,
            seconds=seconds,
            process_mib=usage.ru_maxrss / 1024,
            group_mib=sampler.peak / 2**20,
        )
        if proc.returncode != 0:
            reason = "timed out" if seconds >= timeout else f"exited {proc.returncode}"
            raise PartUnavailable(
                f"{what} {reason} after {seconds:.0f} s; log: {log}\n--- last lines ---\n"
                f"{tail(log)}\n--- how to get it ---\n{how_to_get}"
            )
