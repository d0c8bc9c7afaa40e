"""Local mode scaling from zero and back: held requests, the hold bound, the deadline, idling."""

from __future__ import annotations

import concurrent.futures

SLOW_START = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: slow}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 1
  scaling: {{maxReplicas: 1, scaleToZeroAfterSeconds: {idle}}}
  code:
    inline:
      files:
        app.py: |
          import os, time
          time.sleep({init_seconds})  # a slow init: requests are held meanwhile
          def handler(event, context):
              return {{"pid": os.getpid()}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: slow-http}}
spec:
  function: slow
  http: {{path: /slow}}
"""


def test_concurrent_requests_at_zero_are_held_and_all_answered(local_mode):
    local = local_mode(SLOW_START.format(idle=60, init_seconds=0.5))
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: local.client.get("/slow"), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["pid"] for a in answers}) == 1  # maxReplicas 1: one instance served all
    waited = [a for a in answers if "server-timing" in a.headers]
    assert waited, "requests that waited for the cold start say so"
    cold = float(waited[0].headers["server-timing"].split("dur=")[1])
    assert cold >= 500  # the init sleep is part of the wait
    assert local.output().count("0 -> 1 instances") == 1


def test_beyond_the_hold_bound_requests_get_503_with_retry_after(local_mode):
    local = local_mode(SLOW_START.format(idle=60, init_seconds=3), "--max-queued", "2")
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: local.client.get("/slow"), range(5)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 503, 503, 503]
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["retry-after"].isdigit()
    assert refused.json()  # names the problem


def test_past_the_hold_deadline_requests_get_504(local_mode):
    local = local_mode(SLOW_START.format(idle=60, init_seconds=5), "--hold-timeout", "1")
    answer = local.client.get("/slow")
    assert answer.status_code == 504
    assert answer.json()


def test_idle_function_scales_to_zero_and_the_next_request_cold_starts(local_mode):
    local = local_mode(SLOW_START.format(idle=2, init_seconds=0))
    first = local.client.get("/slow")
    assert first.status_code == 200
    local.wait_for_line("slow: 1 -> 0 instances", timeout=30)
    again = local.client.get("/slow")
    assert again.status_code == 200
    assert again.json()["pid"] != first.json()["pid"]
    assert "server-timing" in again.headers
