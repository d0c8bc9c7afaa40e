"""Benchmark: local-mode cold start, a request at zero instances -> its response.

Serves N trivial functions (each at zero) with `kubelambda local` and calls each once
through its HTTP trigger: the client-observed latency is the cold start, each instance
forked by the runtime's zygote. Measured alone in the same run, to show what dominates: an
instance's start forked by a zygote (fork -> readiness signal), the same as a new Python
process (the fallback), and the reference, the runtime's own start-up
(`python -m kubelambda_runtime` -> /healthz ready), which every cold start paid before the
zygote. The gateway's `Server-Timing: coldstart` is the time a request was held.
Target: p50 <= 50 ms.

    python benchmarks/local_coldstart.py [--trials 20]

(with the project's venv: ~/.cache/kubelambda/venv/bin/python, PYTHONPATH=operator:runtime)
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubelambda.platforms.local.instances import LocalInstance
from kubelambda.platforms.local.zygote import Zygote
from loadgen import free_port, percentile
from runtime_startup import time_ready

# The handler says whether its runtime's parent is a zygote: worker -> keeper -> runtime -> ?
HANDLER = (
    "import os\\n"
    "def parent(pid):\\n"
    "    return int(open(f'/proc/{pid}/stat').read().rpartition(')')[2].split()[1])\\n"
    "def handler(event, context):\\n"
    "    above = parent(parent(os.getppid()))\\n"
    "    return {'zygote': b'kubelambda_runtime.zygote' in "
    "open(f'/proc/{above}/cmdline', 'rb').read()}\\n"
)
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
        app.py: "{handler}"
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: cold{index}}}
spec:
  function: cold{index}
  http: {{path: /cold{index}}}
---
"""


def through_local_mode(work: Path, trials: int) -> tuple[list[float], list[float], int]:
    """Client-observed and gateway-held cold starts (ms), and how many the zygote forked."""
    manifest = work / "functions.yaml"
    manifest.write_text("".join(FUNCTION.format(index=i, handler=HANDLER) for i in range(trials)))
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
    totals, held, forked = [], [], 0
    try:
        assert local.stdout is not None
        for line in local.stdout:
            if "kubelambda local: gateway" in line:
                break
        else:
            raise SystemExit("local mode did not start")
        for index in range(trials):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.perf_counter()
            connection.request("GET", f"/cold{index}")
            answer = connection.getresponse()
            body = answer.read()
            totals.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                raise SystemExit(f"/cold{index} answered {answer.status}: {body!r}")
            timing = answer.getheader("server-timing") or ""
            if "coldstart;dur=" not in timing:
                raise SystemExit(f"/cold{index} was not a cold start: {timing!r}")
            held.append(float(timing.split("dur=")[1]))
            forked += bool(json.loads(body)["zygote"])
    finally:
        local.terminate()
        local.wait(30)
    return totals, held, forked


async def instance_starts(code: Path, trials: int) -> tuple[list[float], list[float]]:
    """An instance's start alone (ms): forked by a zygote, and as a new process."""
    zygote = Zygote(output=lambda line: None)
    zygote.start()
    environment = {"_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": str(code)}

    async def start(with_zygote: Zygote | None) -> float:
        started = time.perf_counter()
        instance = await LocalInstance.start(
            name="bench",
            code_dir=code,
            environment=environment,
            host="127.0.0.1",
            output=lambda line: None,
            zygote=with_zygote,
        )
        if await instance.wait_ready() != "ready":
            raise SystemExit("the instance did not start")
        elapsed = (time.perf_counter() - started) * 1000
        if instance.forked != (with_zygote is not None):
            raise SystemExit("the instance did not start the way it was asked to")
        await instance.stop(grace=5)
        return elapsed

    try:
        await start(zygote)  # the zygote's own start-up is local mode's, not a cold start's
        forks, spawns = [], []
        for _ in range(trials):  # interleaved, so background noise hits both alike
            forks.append(await start(zygote))
            spawns.append(await start(None))
        return forks, spawns
    finally:
        await zygote.aclose()


def line(label: str, values: list[float], note: str = "") -> str:
    return (
        f"  {label:<37} p50 {statistics.median(values):6.1f} ms  "
        f"p95 {percentile(values, 0.95):6.1f} ms  {note}"
    ).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    totals, held, forked = through_local_mode(work, args.trials)
    code = work / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return {}\n")
    alone = min(args.trials, 10)
    forks, spawns = asyncio.run(instance_starts(code, alone))
    reference = [time_ready(sys.executable, code)[0] * 1000 for _ in range(alone)]
    n = args.trials
    print(
        f"cold start, client-observed: p50 {statistics.median(totals):6.1f} ms  "
        f"p95 {percentile(totals, 0.95):6.1f} ms  (n={n}, {forked} forked by the zygote; "
        "target p50 <= 50)"
    )
    print(line("held in the gateway:", held))
    print(
        f"  {'first request, as local mode started:':<37} {totals[0]:6.1f} ms  "
        "(its zygote may still be importing)"
    )
    print(line("instance start, zygote fork -> ready:", forks, f"(alone, n={alone})"))
    print(line("instance start, new process -> ready:", spawns, "(alone: the fallback)"))
    print(line("reference, runtime start -> /healthz:", reference, "(alone: before the zygote)"))
    fork = statistics.median(forks)
    steps = {
        "the instance's start (fork -> ready)": fork,
        "the gateway and platform around it (held - instance start)": max(
            statistics.median(held) - fork, 0.0
        ),
        "the request outside the hold (client-observed - held)": max(
            statistics.median(totals) - statistics.median(held), 0.0
        ),
    }
    largest = max(steps, key=lambda step: steps[step])
    print(f"  largest step of the p50: {largest}, {steps[largest]:.1f} ms")
    print(
        f"  the p50 cold start is {statistics.median(totals) / statistics.median(reference):.0%}"
        " of the runtime's own start-up"
    )


if __name__ == "__main__":
    main()
