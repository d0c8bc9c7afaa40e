"""delivery/reachability.py: what counts as the brokers refusing the client, what a Kafka
cluster that cannot be reached runs into (an address nobody listens on, a listener that wants
SASL), and an exception described once."""

from __future__ import annotations

import ssl

import pytest
from aiokafka import errors as kafka_errors  # type: ignore[import-untyped]

from kubelambda.delivery.endpoints import KafkaEndpoint, kafka_endpoint, kafka_options
from kubelambda.delivery.reachability import described, kafka_refusal, kafka_unreachable
from support.waiting import free_port
from unit.delivery.kafka_listener import listener_wanting_sasl

SERVERS = ("kafka:9092",)

SASL = KafkaEndpoint(bootstrap_servers=SERVERS, mechanism="PLAIN", secret="login")
BARE = KafkaEndpoint(bootstrap_servers=SERVERS)
CLOSED = kafka_errors.KafkaConnectionError("Connection at kafka:9092 closed")


@pytest.mark.parametrize(
    ("exc", "endpoint", "after_connect", "words"),
    [
        (ssl.SSLError(1, "certificate verify failed"), SASL, False, "failed the TLS handshake: "),
        (
            kafka_errors.SaslAuthenticationFailed("Invalid username or password"),
            SASL,
            False,
            "refused the credentials of Secret login: ",
        ),
        (kafka_errors.TopicAuthorizationFailedError(), None, False, "refused the client: "),
        (CLOSED, BARE, True, "the listener may want SASL credentials (spec.kafka.auth.secretRef)"),
        (CLOSED, BARE, False, None),  # before a connection: out of reach, not a refusal
        (CLOSED, SASL, True, None),  # credentials were offered: not a listener wanting them
        (OSError("Connect call failed"), BARE, False, None),
    ],
)
def test_what_counts_as_a_refusal_of_the_client(
    exc: BaseException, endpoint: KafkaEndpoint | None, after_connect: bool, words: str | None
) -> None:
    refusal = kafka_refusal(exc, endpoint=endpoint, after_connect=after_connect)
    if words is None:
        assert refusal is None
    else:
        assert refusal is not None and words in refusal


@pytest.mark.anyio
async def test_an_address_nobody_listens_on_is_out_of_reach() -> None:
    server = f"127.0.0.1:{free_port()}"
    endpoint = kafka_endpoint((server,), tls=False, secret=None, data=None)
    found = await kafka_unreachable(endpoint, kafka_options(endpoint), seconds=5)
    assert found is not None and not found.refused
    assert found.detail.startswith(f"{server}: ")
    assert found.message == f"cannot reach Kafka at {found.detail}"
    assert "Connect call failed" in found.detail or "refused" in found.detail.lower()


@pytest.mark.anyio
async def test_a_listener_that_closes_on_a_client_without_credentials_refused_it() -> None:
    async with listener_wanting_sasl() as server:
        endpoint = kafka_endpoint((server,), tls=False, secret=None, data=None)
        found = await kafka_unreachable(endpoint, kafka_options(endpoint), seconds=5)
    assert found is not None and found.refused
    assert found.detail.startswith(f"{server} closed the connection before answering")
    assert "the listener may want SASL credentials" in found.detail
    assert found.message == f"Kafka at {found.detail}"


def test_exceptions_are_described_once() -> None:
    assert described(TimeoutError()) == "no answer in time"
    assert described(ValueError("bad")) == "ValueError: bad"
    assert described(RuntimeError()) == "RuntimeError"
