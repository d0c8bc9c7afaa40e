"""The admin port: /metrics in Prometheus text format with DESIGN.md's names, and /healthz."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.metrics import DURATION_BUCKETS, GatewayMetrics
from unit.gateway.serving import HELLO, MakeStandIn, StartGateway, wait_for

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


HELLO_LABELS = (("function", "hello"), ("namespace", "default"))


async def test_requests_are_counted_by_function_and_code(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin()
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    for _ in range(3):
        assert (await served.client.get("/hello")).status_code == 200
    assert (await served.client.post("/hello", json={"raise": "x"})).status_code == 502
    assert (await served.client.get("/nowhere")).status_code == 404
    answer = await served.admin.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found = samples(answer.text)
    total = "kubelambda_gateway_requests_total"
    assert found[(total, (("code", "200"), *HELLO_LABELS))] == 3
    assert found[(total, (("code", "502"), *HELLO_LABELS))] == 1
    # a request routed to no function still counts, with empty labels
    assert found[(total, (("code", "404"), ("function", ""), ("namespace", "")))] == 1
    count = "kubelambda_gateway_request_duration_seconds_count"
    assert found[(count, HELLO_LABELS)] == 4
    assert found[("kubelambda_gateway_in_flight_requests", HELLO_LABELS)] == 0
    assert found[("kubelambda_gateway_queued_requests", HELLO_LABELS)] == 0


async def test_in_flight_and_queued_are_read_live(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin(concurrency=1)
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    slow = [
        asyncio.create_task(served.client.post("/hello", json={"sleep": 0.3})) for _ in range(3)
    ]
    await wait_for(lambda: (load := served.gateway.load().get(HELLO)) and load.queued == 2)
    found = samples((await served.admin.get("/metrics")).text)
    assert found[("kubelambda_gateway_in_flight_requests", HELLO_LABELS)] == 1
    assert found[("kubelambda_gateway_queued_requests", HELLO_LABELS)] == 2
    assert found[("kubelambda_gateway_ready_instances", HELLO_LABELS)] == 1
    await asyncio.gather(*slow)
    served.platform.set_instances(HELLO, [])
    await wait_for(lambda: served.gateway.load()[HELLO].ready_instances == 0)
    found = samples((await served.admin.get("/metrics")).text)
    assert found[("kubelambda_gateway_ready_instances", HELLO_LABELS)] == 0


async def test_healthz_and_unknown_admin_paths(serve: StartGateway) -> None:
    served = await serve()
    health = await served.admin.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    missing = await served.admin.get("/nothing")
    assert missing.status_code == 404
    assert "serves /metrics and /healthz" in missing.json()["message"]
    assert (await served.admin.post("/metrics")).status_code == 405


@pytest.mark.parametrize(
    ("seconds", "le"),
    [(0.005, "0.005"), (0.0051, "0.01"), (0.0, "0.005"), (1000.0, "+Inf"), (900.0, "900.0")],
)
def test_histogram_buckets_are_less_or_equal(seconds: float, le: str) -> None:
    metrics = GatewayMetrics(load=dict)
    key = FunctionKey("ns", "fn")
    metrics.request(key, 200, seconds)
    found = samples(metrics.render().decode())
    labels = (("function", "fn"), ("namespace", "ns"))
    buckets = {
        dict(name_labels)["le"]: value
        for (name, name_labels), value in found.items()
        if name == "kubelambda_gateway_request_duration_seconds_bucket"
    }
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    first = min(
        (b for b, v in buckets.items() if v == 1),
        key=lambda b: float("inf") if b == "+Inf" else float(b),
    )
    assert first == le
    assert found[("kubelambda_gateway_request_duration_seconds_sum", labels)] == seconds
