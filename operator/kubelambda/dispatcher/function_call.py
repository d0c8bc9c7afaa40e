"""One try of an asynchronous job's invocation: the `FunctionCall` seam and the `Outcome` it
comes to, which `AsyncDelivery` (delivery.py) and the pollers' batches (batches.py) decide on.
A try goes through the gateway's own invoker (`InProcessCall`, in_process_call.py) or through a
gateway's Invoke API (`GatewayCall`, gateway_call.py).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from kubelambda.delivery.jobs import DeliveryJob

__all__ = ["FunctionCall", "Outcome", "json_or_text"]


_UNREAD = object()


class Outcome:
    """What one try of a job came to.

    An answer's body is read as JSON only when someone asks for it (a destination record, a
    batch's item failures): a delivered event's answer is usually looked at by no one.
    """

    __slots__ = ("_body", "_raw", "final", "function_error", "gone", "status", "throttled")

    def __init__(
        self,
        *,
        status: int,
        function_error: str | None = None,
        body: Any = None,
        throttled: bool = False,
        gone: bool = False,
        final: bool = False,
        raw: bytes | None = None,
    ) -> None:
        self.status = status
        # Set when the function failed (its error type), or the gateway did for it.
        self.function_error = function_error
        # Not placed (no instance in time, a queue full): try later without spending a retry.
        self.throttled = throttled
        # The function no longer exists: the job is dropped.
        self.gone = gone
        # The event can never succeed (not JSON, too large): no retry, to the dead letter.
        self.final = final
        # `raw`: the answer as it came, read (JSON, else text) into `body` when asked for.
        self._raw = raw
        self._body = _UNREAD if raw is not None else body

    @property
    def body(self) -> Any:
        if self._body is _UNREAD:
            self._body = json_or_text(self._raw or b"")
        return self._body

    def _fields(self) -> tuple[Any, ...]:
        return (self.status, self.function_error, self.body, self.throttled, self.gone, self.final)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable cache, compared by value

    def __repr__(self) -> str:
        return (
            f"Outcome(status={self.status!r}, function_error={self.function_error!r}, "
            f"body={self.body!r}, throttled={self.throttled!r}, gone={self.gone!r}, "
            f"final={self.final!r})"
        )


class FunctionCall(Protocol):
    """One try of a job's invocation."""

    async def __call__(self, job: DeliveryJob) -> Outcome: ...


def json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")
