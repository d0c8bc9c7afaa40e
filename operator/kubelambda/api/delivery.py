"""Asynchronous delivery settings (retries, backoff, maximum event age, dead letter, and Lambda's
destinations on success and on failure) shared by Function and Trigger.

function.py and trigger.py parse ``spec.delivery`` with ``read_delivery``; the gateway's
asynchronous path reads the result (docs/contracts.md, "Asynchronous delivery").
"""

from __future__ import annotations

from dataclasses import dataclass

from kubelambda.api.reader import Node, Reader


@dataclass(frozen=True)
class Destination:
    """Where an invocation record goes: a Function of the namespace, an http(s) URL, or a
    NATS JetStream subject; exactly one is set (a dead letter takes no subject)."""

    function: str | None = None
    url: str | None = None
    subject: str | None = None


DeadLetter = Destination


@dataclass(frozen=True)
class Delivery:
    """Up to ``retries`` more attempts, the first ``backoff_seconds`` later, then doubling, while
    the event is younger than ``max_event_age_seconds``; then the dead letter and the failure
    destination get its record; a success sends one to the success destination."""

    retries: int = 2
    backoff_seconds: int = 60
    dead_letter: DeadLetter | None = None
    max_event_age_seconds: int = 21600
    on_success: Destination | None = None
    on_failure: Destination | None = None

    def retry_delays(self) -> tuple[int, ...]:
        """Seconds to wait before each retry: (60, 120) for the defaults."""
        return tuple(self.backoff_seconds * 2**attempt for attempt in range(self.retries))


def read_delivery(reader: Reader, spec: Node) -> Delivery | None:
    """``spec.delivery``, or None when it is unset and has no default (as on a Trigger)."""
    node = reader.obj(spec.child("delivery"))
    if node is None:
        return None
    return Delivery(
        retries=reader.integer(node.child("retries")),
        backoff_seconds=reader.integer(node.child("backoffSeconds")),
        dead_letter=_destination(reader, node.child("deadLetter"), ("function", "url")),
        max_event_age_seconds=reader.integer(node.child("maxEventAgeSeconds")),
        on_success=_destination(reader, node.child("onSuccess"), _KINDS),
        on_failure=_destination(reader, node.child("onFailure"), _KINDS),
    )


_KINDS = ("function", "url", "subject")


def _destination(reader: Reader, at: Node, kinds: tuple[str, ...]) -> Destination | None:
    node = reader.obj(at)
    if node is None:
        return None
    if sum(node.child(kind).present for kind in kinds) != 1:
        reader.report(node.path, f"must set exactly one of {', '.join(kinds)}")
    values = {kind: reader.optional_text(node.child(kind)) for kind in kinds}
    return Destination(**values)
