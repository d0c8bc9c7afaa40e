"""The gateway's tunables, with the defaults local mode and the Kubernetes deployment start from.

`create_gateway` takes one `GatewaySettings`; every bound and deadline of the data path
is here, so an operator can find them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GatewaySettings"]

# Lambda's payload limits: 6 MB for a synchronous invocation, 256 KB for an asynchronous one.
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Bounds, deadlines and identity of one gateway.

    Deadlines of a held request: it may wait `hold_timeout_seconds` for an instance to
    become ready (or free) and then has the function's whole `timeoutSeconds` to run, as
    on Lambda, where init does not count against the handler's timeout. So a cold start
    never eats the user's timeout; the client may wait up to hold + timeout (+ grace).
    """

    default_namespace: str = "default"
    region: str = "us-east-1"
    account_id: str = "000000000000"

    # Requests held per function (waiting for a cold start or a free slot); beyond: 503.
    # Deep, as Knative's activator (10,000 per revision): a burst from zero to thousands of
    # requests/s is held, not refused, while instances start. A held request costs a few KB.
    max_queued_per_function: int = 10_000
    # How long a request may be held before it is answered 504.
    hold_timeout_seconds: float = 30.0
    # Retry-After on 503 (held queue full) and 429 (delivery queue full).
    retry_after_seconds: int = 1
    # Gateway replicas sharing the functions' limits (spec.reservedConcurrency,
    # spec.throttling): each enforces ceil(limit / replicas), as the chart tells it.
    gateway_replicas: int = 1
    # How often held requests re-ask the platform to wake a function.
    wake_interval_seconds: float = 1.0
    # How long an instance that refused a connection is left out of the rotation.
    eject_seconds: float = 1.0
    # ...and one that answered 429 (all its slots busy).
    busy_eject_seconds: float = 0.05

    # Connections: at most this many at once (beyond: 503); a request's head (request line
    # and headers) at most this big (431) and arriving within this long (408, also for a
    # connection that sends nothing); its body within this long (408); an answer the client
    # stops reading is cut off after this long; idle keep-alive connections close.
    max_connections: int = 10_000
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    write_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 5.0
    # Bytes of request bodies held at once, over all requests being read or served (beyond:
    # 503 with Retry-After): 85 unfinished 6 MB uploads no longer take 570 MB.
    max_buffered_body_bytes: int = 128 * 1024 * 1024

    # Request bodies: over this the answer is 413 before the body is read in full.
    max_body_bytes: int = SYNC_PAYLOAD_LIMIT
    max_async_body_bytes: int = ASYNC_PAYLOAD_LIMIT
    # Waited for an instance's answer beyond the function's timeout before answering 504
    # (the runtime itself answers a timed-out invocation with a function error first).
    upstream_grace_seconds: float = 2.0
    # Idle keep-alive connections to an instance are reused for this long.
    upstream_idle_seconds: float = 4.0
    upstream_max_idle_per_instance: int = 64

    # Asynchronous (Event) invocations: queue bound (beyond: 429), concurrent deliveries,
    # and how long an event is kept trying before it goes to the dead letter.
    delivery_queue_size: int = 10_000
    delivery_workers: int = 32
    max_event_age_seconds: float = 6 * 3600.0
    # Ceiling on the delay between tries when the gateway itself is the obstacle
    # (held queue full, no instance ready): these do not spend the event's retries.
    throttle_retry_max_seconds: float = 30.0
    # Accepted asynchronous events (Event invocations, bucket notifications) are kept as
    # files here and survive a restart (delivery/files.py); None keeps them in memory.
    delivery_state_dir: Path | None = None

    # The Invoke API takes only requests signed (SigV4) with a known access key that may
    # invoke the function, unless the Function opts in to anonymous callers. False: anyone
    # may invoke (local mode on loopback).
    invoke_auth: bool = True

    # The bearer token S3 servers must send to /_kubelambda/events/s3 (MinIO's webhook
    # auth_token). None: only clients on loopback may post notifications.
    s3_notification_token: str | None = field(default=None, repr=False)

    # The requestContext.domainName of HTTP events when the request has no Host header.
    domain_name: str = "localhost"
