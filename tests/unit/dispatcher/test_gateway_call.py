"""dispatcher/gateway_call.py against a real gateway on loopback: one try of an asynchronous
job through the Invoke API, signed as boto3 signs, and what each answer means for the job."""

from __future__ import annotations

import json

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy
from kubelambda.dispatcher.gateway_call import GatewayCall
from kubelambda.gateway.access import AccessKey, StaticAccessKeys
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.upstream import UpstreamPool
from unit.gateway.serving import HELLO, MakeStandIn, Served, StartGateway

pytestmark = pytest.mark.anyio

KEY, SECRET = "AKIADISPATCHER000001", "dispatcher/secret"
REQUEST_ID = "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"


def job(payload: bytes, function: FunctionKey = HELLO) -> DeliveryJob:
    return DeliveryJob(
        id=REQUEST_ID,
        payload=payload,
        policy=DeliveryPolicy(),
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:hello",
        enqueued_at=0.0,
        function=function,
    )


async def gateway(serve: StartGateway, *, hold: float = 5.0) -> Served:
    return await serve(
        functions=[FunctionEntry(HELLO)],
        settings=GatewaySettings(invoke_auth=True, hold_timeout_seconds=hold),
        access_keys=StaticAccessKeys([AccessKey(id=KEY, secret=SECRET, grants=("default/*",))]),
    )


def call(served: Served, pool: UpstreamPool, secret: str = SECRET) -> GatewayCall:
    return GatewayCall(
        url=served.addresses.public_url, pool=pool, timeout_seconds=10, credentials=(KEY, secret)
    )


async def test_a_signed_try_runs_with_the_events_request_id(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served, instance = await gateway(serve), await standin()
    served.platform.set_instances(HELLO, [instance.instance()])
    pool = UpstreamPool()
    try:
        outcome = await call(served, pool)(job(b'{"n": 1}'))
        assert (outcome.status, outcome.function_error, outcome.throttled) == (200, None, False)
        [received] = instance.received
        assert received.event == {"n": 1}
        # The id the Event invocation was answered with, as on Lambda.
        assert received.headers["lambda-runtime-aws-request-id"] == REQUEST_ID

        failed = await call(served, pool)(job(json.dumps({"raise": "boom"}).encode()))
        assert (failed.status, failed.function_error) == (200, "Unhandled")
        assert failed.body["errorMessage"] == "boom"

        gone = await call(served, pool)(job(b"{}", FunctionKey("default", "deleted")))
        assert gone.gone

        never = await call(served, pool)(job(b"not json"))
        assert (never.status, never.final, never.throttled) == (400, True, False)

        refused = await call(served, pool, secret="wrong")(job(b"{}"))
        assert (refused.status, refused.throttled) == (403, True)  # kept until mended
        assert len(instance.received) == 2
    finally:
        await pool.aclose()


async def test_no_instance_in_time_is_a_throttle_that_spends_no_retry(serve: StartGateway) -> None:
    served = await gateway(serve, hold=0.2)  # nothing ever becomes ready
    pool = UpstreamPool()
    try:
        outcome = await call(served, pool)(job(b"{}"))
        assert outcome.throttled and outcome.function_error is None
    finally:
        await pool.aclose()
