"""Scaling decided from a real Prometheus scraping a real gateway: a load step at zero, then idle.

Local mode runs the gateway and its instances as processes; Debian's Prometheus scrapes
the gateway's admin port every second; the autoscaler reads Prometheus (`--prometheus`)
and nothing else, so any scale-up past the first instance came from Prometheus' data.
"""

from __future__ import annotations

import re
import textwrap
import threading
import time

from harness.prometheus import prometheus
from support.local import start_local
from support.waiting import free_port

MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: busy}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 1
  scaling: {maxReplicas: 4, targetConcurrency: 1, scaleToZeroAfterSeconds: 3}
  code:
    inline:
      files:
        app.py: |
          import time
          def handler(event, context):
              time.sleep(0.3)
              return {"ok": True}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: busy-http}
spec:
  function: busy
  http: {path: /busy}
"""

CLIENTS = 6
LOAD_SECONDS = 12.0


def test_load_step_scales_up_from_prometheus_then_back_to_zero(tmp_path):
    manifest = tmp_path / "busy.yaml"
    manifest.write_text(textwrap.dedent(MANIFEST))
    admin_port = free_port()
    with prometheus([f"127.0.0.1:{admin_port}"], scrape_seconds=1.0) as prom:
        local = start_local(manifest, "--prometheus", prom.url, admin_port=admin_port)
        try:
            # A new Prometheus hands its first targets to the scraper ~5 s after start.
            prom.wait_until_scraped(timeout=30)
            results: list[int] = []
            lock = threading.Lock()

            def client() -> None:
                end = time.monotonic() + LOAD_SECONDS
                while time.monotonic() < end:
                    try:
                        status = local.client.get("/busy").status_code
                    except Exception:  # a refused or broken connection is a failed request
                        status = 0
                    with lock:
                        results.append(status)

            load_started = time.monotonic()
            threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(LOAD_SECONDS + 60)

            assert results, "the load generator sent nothing"
            failed = [status for status in results if status != 200]
            assert not failed, f"{len(failed)} of {len(results)} requests failed: {set(failed)}"

            scaled = [line for line in local.lines if "busy: " in line and " -> " in line]
            assert not any("-> 0" in line for line in scaled), (
                f"scaled to zero under load: {scaled}"
            )
            ups = [
                (when, int(match.group(1)))
                for when, line in zip(local.arrivals, local.lines, strict=False)
                if (match := re.search(r"busy: \d+ -> (\d+) instances", line))
            ]
            peak = max(count for _, count in ups)
            assert peak >= 2, f"Prometheus-driven scale-up never happened:\n{local.output()}"
            first_above_one = next(when for when, count in ups if count >= 2)
            # The panic window is 6 s; allow the scrape interval and a tick on top.
            assert first_above_one - load_started < 10, local.output()

            local.wait_for_line("busy: 1 -> 0 instances", timeout=90)
        finally:
            local.stop()
