"""One unit of asynchronous work: a `DeliveryJob` (an accepted event on its way to a function, or
a dead letter on its way out) and the `DeliveryPolicy` it is retried by.

The gateway's sources make jobs, the stores keep them, the dispatcher delivers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubelambda.api.identity import FunctionKey

__all__ = ["DeliveryJob", "DeliveryPolicy", "Target"]


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
    age survives a restart of a durable store); `due` is on the store's clock.
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
