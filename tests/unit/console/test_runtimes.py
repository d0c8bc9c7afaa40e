"""Local mode's function errors: read from each instance's real runtime metrics text, summed
per function across instances that start, count and stop."""

from __future__ import annotations

import asyncio

from kubelambda.api.identity import FunctionKey
from kubelambda.console.runtimes import RuntimeErrors, errors_in
from kubelambda.gateway.platform import Instance
from kubelambda_runtime.server.metrics import RuntimeStats, render

HELLO = FunctionKey("default", "hello")


def _text(**outcomes: int) -> bytes:
    stats = RuntimeStats(namespace="default", function="hello")
    for outcome, count in outcomes.items():
        for _ in range(count):
            stats.count(outcome, 0.01)
    body, _ = render(stats)
    return body


def test_errors_are_the_error_timeout_and_crash_outcomes() -> None:
    text = _text(success=5, error=2, timeout=1, crash=1, busy=4, bad_request=3).decode()
    assert errors_in(text) == 4


class Instances:
    def __init__(self) -> None:
        self.ready: list[Instance] = []
        self.bodies: dict[int, bytes | Exception] = {}

    def __call__(self, key: FunctionKey) -> list[Instance]:
        return self.ready if key == HELLO else []

    def fetch(self, url: str, timeout: float) -> bytes:
        body = self.bodies[int(url.rsplit(":", 1)[1].split("/")[0])]
        if isinstance(body, Exception):
            raise body
        return body


def test_totals_add_what_each_instance_counted_since_it_was_last_read() -> None:
    instances = Instances()
    errors = RuntimeErrors(functions=[HELLO], ready_instances=instances, fetch=instances.fetch)
    assert errors.totals() == {HELLO: 0}
    one, two = Instance("hello-1", "127.0.0.1", 1001), Instance("hello-2", "127.0.0.1", 1002)
    instances.ready = [one]
    instances.bodies[1001] = _text(error=2)
    asyncio.run(errors.scrape())
    assert errors.totals() == {HELLO: 2}
    instances.ready = [one, two]
    instances.bodies[1001] = _text(error=3)
    instances.bodies[1002] = _text(crash=1)
    asyncio.run(errors.scrape())
    assert errors.totals() == {HELLO: 4}
    # One stops; the other cannot be read this time: nothing is lost or counted twice.
    instances.ready = [two]
    instances.bodies[1002] = ConnectionRefusedError("stopping")
    asyncio.run(errors.scrape())
    assert errors.totals() == {HELLO: 4}
    instances.bodies[1002] = _text(crash=1, timeout=1)
    asyncio.run(errors.scrape())
    assert errors.totals() == {HELLO: 5}
