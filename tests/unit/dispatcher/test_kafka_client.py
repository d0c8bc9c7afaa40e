"""dispatcher/kafka_client.py: what a kafka poller's cluster runs into when the consumer cannot
bootstrap, in the words the poller puts after "cannot reach the Kafka cluster at ...: ". The
Secret's rules and the probe itself are delivery/endpoints.py's (tests/unit/delivery)."""

from __future__ import annotations

import pytest

from kubelambda.dispatcher.kafka_client import why_unreachable
from support.waiting import free_port
from unit.delivery.kafka_listener import listener_wanting_sasl

pytestmark = pytest.mark.anyio

PLAINTEXT = {"security_protocol": "PLAINTEXT"}


async def test_why_a_cluster_cannot_be_reached() -> None:
    server = f"127.0.0.1:{free_port()}"
    why = await why_unreachable((server,), PLAINTEXT, seconds=5)
    assert why is not None and why.startswith(f"{server}: ")
    assert "Connect call failed" in why or "refused" in why.lower()


async def test_a_listener_that_wants_sasl_is_named_to_a_trigger_without_credentials() -> None:
    async with listener_wanting_sasl() as server:
        why = await why_unreachable((server,), PLAINTEXT, seconds=5)
    assert why is not None and why.startswith(f"{server} closed the connection before answering")
    assert "the listener may want SASL credentials (spec.kafka.auth.secretRef)" in why
