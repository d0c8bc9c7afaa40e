"""The process tree of `kubelambda local` for benchmarks/soak.py, read from /proc: each process's
role (local mode, the runtime's zygote, an instance's runtime, the execution environments under
it), resident memory, open descriptors, children and TCP connections, sampled by a thread
through the run; and what is left of the tree once local mode has exited."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from async_events_procs import descendants, process_parents

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
# /proc/net/tcp states: connected, closed by the peer but not by its owner, listening.
ESTABLISHED, CLOSE_WAIT, LISTEN = "01", "08", "0A"
# What each figure is, by the name a Proc gives it.
METRICS = ("rss", "fds", "tcp", "close_wait", "children", "procs")


@dataclass(frozen=True)
class Proc:
    """One process at one moment."""

    pid: int
    started: int  # clock ticks after boot: with the pid, names a process across pid reuse
    role: str  # local mode, zygote, runtime, environment, nats-server, other
    function: str  # the function an instance (runtime or environment) serves, else ""
    rss_kib: int
    fds: int
    children: int
    tcp: int  # TCP connections of any state but LISTEN
    close_wait: int  # of which the peer has closed and this process has not

    @property
    def key(self) -> str:
        """What the report groups processes by: one key per long-lived process, and per
        function for the instances' runtimes and their environments."""
        return f"{self.role} {self.function}".strip()


@dataclass
class Sample:
    """Every process of the tree at one moment, and the run's phase then."""

    at: float  # time.monotonic()
    cycle: int
    phase: str
    since: float  # seconds since the phase began
    procs: list[Proc]

    def totals(self) -> dict[str, dict[str, float]]:
        """key -> metric -> the sum over the key's processes (rss in MiB; procs: how many)."""
        found: dict[str, dict[str, float]] = {}
        for proc in self.procs:
            into = found.setdefault(proc.key, dict.fromkeys(METRICS, 0.0))
            into["rss"] += proc.rss_kib / 1024
            into["fds"] += proc.fds
            into["tcp"] += proc.tcp
            into["close_wait"] += proc.close_wait
            into["children"] += proc.children
            into["procs"] += 1
        return found


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def alive(pid: int, started: int) -> bool:
    """Whether this very process (not a later one with its pid) still exists."""
    stat = _stat(pid)
    return stat is not None and stat[1] == started


def tcp_states() -> dict[str, str]:
    """socket inode -> TCP state of every TCP socket owned by a process on this machine."""
    states = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] != "0":  # 0: no owner left (TIME_WAIT)
                    states[fields[9]] = fields[3]
    return states


def _descriptors(pid: int, states: Mapping[str, str]) -> tuple[int, int, int]:
    """(open descriptors, TCP connections, of which in CLOSE_WAIT) of a process."""
    fds = tcp = close_wait = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            fds += 1
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            state = states.get(link.removeprefix("socket:[").removesuffix("]"))
            if link.startswith("socket:[") and state is not None and state != LISTEN:
                tcp += 1
                close_wait += state == CLOSE_WAIT
    return fds, tcp, close_wait


