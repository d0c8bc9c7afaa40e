"""Asynchronous delivery settings (retries, backoff, dead letter) shared by Function and Trigger.

function.py and trigger.py parse ``spec.delivery`` with ``read_delivery``; the gateway's
asynchronous path reads the result (docs/contracts.md, "Asynchronous delivery").
"""

from __future__ import annotations

from dataclasses import dataclass

from kubelambda.api.reader import Node, Reader


@dataclass(frozen=True)
class DeadLetter:
    """Where an event goes after its last failed attempt: exactly one of the two is set."""

    function: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Delivery:
    """Up to ``retries`` more attempts, the first ``backoff_seconds`` later, then doubling."""

    retries: int = 2
    backoff_seconds: int = 60
    dead_letter: DeadLetter | None = None

    def retry_delays(self) -> tuple[int, ...]:
        """Seconds to wait before each retry: (60, 120) for the defaults."""
        return tuple(self.backoff_seconds * 2**attempt for attempt in range(self.retries))


def read_delivery(reader: Reader, spec: Node) -> Delivery | None:
    """``spec.delivery``, or None when it is unset and has no default (as on a Trigger)."""
    node = reader.obj(spec.child("delivery"))
    if node is None:
        return None
    dead_letter = None
    letter = reader.obj(node.child("deadLetter"))
    if letter is not None:
        function = reader.optional_text(letter.child("function"))
        url = reader.optional_text(letter.child("url"))
        if letter.child("function").present == letter.child("url").present:
            reader.report(letter.path, "must set exactly one of function, url")
        dead_letter = DeadLetter(function=function, url=url)
    return Delivery(
        retries=reader.integer(node.child("retries")),
        backoff_seconds=reader.integer(node.child("backoffSeconds")),
        dead_letter=dead_letter,
    )
