"""Benchmark: local-mode cold start, a request at zero instances -> its response.

Serves N trivial functions (each at zero) with `kubelambda local` and calls each once
through its HTTP trigger: the client-observed latency is the cold start. The gateway's
own `Server-Timing: coldstart` (time held waiting for an instance) and the runtime's
process start -> /healthz ready, measured alone in the same run, show what dominates.
Target: p50 <= 500 ms.

    python benchmarks/local_coldstart.py [--trials 20]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadgen import free_port, percentile
from runtime_startup import time_ready

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: cold{index}}}
spec:
  runtime: python3.12
  handler: app.handler
  code:
    inline:
      files:
        app.py: "def handler(event, context):\\n    return {{'ok': True}}\\n"
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: cold{index}}}
spec:
  function: cold{index}
  http: {{path: /cold{index}}}
---
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    manifest = work / "functions.yaml"
    manifest.write_text("".join(FUNCTION.format(index=i) for i in range(args.trials)))
    port, admin = free_port(), free_port()
    local = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "local",
            str(manifest),
            "--port",
            str(port),
            "--admin-port",
            str(admin),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert local.stdout is not None
        for line in local.stdout:
            if "kubelambda local: gateway" in line:
                break
        else:
            raise SystemExit("local mode did not start")
        totals, held = [], []
        for index in range(args.trials):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.perf_counter()
            connection.request("GET", f"/cold{index}")
            answer = connection.getresponse()
            answer.read()
            totals.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                raise SystemExit(f"/cold{index} answered {answer.status}")
            timing = answer.getheader("server-timing") or ""
            if "coldstart;dur=" not in timing:
                raise SystemExit(f"/cold{index} was not a cold start: {timing!r}")
            held.append(float(timing.split("dur=")[1]))
    finally:
        local.terminate()
        local.wait(30)
    code = work / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return {}\n")
    alone = [time_ready(code) * 1000 for _ in range(min(args.trials, 10))]
    n = args.trials
    print(
        f"cold start, client-observed: p50 {statistics.median(totals):6.1f} ms  "
        f"p95 {percentile(totals, 0.95):6.1f} ms  (n={n}, target p50 <= 500)"
    )
    print(
        f"  held in the gateway:       p50 {statistics.median(held):6.1f} ms  "
        f"p95 {percentile(held, 0.95):6.1f} ms"
    )
    print(f"  runtime start -> ready:    p50 {statistics.median(alone):6.1f} ms  (alone)")
    share = statistics.median(alone) / statistics.median(totals)
    print(f"  the runtime's own start-up is {share:.0%} of the p50 cold start")


if __name__ == "__main__":
    main()
