"""One unit of asynchronous work: a `DeliveryJob` (an accepted event on its way to a function, or
a dead letter on its way out) and the `DeliveryPolicy` it is retried by.

The gateway's sources make jobs, the stores keep them, the dispatcher delivers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubelambda.api.identity import FunctionKey

__all__ = ["DeliveryJob", "DeliveryPolicy", "Target", "trace_value"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where an invocation record goes: exactly one of a function, a URL, a broker subject."""

    function: FunctionKey | None = None
    url: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How asynchronous invocations are retried and where their records go."""

    retries: int = 2
    backoff_seconds: float = 60.0
    dead_letter_function: FunctionKey | None = None
    dead_letter_url: str | None = None
    # None: the gateway's own bound (GatewaySettings.max_event_age_seconds).
    max_event_age_seconds: float | None = None
    on_success: Target | None = None
    on_failure: Target | None = None


@dataclass(slots=True)
class DeliveryJob:
    """One accepted event on its way to a function, or a dead letter on its way out.

    Exactly one of `function`, `url` and `subject` is set. `enqueued_at` is wall time (an event's
    age survives a restart of a durable store); `due` is on the store's clock. `trace` is None
    for jobs written before traces were kept, and for batches (their invocation starts one).
    """

    id: str
    payload: bytes
    policy: DeliveryPolicy
    invoked_arn: str
    enqueued_at: float
    function: FunctionKey | None = None
    url: str | None = None
    subject: str | None = None
    client_context: bytes | None = None
    # A record (dead letter, destination) is never recorded again when it cannot be delivered.
    dead_letter: bool = False
    attempts: int = 0  # tries that reached the function (they spend retries)
    throttles: int = 0  # tries the gateway could not place (no instance, queue full)
    due: float = 0.0
    last_error: dict[str, Any] | None = field(default=None)
    # The X-Amzn-Trace-Id value (Root=...;Parent=...;Sampled=...) the event was accepted with:
    # every try, and the records sent on to destinations and dead letters, join this trace.
    trace: str | None = None


def trace_value(root: str, parent: str | None, sampled: bool | None, extra: str = "") -> str:
    """`DeliveryJob.trace` for a trace: its X-Ray `root` (1-<8>-<24>), the caller's span and
    sampling decision only when the caller sent them (a made-up parent, or Sampled=0 for "no
    decision", would make each try's span the child of a span no one recorded, or unsampled),
    then the header's other keys (`extra`, ``;Key=value`` text) as they came."""
    value = f"Root={root}"
    if parent is not None:
        value += f";Parent={parent}"
    if sampled is not None:
        value += ";Sampled=1" if sampled else ";Sampled=0"
    return value + extra
