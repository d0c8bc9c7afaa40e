"""A function's reserved concurrency and rate limit, through a real gateway and stand-in
instances: refused at once with Lambda's 429 on the Invoke API (boto3 raises
TooManyRequestsException) and API Gateway's on HTTP triggers, counted in the metrics."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from integration.gateway.conftest import GatewayThread
from kubelambda.api import parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.routing import HttpRoute, function_entry
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.testing.standin import StandIn
from support.aws import lambda_client
from support.waiting import wait_for

CAPPED = FunctionKey("default", "capped")
RATED = FunctionKey("default", "rated")
STOPPED = FunctionKey("default", "stopped")
INVOKE = "/2015-03-31/functions/{}/invocations"
# Work long enough for the test to make its refused calls meanwhile, on a loaded machine too.
BUSY = json.dumps({"sleep": 4.0, "return": "done"})


def entry(name: str, **spec: Any) -> Any:
    return function_entry(
        parse_function(
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Function",
                "metadata": {"name": name},
                "spec": {"image": "example.com/fn:1", "concurrency": 8, **spec},
            }
        )
    )


@pytest.fixture
def served(gateway_thread: GatewayThread) -> tuple[str, StandIn, GatewayThread]:
    instance = gateway_thread.standin(name="instance", concurrency=8)
    addresses = gateway_thread.start(
        functions=[
            entry("capped", reservedConcurrency=2),
            entry("rated", throttling={"rateLimit": 1, "burstLimit": 2}),
            entry("stopped", reservedConcurrency=0),
        ],
        routes=[HttpRoute(CAPPED, "/capped"), HttpRoute(STOPPED, "/stopped")],
        settings=GatewaySettings(invoke_auth=False),
    )
    for key in (CAPPED, RATED, STOPPED):
        gateway_thread.set_instances(key, [instance.instance()])
    return addresses.public_url, instance, gateway_thread


def post(url: str, body: str = "{}") -> httpx.Response:
    return httpx.post(url, content=body, timeout=30)


def fill(url: str, pool: ThreadPoolExecutor, instance: StandIn, count: int) -> list[Future[Any]]:
    """`count` busy invocations, returned once the instance runs them all."""
    running = [pool.submit(post, url, BUSY) for _ in range(count)]
    wait_for(lambda: instance.in_flight >= count, timeout=10, what=f"{count} in flight")
    return running


def test_invoke_beyond_the_reservation_gets_lambdas_429_and_boto3_raises(
    served: tuple[str, StandIn, GatewayThread],
) -> None:
    base, instance, _ = served
    url = base + INVOKE.format("capped")
    client = lambda_client(base)
    with ThreadPoolExecutor(2) as pool:
        running = fill(url, pool, instance, 2)
        refused = post(url)
        assert refused.status_code == 429
        assert refused.json() == {
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
            "Type": "User",
            "message": "Rate Exceeded.",
        }
        assert refused.headers["x-amzn-errortype"] == "TooManyRequestsException"
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["x-amzn-requestid"]
        with pytest.raises(client.exceptions.TooManyRequestsException) as raised:
            client.invoke(FunctionName="capped", Payload=b"{}")
        error = raised.value.response
        assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert not any(f.done() for f in running)  # refused while both ran
        assert len(instance.received) == 2  # neither refusal reached the instance
        # once one finishes, the next is served
        assert [f.result(timeout=30).status_code for f in running] == [200, 200]
        assert post(url, json.dumps({"return": "next"})).json() == "next"
        client.close()


def test_an_http_trigger_beyond_the_reservation_gets_api_gateways_429(
    served: tuple[str, StandIn, GatewayThread],
) -> None:
    base, instance, _ = served
    with ThreadPoolExecutor(2) as pool:
        running = fill(base + "/capped", pool, instance, 2)
        refused = post(base + "/capped")
        assert refused.status_code == 429
        assert refused.content == b'{"message":"Too Many Requests"}'
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["apigw-requestid"]
        assert "x-amzn-errortype" not in refused.headers
        assert [f.result(timeout=30).status_code for f in running] == [200, 200]


def test_reserved_zero_throttles_every_synchronous_call_and_accepts_events(
    served: tuple[str, StandIn, GatewayThread],
) -> None:
    base, instance, _ = served
    url = base + INVOKE.format("stopped")
    refused = post(url)
    assert refused.status_code == 429
    assert refused.json()["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert "retry-after" not in refused.headers  # waiting will not help
    assert post(base + "/stopped").status_code == 429
    # Lambda takes asynchronous invocations and retries their throttles (the dispatcher).
    event = httpx.post(url, content=b"{}", headers={"X-Amz-Invocation-Type": "Event"})
    assert event.status_code == 202
    assert instance.received == []


def test_the_rate_limit_refuses_beyond_the_burst(
    served: tuple[str, StandIn, GatewayThread],
) -> None:
    base, instance, _ = served
    url = base + INVOKE.format("rated")
    answers = [post(url, json.dumps({"return": i})) for i in range(4)]
    codes = [a.status_code for a in answers]
    # the burst of 2 is served; at 1/s, at most one more token came while these ran
    assert codes[:2] == [200, 200]
    assert 429 in codes[2:]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json() == {
        "Reason": "FunctionInvocationRateLimitExceeded",
        "Type": "User",
        "message": "Rate Exceeded.",
    }
    assert refused.headers["retry-after"] == "1"
    assert len(instance.received) == codes.count(200)


def test_throttles_are_counted_by_function_and_reason(
    served: tuple[str, StandIn, GatewayThread],
) -> None:
    base, _, gateway = served
    assert post(base + INVOKE.format("stopped")).status_code == 429
    assert post(base + "/stopped").status_code == 429
    assert gateway.gateway is not None
    text = gateway.run(_render(gateway)).decode()
    assert (
        'kubelambda_gateway_throttles_total{function="stopped",namespace="default",'
        'reason="reserved_concurrency"} 2.0'
    ) in text
    assert 'kubelambda_gateway_requests_total{code="429",function="stopped"' in text


async def _render(gateway: GatewayThread) -> bytes:
    assert gateway.gateway is not None
    return gateway.gateway.metrics.render()