def _rss_kib(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except (OSError, IndexError):
        return 0


def _function(pid: int, functions: Iterable[str]) -> str:
    """The function whose code folder (…/code/NAMESPACE/NAME-DIGEST) is the runtime's cwd."""
    try:
        folder = Path(os.readlink(f"/proc/{pid}/cwd")).name
    except OSError:
        return "?"
    return next((name for name in functions if folder.rsplit("-", 1)[0] == name), "?")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def snapshot(local: int, nats: int | None, functions: Iterable[str]) -> list[Proc]:
    """Local mode (pid `local`), every process under it, and the nats-server (a reference)."""
    parents = process_parents()
    children: dict[int, int] = {}
    for parent in parents.values():
        children[parent] = children.get(parent, 0) + 1
    states = tcp_states()
    roles: dict[int, tuple[str, str]] = {local: ("local mode", "")}
    if nats is not None:
        roles[nats] = ("nats-server", "")
    # descendants() goes down one generation at a time, so a parent is named before its children.
    for pid in descendants(local, parents):
        parent = parents.get(pid, 0)
        parent_role, parent_function = roles.get(parent, ("other", ""))
        if parent == local and "kubelambda_runtime.zygote" in _cmdline(pid):
            roles[pid] = ("zygote", "")
        elif parent_role in ("zygote", "local mode"):
            roles[pid] = ("runtime", _function(pid, functions))
        elif parent_role in ("runtime", "environment"):
            roles[pid] = ("environment", parent_function)  # its keeper, worker, and theirs
        else:
            roles[pid] = ("other", "")
    found = []
    for pid, (role, function) in roles.items():
        stat = _stat(pid)
        if stat is None:
            continue  # ended while the tree was read
        fds, tcp, close_wait = _descriptors(pid, states)
        found.append(
            Proc(
                pid=pid, started=stat[1], role=role, function=function, rss_kib=_rss_kib(pid),
                fds=fds, children=children.get(pid, 0), tcp=tcp, close_wait=close_wait,
            )
        )  # fmt: skip
    return found


@dataclass
class Sampler:
    """Samples the tree every `interval` s in a thread; the main thread names the phase."""

    local: int
    nats: int | None
    functions: tuple[str, ...]
    interval: float = 2.0
    samples: list[Sample] = field(default_factory=list)
    # (pid, start time) -> (role, function) of every process ever seen in the tree
    seen: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    cycle: int = 0
    phase: str = "start"
    phase_at: float = field(default_factory=time.monotonic)
    seconds: float = 0.0  # spent sampling, in this thread
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def enter(self, cycle: int, phase: str) -> None:
        self.cycle, self.phase, self.phase_at = cycle, phase, time.monotonic()

    def sample(self) -> Sample:
        """One sample now (from any thread), kept with the others."""
        began = time.monotonic()
        cycle, phase, phase_at = self.cycle, self.phase, self.phase_at
        procs = snapshot(self.local, self.nats, self.functions)
        taken = Sample(at=began, cycle=cycle, phase=phase, since=began - phase_at, procs=procs)
        with self._lock:
            self.samples.append(taken)
            for proc in procs:
                self.seen.setdefault((proc.pid, proc.started), (proc.role, proc.function))
            self.seconds += time.monotonic() - began
        return taken

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def window(self, cycle: int, phase: str, *, after: float = 0.0) -> list[Sample]:
        """The samples of one cycle's phase, from `after` seconds into it."""
        with self._lock:
            return [
                s
                for s in self.samples
                if s.cycle == cycle and s.phase == phase and s.since >= after
            ]

    def left(self, functions: Iterable[str]) -> list[tuple[int, str, str]]:
        """(pid, role, function) of every process of these functions' instances that was ever
        seen and still runs, wherever it is now (an orphan leaves the tree)."""
        names = set(functions)
        with self._lock:
            seen = list(self.seen.items())
        return [
            (pid, role, function)
            for (pid, started), (role, function) in seen
            if function in names and alive(pid, started)
        ]

    def survivors(self) -> list[tuple[int, str, str]]:
        """(pid, role, function) of every process ever seen under local mode that still runs
        (for after local mode has exited)."""
        with self._lock:
            seen = list(self.seen.items())
        return [
            (pid, role, function)
            for (pid, started), (role, function) in seen
            if role != "nats-server" and alive(pid, started)
        ]


def median_totals(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """key -> metric -> the median over these samples of the key's sums (0 where absent)."""
    per = [s.totals() for s in samples]
    keys = {key for totals in per for key in totals}
    return {
        key: {
            metric: statistics.median(t.get(key, {}).get(metric, 0.0) for t in per)
            for metric in METRICS
        }
        for key in keys
    }


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 if it is gone)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def entries(folder: Path) -> list[str]:
    """What is under `folder`, as paths relative to it, down to the first files (an empty
    folder is listed as itself, with a trailing slash)."""
    found = []
    for root, dirs, files in os.walk(folder):
        relative = Path(root).relative_to(folder)
        found += [str(relative / name) for name in files]
        if not dirs and not files and root != str(folder):
            found.append(f"{relative}/")
    return sorted(found)
