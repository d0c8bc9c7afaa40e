"""Whether a Kafka cluster takes this client, and the words for why not: a refusal (credentials,
a SASL mechanism, no right to a topic or group, a failed TLS handshake) told apart from an
address out of reach, and an exception described once.

The operator's probe (observe.py) and the dispatcher's kafka poller (dispatcher/kafka_client.py,
dispatcher/kafka.py) both use it, so both name a problem in the same words.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import errors as kafka_errors  # type: ignore[import-untyped]
from aiokafka.conn import create_conn  # type: ignore[import-untyped]
from aiokafka.protocol.metadata import MetadataRequest  # type: ignore[import-untyped]

from kubelambda.delivery.endpoints import KafkaEndpoint

__all__ = ["Unreachable", "described", "kafka_refusal", "kafka_unreachable"]

_REFUSALS: Final = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
)


def described(exc: BaseException) -> str:
    """An exception as a problem's text: its type and message, once."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def kafka_refusal(
    exc: BaseException, *, endpoint: KafkaEndpoint | None = None, after_connect: bool = False
) -> str | None:
    """Why the brokers refused this client, when ``exc`` says so (wrong credentials, a SASL
    mechanism they do not take, no right to a topic or group, a failed TLS handshake); None for
    anything else. A connection closed ``after_connect`` by brokers this client offered no
    credentials to is such a refusal too: the listener wants SASL."""
    if isinstance(exc, ssl.SSLError):
        return f"failed the TLS handshake: {described(exc)}"
    if isinstance(exc, _REFUSALS):
        return f"refused {_whose(endpoint)}: {described(exc)}"
    unannounced = endpoint is not None and endpoint.mechanism is None
    if after_connect and unannounced and isinstance(exc, kafka_errors.KafkaConnectionError):
        return (
            f"closed the connection before answering ({described(exc)}): the listener may want"
            " SASL credentials (spec.kafka.auth.secretRef) or TLS (auth.tls)"
        )
    return None


@dataclass(frozen=True)
class Unreachable:
    """Why no bootstrap server took a connection: ``refused`` when one refused the client.
    ``detail`` names the server(s) and what each ran into, for callers with words of their own
    around it; ``message`` is the whole sentence."""

    refused: bool
    detail: str

    @property
    def message(self) -> str:
        return f"Kafka at {self.detail}" if self.refused else f"cannot reach Kafka at {self.detail}"


async def kafka_unreachable(
    endpoint: KafkaEndpoint, options: Mapping[str, Any], *, seconds: float
) -> Unreachable | None:
    """What connecting to the bootstrap servers runs into, or None when one of them answers a
    request: aiokafka itself only says "Unable to bootstrap". A refusal of the client wins over
    an address that is out of reach."""
    out_of_reach: list[str] = []
    for server in endpoint.bootstrap_servers:
        host, _, port = server.rpartition(":")
        conn = None
        try:
            async with asyncio.timeout(seconds):
                conn = await create_conn(
                    host, int(port), request_timeout_ms=int(seconds * 1000), **options
                )
                # An empty list asks for no topic (None would ask for all of them).
                await conn.send(MetadataRequest([]))
        except (OSError, kafka_errors.KafkaError, TimeoutError) as exc:
            refusal = kafka_refusal(exc, endpoint=endpoint, after_connect=conn is not None)
            if refusal is not None:
                return Unreachable(refused=True, detail=f"{server} {refusal}")
            out_of_reach.append(f"{server}: {described(exc)}")
            continue
        finally:
            if conn is not None:
                conn.close()
        return None
    return Unreachable(refused=False, detail="; ".join(out_of_reach))


def _whose(endpoint: KafkaEndpoint | None) -> str:
    if endpoint is None or endpoint.secret is None:
        return "the client"
    return f"the credentials of Secret {endpoint.secret}"
