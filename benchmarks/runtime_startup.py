"""Benchmark: runtime process start -> /healthz ready, against `python -c "import uvicorn"`.

Each trial spawns a fresh process, as a pod's container does (`python -I -u -m
kubelambda_runtime` in the task root, no options); ready is /healthz answering 200, so the
worker's imports and the handler's init count. The floor is the time to start Python and
import uvicorn, which any uvicorn-served runtime pays. Prints medians in ms, the spread
(min-max) and the ratio to the floor. Target: ratio <= 2.

`--against PYTHON` measures a second interpreter's runtime in the same run, interleaved (e.g.
a venv whose site path holds the code before a change): the runtime and its workers start
isolated (-I), so each interpreter runs the kubelambda_runtime its own site path holds.
`--importtime N` also prints, for each, `-X importtime`'s total for the modules the start-up
path imports (the server's and the worker's entry modules, and what the server imports late),
and the N modules that cost the most themselves.

    python benchmarks/runtime_startup.py [--trials 20] [--against PYTHON] [--importtime 15]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadgen import free_port

# What a pod's runtime imports before it answers ready: the server's entry module and what
# serve() imports late, and the worker's entry module (before the handler's init).
SERVER_IMPORTS = (
    "kubelambda_runtime.__main__",
    "uvloop",
    "kubelambda_runtime.server.endpoints",
    "kubelambda_runtime.server.httpserver",
    "kubelambda_runtime.server.ready",
)
WORKER_IMPORTS = ("kubelambda_runtime.worker.__main__",)


def time_import_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import uvicorn"], check=True)
    return time.perf_counter() - started


def time_ready(python: str, code: Path) -> tuple[float, float]:
    """Seconds from the start to /healthz 200, and the CPU seconds (user + system) the
    runtime's process tree used, start-up and shutdown: less moved by a loaded machine."""
    port = free_port()
    env = {
        **os.environ,
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": str(code),
        "KUBELAMBDA_HOST": "127.0.0.1",
        "KUBELAMBDA_PORT": str(port),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-I", "-u", "-m", "kubelambda_runtime"],  # the image's entrypoint
        env=env,
        cwd=code,  # the image's WORKDIR, /var/task
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = None
    try:
        deadline = started + 20
        while ready is None and time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{python}'s runtime exited with {proc.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    ready = time.perf_counter() - started
            except OSError:
                time.sleep(0.001)
        if ready is None:
            raise SystemExit("the runtime did not become ready within 20 s")
    finally:
        proc.terminate()
    return ready, cpu_seconds(proc)


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """Reap `proc`: its CPU seconds, with those of the descendants it reaped (its workers)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def import_cpu(python: str, modules: tuple[str, ...]) -> float:
    """CPU seconds of a fresh isolated interpreter that imports `modules` and exits."""
    proc = subprocess.Popen([python, "-I", "-c", f"import {', '.join(modules)}"])
    return cpu_seconds(proc)


def importtime(python: str, modules: tuple[str, ...]) -> list[tuple[int, int, str]]:
    """-X importtime's rows (self us, cumulative us, indented name) for importing `modules`
    in a fresh isolated interpreter."""
    done = subprocess.run(
        [python, "-X", "importtime", "-I", "-c", f"import {', '.join(modules)}"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((int(own), int(cumulative), name.rstrip()))
    return rows


def report_importtime(python: str, *, trials: int, top: int) -> None:
    for what, modules in (("server", SERVER_IMPORTS), ("worker", WORKER_IMPORTS)):
        cpu = sorted(import_cpu(python, modules) * 1000 for _ in range(trials))
        totals: list[float] = []
        own_times: dict[str, list[float]] = {}
        names: set[str] = set()
        for _ in range(trials):
            rows = importtime(python, modules)
            names = {name.strip() for _, _, name in rows}
            # Top-level rows' cumulative times add up to the whole (nested rows are in them).
            totals.append(sum(c for _, c, name in rows if not name.startswith("  ")) / 1000)
            for own, _, name in rows:
                own_times.setdefault(name.strip(), []).append(own / 1000)
        print(
            f"  {what}'s imports: {len(names)} modules; CPU p50 {statistics.median(cpu):.1f} ms"
            f" (min {cpu[0]:.1f}); -X importtime total p50 {statistics.median(totals):.1f} ms"
            f" (min {min(totals):.1f}); {trials} runs each"
        )
        typical = {name: statistics.median(times) for name, times in own_times.items()}
        for name, milliseconds in sorted(typical.items(), key=lambda item: -item[1])[:top]:
            print(f"    {milliseconds:6.2f} ms  {name}")


def summary(label: str, samples: list[tuple[float, float]], floor: float) -> str:
    wall = sorted(ready * 1000 for ready, _ in samples)
    cpu = sorted(used * 1000 for _, used in samples)
    p50 = statistics.median(wall)
    return (
        f"{label}:\n  start -> ready p50 {p50:6.1f} ms (min {wall[0]:.1f}, max {wall[-1]:.1f},"
        f" {len(wall)} trials), ratio {p50 / floor:.2f}; CPU p50 {statistics.median(cpu):.1f} ms"
        f" (min {cpu[0]:.1f}, max {cpu[-1]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--against", metavar="PYTHON", help="a second interpreter to compare")
    parser.add_argument("--importtime", type=int, metavar="N", default=0)
    args = parser.parse_args()
    code = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    (code / "app.py").write_text("def handler(event, context):\n    return {}\n")
    pythons = [sys.executable, *([args.against] if args.against else [])]
    floors: list[float] = []
    readies: dict[str, list[tuple[float, float]]] = {python: [] for python in pythons}
    for trial in range(args.trials):  # interleaved, so background noise hits all alike
        floors.append(time_import_floor())
        for python in pythons[trial % 2 :] + pythons[: trial % 2]:  # alternate who goes first
            readies[python].append(time_ready(python, code))
    floor = statistics.median(floors) * 1000
    print(f"import uvicorn (floor): p50 {floor:6.1f} ms  (p50 of {args.trials})")
    for python in pythons:
        print(summary(f"runtime [{python}]", readies[python], floor))
        if args.importtime:
            report_importtime(python, trials=min(args.trials, 10), top=args.importtime)
    print("target: ratio <= 2")


if __name__ == "__main__":
    main()
