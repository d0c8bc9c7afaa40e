"""The lanes' hand-over of a pulled message to delivery (delivery/lanes.py), without a broker:
a hand-over cut short must not leave the message marked as being delivered."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import SystemClock
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.codec import encode_job
from kubelambda.delivery.connection import BrokerConnection
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy
from kubelambda.delivery.lanes import Lanes

pytestmark = pytest.mark.anyio


def _job(n: int) -> DeliveryJob:
    return DeliveryJob(
        id=f"job-{n}",
        payload=b"{}",
        policy=DeliveryPolicy(retries=0, backoff_seconds=1.0),
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:default.worker",
        enqueued_at=1_700_000_000.0,
        function=FunctionKey("default", "worker"),
    )


def _pulled(n: int) -> Msg:
    data = encode_job(_job(n), due_wall=0.0)  # due long ago
    return Msg(_client=cast(Any, None), subject="kl.events.x", reply="$JS.ACK.x", data=data)


async def test_a_hand_over_cancelled_while_delivery_is_full_is_not_kept_in_progress() -> None:
    connection = BrokerConnection(BrokerSettings(url="nats://127.0.0.1:4222"))
    lanes = Lanes(connection, clock=SystemClock(), fetch_wait=2.0)
    await lanes._arrived(_pulled(1))  # takes the one place in the queue to delivery
    second = asyncio.create_task(lanes._arrived(_pulled(2)))
    await asyncio.sleep(0)  # one turn of the loop: it runs until the full queue stops it
    assert len(lanes._taken) == 2
    second.cancel()  # as when the pull's subscription goes away (broker restart)
    with pytest.raises(asyncio.CancelledError):
        await second
    # Only the job delivery holds stays under the heartbeat; the other goes back to JetStream
    # after ack_wait instead of being kept "in progress" for ever.
    assert len(lanes._taken) == 1
