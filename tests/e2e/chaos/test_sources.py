"""The chaos load's message producer (sources.Producer) against a fake broker: every message is
sent again until stored, or given up after its patience, without a cluster."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from e2e.chaos.sources import Connect, Producer, Publish

DEADLINE = 10.0


def flaky_broker(*, failures_per_message: int | None) -> tuple[Connect, Counter[str]]:
    """A broker refusing each message's first `failures_per_message` attempts (None: all);
    the counter holds the attempts per id."""
    attempts: Counter[str] = Counter()

    @asynccontextmanager
    async def connect() -> AsyncIterator[Publish]:
        async def publish(ident: str, body: bytes) -> None:
            attempts[ident] += 1
            if failures_per_message is None or attempts[ident] <= failures_per_message:
                raise ConnectionError("broker away")

        yield publish

    return connect, attempts


def run_until(producer: Producer, done: Callable[[Producer], bool]) -> None:
    producer.start()
    deadline = time.monotonic() + DEADLINE
    try:
        while not done(producer):
            if time.monotonic() > deadline:
                pytest.fail(f"not within {DEADLINE} s: {producer}")
            time.sleep(0.05)
    finally:
        producer.stop()


def test_a_refused_message_is_sent_again_until_stored() -> None:
    connect, attempts = flaky_broker(failures_per_message=2)
    producer = Producer(source="queue", connect=connect, rate=20.0)
    run_until(producer, lambda p: len(p.stored()) >= 5)
    stored = producer.stored()
    assert producer.error is None
    assert not producer.not_published
    assert sorted(stored) == [f"queue:{n:06d}" for n in range(len(stored))]
    assert all(attempts[ident] == 3 for ident in stored)
    assert producer.failed_attempts["ConnectionError"] >= 2 * len(stored)


def test_a_message_never_stored_is_given_up_after_its_patience() -> None:
    connect, _ = flaky_broker(failures_per_message=None)
    producer = Producer(source="kafka", connect=connect, rate=20.0, patience=0.2)
    run_until(producer, lambda p: p.refused() >= 3)
    assert producer.error is None
    assert not producer.stored()
    assert producer.not_published[:3] == ["kafka:000000", "kafka:000001", "kafka:000002"]
