"""One kafka Trigger's batches, each from its first invoke to its commit: invoked, tried again
after a backoff, committed as far as it settled, and what failed for good given to the failure
destinations. `KafkaPoller` (kafka.py) runs `BatchRunner.process` as a task per batch; what each
round comes to is decided by `next_step` (kafka_steps.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from kubelambda.api.identity import FunctionKey
from kubelambda.api.streams import KafkaSource
from kubelambda.api.trigger import Trigger
from kubelambda.dispatcher.batches import BatchInvoker, BatchOutcome, FailedRecords
from kubelambda.dispatcher.kafka_client import Commits
from kubelambda.dispatcher.kafka_steps import Share, Step, next_step, retry_limit
from kubelambda.dispatcher.shapes import KafkaRecord, kafka_event, kafka_item_identifier

__all__ = ["BatchRunner"]

log = logging.getLogger(__name__)

# A failed or throttled batch is tried again after 1 s, doubling up to 60 s.
_BACKOFF_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 60.0


class BatchRunner:
    """Carries one kafka Trigger's batches through to their commits."""

    def __init__(
        self,
        *,
        trigger: Trigger,
        source: KafkaSource,
        invoke: BatchInvoker,
        failures: FailedRecords,
        invoked_arn: str,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.trigger = trigger
        self.source = source
        self._invoke = invoke
        self._failures = failures
        self._invoked_arn = invoked_arn
        self._sleep = sleep  # the backoffs' waits
        self._function = FunctionKey(trigger.namespace, trigger.function)
        self._retries = retry_limit(
            source.maximum_retry_attempts,
            has_destination=failures.has_destination(trigger.delivery, trigger.namespace),
        )
        self._name = f"{trigger.namespace}/{trigger.name}"
        self._commits: Commits | None = None

    async def settle(self) -> None:
        """Send no commit that is not out yet, and wait for the one that is (`Commits.settle`):
        the poller calls it once it dropped the batches in flight."""
        if self._commits is not None:
            await self._commits.settle()

    async def process(self, consumer: Any, parts: list[Share]) -> None:
        """Invoke one batch until every share of it is done: succeeded, or failed for good and
        given to the failure destinations; each step commits what it settled. KafkaPoller
        runs it as a task per batch."""
        rounds = 0
        while parts:
            records = [record for part in parts for record in part.records]
            if not records:  # only filtered records: done unseen
                await self._commit(consumer, {part.partition: part.end for part in parts})
                return
            outcome = await self._invoke(
                function=self._function,
                invoked_arn=self._invoked_arn,
                event=self._event(records),
                item_ids=[kafka_item_identifier(record) for record in records],
                report_failures=self.source.batching.reports_batch_item_failures,
            )
            commits: dict[Any, int] = {}
            given_up: list[tuple[Share, Step]] = []
            again: list[Share] = []
            for part in parts:
                step = next_step(
                    part.records,
                    end=part.end,
                    failures=part.failures,
                    failed=outcome.failed,
                    throttled=outcome.throttled,
                    retries=self._retries,
                )
                if step.exhausted:
                    given_up.append((part, step))
                    continue
                if step.commit is not None:
                    commits[part.partition] = step.commit
                if step.again:
                    part.records, part.failures = list(step.again), step.failures
                    again.append(part)
            if commits:
                await self._commit(consumer, commits)
            if given_up:
                await self._give_up(consumer, given_up, outcome)
            parts = again
            if parts:
                rounds = 0 if commits or given_up else rounds  # progress: from 1 s again
                await self._sleep(min(_BACKOFF_SECONDS * 2**rounds, _BACKOFF_MAX_SECONDS))
                rounds += 1

    def _event(self, records: list[KafkaRecord]) -> dict[str, Any]:
        servers = self.source.bootstrap_servers  # self-managed Kafka has no ARN on Lambda
        return kafka_event(event_source_arn=None, bootstrap_servers=servers, records=records)

    async def _commit(self, consumer: Any, offsets: dict[Any, int]) -> None:
        commits = self._commits
        if commits is None or commits.consumer is not consumer:
            commits = self._commits = Commits(consumer)
        try:
            await commits.commit(offsets)
        except KafkaError as exc:
            # The group moved on (a rebalance) or the cluster is away: the next commit of these
            # partitions covers this one, or their new reader gets the records again.
            log.warning(
                "kafka %s: could not commit %s: %r; those records may come again",
                self._name,
                ", ".join(f"{tp.topic}-{tp.partition}@{n}" for tp, n in offsets.items()),
                exc,
            )

    async def _give_up(
        self, consumer: Any, given_up: list[tuple[Share, Step]], outcome: BatchOutcome
    ) -> None:
        """Records that failed for good go to the failure destinations; their partitions are
        committed past the batch once the records are stored (or there is no destination)."""
        records = [record for _, step in given_up for record in step.exhausted]
        attempts = max(step.failures for _, step in given_up)
        delivery, namespace = self.trigger.delivery, self.trigger.namespace
        while not await self._failures.send(
            delivery=delivery,
            namespace=namespace,
            invoked_arn=self._invoked_arn,
            event=self._event(records),
            outcome=outcome,
            attempts=attempts,
        ):
            log.warning("kafka %s: failure destination refused; again in 60 s", self._name)
            await self._sleep(_BACKOFF_MAX_SECONDS)
        if not self._failures.has_destination(delivery, namespace):
            log.warning(
                "kafka %s: %d records dropped after %d attempts, no failure destination (%s)",
                self._name,
                len(records),
                attempts,
                ", ".join(kafka_item_identifier(record) for record in records),
            )
        await self._commit(consumer, {part.partition: part.end for part, _ in given_up})
