"""Billed usage as Lambda bills it (gateway/metrics.py, counted in gateway/invocation.py): each
answered invocation's duration rounded up to 1 ms, times the Function's memory (1 GB = 1024 MB)."""

from __future__ import annotations

import pytest

from kubelambda.api import parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.activation import FunctionLoad
from kubelambda.gateway.metrics import GatewayMetrics, billed_ms, gb_seconds
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.routing import FunctionEntry
from unit.gateway.serving import HELLO, MakeStandIn, StartGateway, raw_server
from unit.gateway.test_metrics import HELLO_LABELS, samples

INVOCATIONS = "kubelambda_gateway_billed_invocations_total"
GB_SECONDS = "kubelambda_gateway_billed_gb_seconds_total"


@pytest.mark.parametrize(
    ("duration_ms", "billed"),
    [(0.0, 1), (0.2, 1), (1.0, 1), (1.0001, 2), (299.5, 300), (1000.0, 1000), (1000.01, 1001)],
)
def test_billed_duration_is_rounded_up_to_the_millisecond(duration_ms: float, billed: int) -> None:
    assert billed_ms(duration_ms) == billed


@pytest.mark.parametrize(
    ("duration_ms", "memory_mb", "expected"),
    [(1000, 1024, 1.0), (1, 128, 0.000125), (300, 512, 0.15), (900_000, 10240, 9000.0)],
)
def test_gb_seconds_counts_a_gb_as_1024_mb(
    duration_ms: int, memory_mb: int, expected: float
) -> None:
    assert gb_seconds(duration_ms=duration_ms, memory_mb=memory_mb) == pytest.approx(expected)


def test_the_counters_add_exactly_and_start_at_zero_for_known_functions() -> None:
    idle = FunctionKey("shop", "idle")
    metrics = GatewayMetrics(load=lambda: {idle: _no_load()})
    for _ in range(3):
        metrics.billed(HELLO, duration_ms=1, memory_mb=128)
    found = samples(metrics.render().decode())
    assert found[(INVOCATIONS, HELLO_LABELS)] == 3
    assert found[(GB_SECONDS, HELLO_LABELS)] == 3 * 0.000125
    # A function nobody invoked yet is at 0, so that increase() counts its first invocation.
    idle_labels = (("function", "idle"), ("namespace", "shop"))
    assert found[(INVOCATIONS, idle_labels)] == 0
    assert found[(GB_SECONDS, idle_labels)] == 0


def _no_load() -> FunctionLoad:
    return FunctionLoad(
        in_flight=0, queued=0, ready_instances=0, capacity=0, requests_total=0, last_request_at=None
    )


def _hello(memory_mb: int) -> FunctionEntry:
    spec = parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "memoryMB": memory_mb,
                "code": {"inline": {"files": {"app.py": "def handler(e, c): return e"}}},
            },
        }
    )
    return FunctionEntry(HELLO, spec=spec)


def _answer(headers: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + headers
        + b"content-length: 2\r\n\r\n{}"
    )


@pytest.mark.anyio
async def test_the_runtimes_billed_duration_is_counted_at_the_functions_memory(
    serve: StartGateway,
) -> None:
    answers = [_answer(b"x-kubelambda-billed-duration-ms: 300\r\n"), _answer(b"")]

    async def reply(n: int) -> tuple[bytes, bool]:
        return answers[n - 1], True

    async with raw_server(reply) as instance:
        served = await serve(functions=[_hello(512)])
        served.platform.set_instances(HELLO, [Instance("i", "127.0.0.1", instance.port)])
        answer = await served.client.get("/hello")
        assert answer.status_code == 200
        assert "x-kubelambda-billed-duration-ms" not in answer.headers  # the gateway's own
        found = samples((await served.admin.get("/metrics")).text)
        assert found[(INVOCATIONS, HELLO_LABELS)] == 1
        assert found[(GB_SECONDS, HELLO_LABELS)] == pytest.approx(300 * 512 / 1024 / 1000)
        # An answer without the header is billed the time the instance took, at least 1 ms.
        assert (await served.client.get("/hello")).status_code == 200
        found = samples((await served.admin.get("/metrics")).text)
        assert found[(INVOCATIONS, HELLO_LABELS)] == 2
        assert 0.15 + 0.0005 <= found[(GB_SECONDS, HELLO_LABELS)] < 0.15 + 0.05


@pytest.mark.anyio
async def test_a_function_error_is_billed_and_a_refusal_is_not(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin()
    served = await serve(functions=[_hello(1024)])
    served.platform.set_instances(HELLO, [instance.instance()])
    assert (await served.client.post("/hello", json={"raise": "x"})).status_code == 502
    found = samples((await served.admin.get("/metrics")).text)
    assert found[(INVOCATIONS, HELLO_LABELS)] == 1
    assert found[(GB_SECONDS, HELLO_LABELS)] >= 0.001
    # The instance refused the invocation (its 400 for a body that is not JSON): nothing ran.
    assert (await served.client.post("/hello", json={"status": 400})).status_code == 502
    found = samples((await served.admin.get("/metrics")).text)
    assert found[(INVOCATIONS, HELLO_LABELS)] == 1
