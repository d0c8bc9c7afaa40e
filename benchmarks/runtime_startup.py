"""Benchmark: runtime process start -> /healthz ready, against `python -c "import uvicorn"`.

Each trial spawns a fresh process; the floor is the time to start Python and import
uvicorn, which any uvicorn-served runtime pays. Prints medians in ms and their ratio.
Target: ratio <= 2.

    python benchmarks/runtime_startup.py [--trials 20]
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


def time_import_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import uvicorn"], check=True)
    return time.perf_counter() - started


def time_ready(code: Path) -> float:
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
        [sys.executable, "-m", "kubelambda_runtime"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = started + 20
        while time.perf_counter() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.001)
        raise SystemExit("the runtime did not become ready within 20 s")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    code = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    (code / "app.py").write_text("def handler(event, context):\n    return {}\n")
    floors, readies = [], []
    for _ in range(args.trials):  # interleaved, so background noise hits both alike
        floors.append(time_import_floor())
        readies.append(time_ready(code))
    floor, ready = statistics.median(floors) * 1000, statistics.median(readies) * 1000
    print(f"import uvicorn (floor): {floor:6.1f} ms  (p50 of {args.trials})")
    print(f"runtime start -> ready: {ready:6.1f} ms  (p50 of {args.trials})")
    print(f"ratio: {ready / floor:.2f}  (target <= 2)")


if __name__ == "__main__":
    main()
