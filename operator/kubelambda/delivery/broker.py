"""Where the asynchronous-event broker (NATS JetStream) is and what its stream holds: the
settings the gateway, the dispatchers and the operator share (chart: values `nats`), and the
subjects events and retries are published on (jetstream.py publishes and takes them)."""

from __future__ import annotations

from dataclasses import dataclass

from kubelambda.api.identity import FunctionKey

__all__ = ["BrokerSettings", "function_subject", "nats_servers"]


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    """The stream, its bounds, and how dispatchers consume it (chart: values `nats`)."""

    # One server, or a cluster's members separated by commas (see `servers`).
    url: str
    stream: str = "KUBELAMBDA_EVENTS"
    subject_prefix: str = "kubelambda"
    replicas: int = 1
    # Lambda keeps an asynchronous event up to six hours.
    max_age_seconds: float = 6 * 3600.0
    max_bytes: int = 1 << 30
    max_messages: int = 1_000_000
    max_message_bytes: int = 1 << 20
    # A client's or an S3 server's retry within this window is stored once.
    duplicate_window_seconds: float = 600.0
    # A job not acknowledged (nor reported in progress) for this long goes to another
    # dispatcher: its dispatcher died.
    ack_wait_seconds: float = 60.0
    # Asynchronous invocations in flight per function, over all dispatchers.
    function_concurrency: int = 16
    publish_timeout_seconds: float = 5.0
    # Idle per-function consumers are removed by JetStream after this long.
    consumer_idle_seconds: float = 3600.0
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials_file: str | None = None

    @property
    def servers(self) -> list[str]:
        """The servers `url` lists, comma-separated as the NATS tools take them: the client
        connects to one that answers and moves to another when it loses it."""
        return nats_servers(self.url)

    def events_subject(self, function: FunctionKey) -> str:
        return function_subject(self.subject_prefix, function)

    @property
    def retries_subject(self) -> str:
        return f"{self.subject_prefix}.retries"

    @property
    def urls_subject(self) -> str:
        return f"{self.subject_prefix}.urls"


def nats_servers(url: str) -> list[str]:
    """The servers a NATS URL lists: one, or a cluster's separated by commas, as --nats and the
    NATS tools take them; nats-py connects to one that answers and moves on when it loses it."""
    return [server.strip() for server in url.split(",") if server.strip()]


def function_subject(prefix: str, function: FunctionKey) -> str:
    """Namespaces and Function names are DNS labels: never a '.', '*' or '>'."""
    return f"{prefix}.events.{function.namespace}.{function.name}"
