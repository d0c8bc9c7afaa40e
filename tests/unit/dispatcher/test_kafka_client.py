"""dispatcher/kafka_client.py: what a kafka poller's cluster runs into when the consumer cannot
bootstrap, in the words the poller puts after "cannot reach the Kafka cluster at ...: " (the
Secret's rules are delivery/endpoints.py's, the probe itself delivery/reachability.py's, with
their tests in tests/unit/delivery); and the commits of batches that end while one is out, sent
together."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import CommitFailedError  # type: ignore[import-untyped]

from kubelambda.dispatcher.kafka_client import Commits, why_unreachable
from support.waiting import free_port
from unit.delivery.kafka_listener import listener_wanting_sasl

pytestmark = pytest.mark.anyio

PLAINTEXT = {"security_protocol": "PLAINTEXT"}


async def test_why_a_cluster_cannot_be_reached() -> None:
    server = f"127.0.0.1:{free_port()}"
    why = await why_unreachable((server,), PLAINTEXT, seconds=5)
    assert why is not None and why.startswith(f"{server}: ")
    assert "Connect call failed" in why or "refused" in why.lower()


async def test_a_listener_that_wants_sasl_is_named_to_a_trigger_without_credentials() -> None:
    async with listener_wanting_sasl() as server:
        why = await why_unreachable((server,), PLAINTEXT, seconds=5)
    assert why is not None and why.startswith(f"{server} closed the connection before answering")
    assert "the listener may want SASL credentials (spec.kafka.auth.secretRef)" in why


class Committing:
    """A consumer whose commits are answered when the test says so (or refused)."""

    def __init__(self) -> None:
        self.requests: list[dict[Any, int]] = []
        self.answers: list[asyncio.Future[None]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.requests.append(dict(offsets))
        answer = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        await answer


async def settled(*tasks: asyncio.Task[None]) -> list[Any]:
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_offsets_given_while_a_commit_is_out_go_together_in_the_next() -> None:
    consumer = Committing()
    commits = Commits(consumer)
    first = asyncio.create_task(commits.commit({"p0": 5}))
    await asyncio.sleep(0)
    later = [asyncio.create_task(commits.commit({p: 9})) for p in ("p1", "p2")]
    await asyncio.sleep(0)
    assert consumer.requests == [{"p0": 5}], "one request out at a time"
    consumer.answers[0].set_result(None)
    await first
    await asyncio.sleep(0)
    assert consumer.requests[1] == {"p1": 9, "p2": 9}
    assert not any(task.done() for task in later), "answered only when the broker answered"
    consumer.answers[1].set_exception(CommitFailedError("rebalanced"))
    assert [type(e) for e in await settled(*later)] == [CommitFailedError] * 2


async def test_settling_forgets_offsets_not_sent_and_waits_for_the_one_out() -> None:
    consumer = Committing()
    commits = Commits(consumer)
    out = asyncio.create_task(commits.commit({"p0": 5}))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(commits.commit({"p1": 3}))
    await asyncio.sleep(0)
    settling = asyncio.create_task(commits.settle())
    await asyncio.sleep(0)
    assert not settling.done(), "waits for the request out"
    consumer.answers[0].set_result(None)
    await settling
    assert consumer.requests == [{"p0": 5}], "what was not sent is not sent after"
    assert out.done() and waiting.cancelled()
