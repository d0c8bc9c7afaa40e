"""How a kafka Trigger's poller reaches its cluster: the client's security settings from the
Trigger's `auth` and its Secret (`client_options`), a probe that says why a cluster cannot be
reached (`why_unreachable`), the topics it lacks, a fetch that places an AT_TIMESTAMP group, a
rebalance listener, and a bounded stop.
Used by kafka.py and sources.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Final

from aiokafka import ConsumerRebalanceListener  # type: ignore[import-untyped]
from aiokafka.conn import create_conn  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

__all__ = [
    "MECHANISMS",
    "Rebalance",
    "client_options",
    "described",
    "fetch",
    "missing_topics",
    "stop",
    "why_unreachable",
]

# The SASL mechanisms Lambda offers for self-managed Kafka (BASIC_AUTH is PLAIN).
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_KEYS: Final = ("username", "password", "mechanism", "ca.crt", "tls.crt", "tls.key")


def client_options(
    secret: Mapping[str, str] | None, *, tls: bool, secret_name: str | None = None
) -> dict[str, Any]:
    """aiokafka's security settings: SASL (PLAIN or SCRAM) when the Secret has a username and
    password, a client certificate with `tls.crt` and `tls.key`, the brokers' authority from
    `ca.crt` (else the system's); TLS only with `tls`. LookupError names what does not fit."""
    data = dict(secret or {})
    name = f"Secret {secret_name}" if secret_name else "the Secret"
    if secret is not None and not any(key in data for key in _KEYS):
        raise LookupError(f"{name} holds none of the keys {', '.join(_KEYS)}")
    options: dict[str, Any] = {}
    sasl = "username" in data or "password" in data
    if sasl:
        if not data.get("username") or not data.get("password"):
            raise LookupError(f"{name} needs both username and password for SASL")
        mechanism = data.get("mechanism") or "PLAIN"
        if mechanism not in MECHANISMS:
            raise LookupError(
                f"{name}: mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}"
            )
        options.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=data["username"],
            sasl_plain_password=data["password"],
        )
    elif "mechanism" in data:
        raise LookupError(f"{name} has a mechanism but no username and password")
    if ("tls.crt" in data) != ("tls.key" in data):
        raise LookupError(f"{name} needs both tls.crt and tls.key for a client certificate")
    if not tls:
        if tls_keys := [key for key in ("ca.crt", "tls.crt", "tls.key") if key in data]:
            raise LookupError(
                f"{name} has {', '.join(tls_keys)} but auth.tls is false: set auth.tls to "
                "connect with TLS"
            )
        options["security_protocol"] = "SASL_PLAINTEXT" if sasl else "PLAINTEXT"
        return options
    options["security_protocol"] = "SASL_SSL" if sasl else "SSL"
    options["ssl_context"] = _tls_context(
        name, ca=data.get("ca.crt"), certificate=data.get("tls.crt"), key=data.get("tls.key")
    )
    return options


def _tls_context(
    name: str, *, ca: str | None, certificate: str | None, key: str | None
) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cadata=ca)  # the system's authorities without ca
    except (ssl.SSLError, ValueError) as exc:
        raise LookupError(f"{name}: ca.crt is not a PEM certificate ({exc})") from exc
    if certificate is not None and key is not None:
        # The ssl module loads a certificate chain from files only: written where only this
        # process reads them, and gone once loaded.
        with tempfile.TemporaryDirectory(prefix="kafka-tls-") as folder:
            paths = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            for path, text in zip(paths, (certificate, key), strict=True):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(handle, "w") as file:
                    file.write(text)
            try:
                context.load_cert_chain(*paths)
            except (ssl.SSLError, ValueError) as exc:
                raise LookupError(
                    f"{name}: tls.crt and tls.key are not a PEM certificate and its key ({exc})"
                ) from exc
    return context


async def why_unreachable(
    servers: tuple[str, ...], options: Mapping[str, Any], *, seconds: float
) -> str | None:
    """What connecting to the bootstrap servers runs into (a refused connection, credentials the
    brokers refuse), which the consumer only reports as "Unable to bootstrap"; None when one
    of them takes the connection."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            async with asyncio.timeout(seconds):
                conn = await create_conn(
                    host, int(port), request_timeout_ms=int(seconds * 1000), **options
                )
        except (OSError, KafkaError, TimeoutError) as exc:
            return f"{server}: {described(exc)}"
        conn.close()
    return None


def described(exc: BaseException) -> str:
    """An exception as a problem's text: its type and message, once."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


async def stop(consumer: Any, *, seconds: float) -> None:
    """Leave the group and close, bounded: a cluster that is away does not hold up a stop."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(seconds):
            await consumer.stop()


async def missing_topics(consumer: Any, topics: Collection[str]) -> list[str]:
    """Those of `topics` the cluster does not have (it does not create them on a read)."""
    present = await consumer.topics()
    return [topic for topic in topics if topic not in present]


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls `revoked` before the group takes this member's partitions away (and waits for
    it), and `assigned` once it has new ones."""

    def __init__(self, *, revoked: Callable[[], Awaitable[None]], assigned: Callable[[], None]):
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._assigned()


async def fetch(
    consumer: Any, *, seconds: float, count: int, start_ms: int | None
) -> dict[Any, list[Any]]:
    """Up to `count` records, waiting at most `seconds` for the first. An AT_TIMESTAMP group's
    consumer resets to "none", so a partition it has no offset for is reported here and placed at
    the first record from `start_ms` on (at the end when there is none yet), and one whose
    committed offset is gone at its beginning; then nothing is returned this time."""
    try:
        fetched: dict[Any, list[Any]] = await consumer.getmany(
            timeout_ms=max(1, int(seconds * 1000)), max_records=count
        )
        return fetched
    except NoOffsetForPartitionError as exc:
        partition = exc.args[0]
        found = await consumer.offsets_for_times({partition: start_ms or 0})
        hit = found.get(partition)
        if hit is None:
            await consumer.seek_to_end(partition)
        else:
            consumer.seek(partition, hit.offset)
    except OffsetOutOfRangeError as exc:
        await consumer.seek_to_beginning(*exc.args[0])
    return {}
