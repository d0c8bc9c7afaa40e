"""How to reach the NATS or Kafka a queue or kafka Trigger reads: its endpoint with the
credentials of its Secret (read by the keys contracts.md names, with errors that name what does
not fit), and the clients' options.

The one reading of those Secrets: observe.py's probe and the dispatcher's pollers
(dispatcher/sources.py, dispatcher/kafka_client.py) both use it, so both refuse the same.
Whether a Kafka cluster takes the client is reachability.py's; the clients kept per endpoint,
client_pool.py's.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from nats.aio.client import RawCredentials

from kubelambda.delivery.broker import BrokerSettings

__all__ = [
    "INVALID_SECRET",
    "MECHANISMS",
    "CredentialsError",
    "KafkaEndpoint",
    "NatsEndpoint",
    "kafka_endpoint",
    "kafka_options",
    "nats_endpoint",
    "nats_options",
    "redacted",
]

# The Ready reason of a Trigger whose Secret does not hold what its source needs.
INVALID_SECRET: Final = "InvalidSecret"
# The SASL mechanisms Lambda offers for self-managed Kafka (BASIC_AUTH is PLAIN).
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_KAFKA_KEYS: Final = ("username", "password", "mechanism", "ca.crt", "tls.crt", "tls.key")


class CredentialsError(ValueError):
    """A Secret does not hold what its source needs; the message names the Secret and keys."""


def redacted(url: str) -> str:
    """``url`` without a password it may carry (nats://user:secret@host), for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# --- NATS ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NatsEndpoint:
    """A NATS server and the credentials to present; ``credentials`` names them in messages."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds: str | None = field(default=None, repr=False)  # a .creds file's text
    credentials_file: str | None = None  # a .creds file's path
    credentials: str = "a connection without credentials"

    @classmethod
    def of_broker(cls, broker: BrokerSettings) -> NatsEndpoint:
        """The platform's broker, with the operator's own credentials."""
        return cls(
            url=broker.url,
            user=broker.user,
            password=broker.password,
            token=broker.token,
            credentials_file=broker.credentials_file,
            credentials="the operator's credentials",
        )


def nats_endpoint(url: str, *, secret: str | None, data: Mapping[str, str] | None) -> NatsEndpoint:
    """The NATS a queue Trigger names, with the credentials in its Secret's (decoded) ``data``:
    ``creds``, else ``token``, else ``user`` and ``password``, as the dispatcher reads them."""
    if secret is None or data is None:
        return NatsEndpoint(url=url)
    named = f"the credentials of Secret {secret}"
    if "creds" in data:
        return NatsEndpoint(url=url, creds=data["creds"], credentials=named)
    if "token" in data:
        return NatsEndpoint(url=url, token=data["token"], credentials=named)
    if "user" in data and "password" in data:
        return NatsEndpoint(
            url=url, user=data["user"], password=data["password"], credentials=named
        )
    raise CredentialsError(
        f"Secret {secret} (spec.queue.nats.credentialsSecret) holds none of the keys creds, token,"
        " or user and password"
    )


def nats_options(endpoint: NatsEndpoint) -> dict[str, Any]:
    """nats.connect's credentials arguments for ``endpoint``; a .creds text goes in memory
    (RawCredentials), never into a file."""
    if endpoint.creds is not None:
        credentials: RawCredentials | str | None = RawCredentials(endpoint.creds)
    else:
        credentials = endpoint.credentials_file
    given = {
        "user": endpoint.user,
        "password": endpoint.password if endpoint.user is not None else None,
        "token": endpoint.token,
        "user_credentials": credentials,
    }
    return {name: value for name, value in given.items() if value is not None}


# --- Kafka -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KafkaEndpoint:
    """A Kafka cluster's bootstrap servers, with SASL (``mechanism``, ``username``,
    ``password``) when set, over TLS with ``tls`` (``ca_cert`` the brokers' authority, else the
    system's; a client certificate from ``client_cert`` and ``client_key``)."""

    bootstrap_servers: tuple[str, ...]
    tls: bool = False
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = field(default=None, repr=False)
    secret: str | None = None  # whose keys these are, for messages


def kafka_endpoint(
    servers: tuple[str, ...],
    *,
    tls: bool,
    secret: str | None,
    data: Mapping[str, str] | None,
) -> KafkaEndpoint:
    """A kafka Trigger's cluster, with its ``auth``: SASL when the Secret has a username and
    password (mechanism PLAIN unless it says SCRAM-SHA-256 or SCRAM-SHA-512), a client
    certificate from tls.crt and tls.key, the brokers' authority from ca.crt, TLS only with
    ``tls``."""
    if data is None:
        return KafkaEndpoint(bootstrap_servers=servers, tls=tls)
    name = f"Secret {secret} (spec.kafka.auth.secretRef)"
    if not any(key in data for key in _KAFKA_KEYS):
        raise CredentialsError(f"{name} holds none of the keys {', '.join(_KAFKA_KEYS)}")
    sasl = "username" in data or "password" in data
    mechanism = None
    if sasl:
        if not data.get("username") or not data.get("password"):
            raise CredentialsError(f"{name} needs both username and password for SASL")
        mechanism = data.get("mechanism") or "PLAIN"
        if mechanism not in MECHANISMS:
            raise CredentialsError(
                f"{name}: mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}"
            )
    elif "mechanism" in data:
        raise CredentialsError(f"{name} has a mechanism but no username and password")
    if ("tls.crt" in data) != ("tls.key" in data):
        raise CredentialsError(f"{name} needs both tls.crt and tls.key for a client certificate")
    tls_keys = [key for key in ("ca.crt", "tls.crt", "tls.key") if key in data]
    if tls_keys and not tls:
        raise CredentialsError(
            f"{name} has {', '.join(tls_keys)} but auth.tls is false: set auth.tls to connect"
            " with TLS"
        )
    return KafkaEndpoint(
        bootstrap_servers=servers,
        tls=tls,
        mechanism=mechanism,
        username=data.get("username") if sasl else None,
        password=data.get("password") if sasl else None,
        ca_cert=data.get("ca.crt"),
        client_cert=data.get("tls.crt"),
        client_key=data.get("tls.key"),
        secret=secret,
    )


def kafka_options(endpoint: KafkaEndpoint) -> dict[str, Any]:
    """aiokafka's security options for ``endpoint``; CredentialsError for a certificate or key
    that is not PEM."""
    options: dict[str, Any] = {}
    if endpoint.mechanism is not None:
        options.update(
            sasl_mechanism=endpoint.mechanism,
            sasl_plain_username=endpoint.username,
            sasl_plain_password=endpoint.password,
        )
    if not endpoint.tls:
        options["security_protocol"] = "SASL_PLAINTEXT" if endpoint.mechanism else "PLAINTEXT"
        return options
    options["security_protocol"] = "SASL_SSL" if endpoint.mechanism else "SSL"
    options["ssl_context"] = _tls_context(endpoint)
    return options


def _tls_context(endpoint: KafkaEndpoint) -> ssl.SSLContext:
    name = f"Secret {endpoint.secret}"
    try:
        context = ssl.create_default_context(cadata=endpoint.ca_cert)
    except (ssl.SSLError, ValueError) as exc:
        raise CredentialsError(f"{name}: ca.crt is not a PEM certificate ({exc})") from exc
    if endpoint.client_cert is not None and endpoint.client_key is not None:
        # The ssl module loads a certificate chain from files only: written where only this
        # process reads them, and gone once loaded.
        with tempfile.TemporaryDirectory(prefix="kafka-tls-") as folder:
            paths = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            for path, text in zip(paths, (endpoint.client_cert, endpoint.client_key), strict=True):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(handle, "w") as file:
                    file.write(text)
            try:
                context.load_cert_chain(*paths)
            except (ssl.SSLError, ValueError) as exc:
                raise CredentialsError(
                    f"{name}: tls.crt and tls.key are not a PEM certificate and its key ({exc})"
                ) from exc
    return context
