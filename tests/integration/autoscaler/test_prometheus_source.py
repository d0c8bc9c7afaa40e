"""The autoscaler's PromQL against a real Prometheus (Debian's): the answer lists only the
functions with load, and calls the others idle only while every gateway of the job is scraped.

Two gateway-shaped exporters (stdlib HTTP servers, the gateway's metric names and labels) are
scraped every second in one job; one function is busy on the first. When the second stops
answering, Prometheus marks it down and its series stale: a function missing from the answer
is then unknown, and the autoscaler keeps its instances instead of reading it as idle.
"""

from __future__ import annotations

import asyncio
import http.server
from collections.abc import Iterator
from contextlib import contextmanager

from harness.prometheus import prometheus, serve_metrics, stop_serving
from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler import prometheus as promql
from kubelambda.autoscaler.decider import ScalingSpec
from kubelambda.autoscaler.loop import Autoscaler
from kubelambda.autoscaler.sources import Observations
from support.waiting import wait_for

BUSY, IDLE, OTHER = (FunctionKey("ns", name) for name in ("busy", "idle", "other"))
SPEC = ScalingSpec(
    target_concurrency=1, min_replicas=0, max_replicas=10, scale_to_zero_after_seconds=300
)


class Exporter:
    """/metrics as a gateway writes it: `busy` functions have 2 in flight and answer 5 requests
    between scrapes, the others are exported at 0."""

    def __init__(self, functions: list[FunctionKey], busy: set[FunctionKey]) -> None:
        self.functions, self.busy, self.scrapes = functions, busy, 0

    def text(self) -> bytes:
        self.scrapes += 1
        lines = []
        for key in self.functions:
            labels = f'namespace="{key.namespace}",function="{key.name}"'
            active = key in self.busy
            lines.append(f"{promql.IN_FLIGHT}{{{labels}}} {2 if active else 0}")
            lines.append(f"{promql.QUEUED}{{{labels}}} 0")
            total = self.scrapes * 5 if active else 1
            lines.append(f'{promql.REQUESTS}{{{labels},code="200"}} {total}')
        return ("\n".join(lines) + "\n").encode()


@contextmanager
def serving(exporter: Exporter) -> Iterator[http.server.ThreadingHTTPServer]:
    server = serve_metrics(exporter.text)
    try:
        yield server
    finally:
        stop_serving(server)


def address(server: http.server.ThreadingHTTPServer) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


def test_absent_functions_are_idle_only_while_every_gateway_is_scraped() -> None:
    first = Exporter([BUSY, IDLE], busy={BUSY})
    second = Exporter([IDLE, OTHER], busy=set())
    with (
        serving(first) as one,
        serving(second) as two,
        prometheus([address(one), address(two)], scrape_seconds=1.0) as server,
    ):
        server.wait_until_scraped(timeout=60)
        source = promql.PrometheusSource(server.url, fresh_seconds=10)

        def observe() -> Observations:
            return asyncio.run(source.observe(now=0.0))

        def listed_with_both_windows() -> Observations | None:
            observed = observe()
            busy = observed.functions.get(BUSY)
            ready = busy is not None and busy.panic_rps > 0 and busy.stable_concurrency > 0
            return observed if ready and observed.complete else None

        observed = wait_for(
            listed_with_both_windows, timeout=60, what="the busy function in both windows"
        )
        # Only the busy function is in the answer, summed over the gateways' series.
        assert set(observed.functions) == {BUSY}
        assert observed.functions[BUSY].panic_concurrency == 2

        replicas = {BUSY: 2, IDLE: 0, OTHER: 1}

        class Target:
            def replicas(self, function: FunctionKey) -> int:
                return replicas[function]

            async def scale(self, function: FunctionKey, count: int, *, reason: str) -> None:
                replicas[function] = count

        autoscaler = Autoscaler(
            source=source, target=Target(), specs=lambda: dict.fromkeys(replicas, SPEC)
        )
        asyncio.run(autoscaler.tick(now=1000.0))
        # Idle from a complete answer: kept until idle for scaleToZeroAfterSeconds.
        assert "keeping 1 instance until idle" in autoscaler.decisions[OTHER].reason

        stop_serving(two)
        wait_for(
            lambda: not observe().complete, timeout=30, what="Prometheus to see a gateway down"
        )
        asyncio.run(autoscaler.tick(now=1001.0))
        assert "no metrics" in autoscaler.decisions[OTHER].reason
        assert replicas[OTHER] == 1
        assert BUSY in observe().functions  # still listed, from the gateway that answers
