"""Billed usage end to end: `kubelambda local` serves a 512 MB function sleeping a known time,
Debian's Prometheus scrapes the gateway's admin port, and both the gateway's billed counters and
`kubelambda usage --prometheus URL` show what Lambda would bill (duration rounded up to 1 ms,
times 0.5 GB)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.prometheus import Prometheus, prometheus
from support.local import LocalMode, lambda_client, start_local
from support.waiting import free_port, wait_for

MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: sleeper}
spec:
  runtime: python3.12
  handler: app.handler
  memoryMB: 512
  scaling: {minReplicas: 1, maxReplicas: 1}
  code:
    inline:
      files:
        app.py: |
          import time
          def handler(event, context):
              time.sleep(event["sleep"])
              return {"slept": event["sleep"]}
"""
SLEEP_SECONDS, INVOCATIONS = 0.2, 4
GB = 512 / 1024
# Each invocation bills at least its sleep; the trip to the instance adds a few ms, not 50.
LEAST, MOST = SLEEP_SECONDS * GB, (SLEEP_SECONDS + 0.05) * GB
SELECTOR = '{namespace="default", function="sleeper"}'


def query(prom: Prometheus, expr: str) -> float | None:
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalMode, Prometheus]]:
    workdir: Path = tmp_path_factory.mktemp("usage")
    manifest = workdir / "sleeper.yaml"
    manifest.write_text(MANIFEST)
    admin_port = free_port()
    with ExitStack() as stack:
        prom = stack.enter_context(prometheus([f"127.0.0.1:{admin_port}"], scrape_seconds=1.0))
        local = start_local(manifest, admin_port=admin_port)
        stack.callback(local.stop)
        prom.wait_until_scraped(timeout=60)
        yield local, prom


def test_the_billed_counters_and_the_usage_table(served: tuple[LocalMode, Prometheus]) -> None:
    local, prom = served
    invocations = f"kubelambda_gateway_billed_invocations_total{SELECTOR}"
    gb_seconds = f"kubelambda_gateway_billed_gb_seconds_total{SELECTOR}"
    client = lambda_client(local.url)

    def invoke() -> None:
        answer = client.invoke(FunctionName="sleeper", Payload=json.dumps({"sleep": SLEEP_SECONDS}))
        assert "FunctionError" not in answer, answer["Payload"].read()

    def seen(count: int) -> None:
        wait_for(
            lambda: query(prom, invocations) == count,
            timeout=30,
            what=f"Prometheus to see {count} billed invocations\n{local.output()}",
            interval=0.5,
        )

    # The gateway exports a function's series from its first request on, and increase() counts
    # from the first sample Prometheus has: the usage window starts after this one.
    invoke()
    seen(1)
    for _ in range(INVOCATIONS):
        invoke()
    seen(INVOCATIONS + 1)
    billed = query(prom, gb_seconds)
    assert billed is not None and billed >= (INVOCATIONS + 1) * LEAST, billed
    assert billed <= (INVOCATIONS + 1) * MOST, billed

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "usage",
            "--prometheus",
            prom.url,
            "--since",
            "1h",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    header, row, *_ = done.stdout.splitlines()
    assert header.split()[:4] == ["NAMESPACE", "FUNCTION", "INVOCATIONS", "GB-SECONDS"]
    namespace, function, count, gb, _cost = row.split()
    assert (namespace, function) == ("default", "sleeper")
    # increase() extrapolates past the first and last samples (towards the counter's zero at
    # the start: up to the first invocation's too), a young series by up to about a fifth.
    assert INVOCATIONS <= int(count) <= (INVOCATIONS + 1) * 1.25, done.stdout
    assert INVOCATIONS * LEAST <= float(gb) <= (INVOCATIONS + 1) * MOST * 1.25, done.stdout
