"""The functions and the load of benchmarks/soak.py: the manifests it serves, the mixed open-loop
load (an HTTP Trigger, Invoke API RequestResponse, Event invocations), and what local mode's
output says of scaling (each function's instance count, the schedule's ticks, anything else)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import OpenLoopRun, open_loop, percentile

# {handled}: local_mode's folder for the handlers; {zero}: scaleToZeroAfterSeconds. Four slots
# per instance and up to two instances each; the schedule's function writes a file per tick.
MANIFESTS = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: web}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 4
  scaling: {{maxReplicas: 2, scaleToZeroAfterSeconds: {zero}}}
  code:
    inline:
      files:
        app.py: |
          def handler(event, context):
              return {{"statusCode": 200, "body": "ok " + event["rawPath"]}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: web}}
spec:
  function: web
  http: {{path: /web, methods: [GET], auth: {{type: none}}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: api}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 4
  scaling: {{maxReplicas: 2, scaleToZeroAfterSeconds: {zero}}}
  code:
    inline:
      files:
        app.py: |
          def handler(event, context):
              return {{"ok": True, "echo": event}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: events}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 4
  scaling: {{maxReplicas: 2, scaleToZeroAfterSeconds: {zero}}}
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
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: tick}}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {{maxReplicas: 1, scaleToZeroAfterSeconds: {zero}}}
  env: [{{name: HANDLED, value: "{handled}"}}]
  code:
    inline:
      files:
        app.py: |
          import os
          def handler(event, context):
              open(os.path.join(os.environ["HANDLED"], "ticks", event["id"]), "w").close()
              return {{"ok": True}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: every-minute}}
spec:
  function: tick
  schedule: {{expression: rate(1 minute)}}
"""
# The functions the load scales to zero and back in each cycle; `tick` cycles on its own clock.
LOADED = ("web", "api", "events")
FUNCTIONS = (*LOADED, "tick")
KINDS = ("http", "invoke", "event")  # the load's three ways in, one per loaded function
EXPECTED = {"http": 200, "invoke": 200, "event": 202}


def manifests(zero: int) -> str:
    """The manifests as a local_mode() template (it fills in {handled})."""
    return MANIFESTS.replace("{zero}", str(zero))


def requests(port: int, tag: str) -> dict[str, bytes]:
    """One request of each kind; the Event invocations' handler writes under the folder `tag`."""

    def invoke(function: str, kind: str, event: dict[str, str]) -> bytes:
        body = json.dumps(event).encode()
        return (
            f"POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\n"
            f"host: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-amz-invocation-type: {kind}\r\n\r\n"
        ).encode() + body

    return {
        "http": f"GET /web HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode(),
        "invoke": invoke("api", "RequestResponse", {"soak": tag}),
        "event": invoke("events", "Event", {"tag": tag}),
    }


@dataclass
class LoadRun:
    """One load phase: each kind's open-loop run."""

    runs: dict[str, OpenLoopRun]

    def sent(self) -> int:
        return sum(run.sent for run in self.runs.values())

    def accepted(self) -> int:
        return self.runs["event"].statuses[202]

    def failures(self) -> Counter[str]:
        """Requests not answered as expected, by kind and answer ("event 503", "http none")."""
        found: Counter[str] = Counter()
        for kind, run in self.runs.items():
            for status, count in run.statuses.items():
                if status != EXPECTED[kind]:
                    found[f"{kind} {status}"] += count
            if run.unanswered:
                found[f"{kind} none"] += run.unanswered
        return found

    def p99(self, kind: str) -> float:
        latencies = self.runs[kind].latencies
        return percentile(latencies, 0.99) if latencies else float("nan")


async def mixed_load(port: int, *, tag: str, rate: float, seconds: float) -> LoadRun:
    """`rate` requests/s for `seconds`, a third of each kind, each kind on its own schedule."""
    made = requests(port, tag)
    runs = await asyncio.gather(
        *(
            open_loop(port, made[kind], rate=rate / len(KINDS), seconds=seconds,
                      warm_connections=2)
            for kind in KINDS
        )
    )  # fmt: skip
    return LoadRun(runs=dict(zip(KINDS, runs, strict=True)))


SCALED = re.compile(r"^kubelambda: ([\w.-]+): (\d+) -> (\d+) instances")
FIRED = re.compile(r"^kubelambda local: schedule \S+ fired")
# Local mode's own lines about what it serves, said once at start; not worth reporting.
ROUTINE = re.compile(r"^(kubelambda local: (gateway|console|function logs)|  )")


@dataclass
class ScaleLog:
    """What local mode has said so far (its output file, read on from where it was left)."""

    path: Path
    offset: int = 0
    desired: dict[str, int] = field(default_factory=dict)
    to_zero: Counter[str] = field(default_factory=Counter)
    from_zero: Counter[str] = field(default_factory=Counter)
    fired: int = 0
    other: Counter[str] = field(default_factory=Counter)  # its other lines of its own, by text
    _partial: bytes = b""

    def read(self) -> None:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            if line.startswith("[") or ROUTINE.match(line):
                continue  # a function's own output (three lines per invocation), or routine
            if found := SCALED.match(line):
                name, before, after = found[1], int(found[2]), int(found[3])
                self.desired[name] = after
                self.to_zero[name] += after == 0
                self.from_zero[name] += before == 0
            elif FIRED.match(line):
                self.fired += 1
            elif line.strip():
                # Numbers vary between repeats of one message (pids, ports): count it as one.
                self.other[re.sub(r"\d+", "N", line)[:160]] += 1

    def at_zero(self, functions: tuple[str, ...]) -> bool:
        """Whether local mode's last word on each of `functions` was 0 instances."""
        self.read()
        return all(self.desired.get(name, 0) == 0 for name in functions)
