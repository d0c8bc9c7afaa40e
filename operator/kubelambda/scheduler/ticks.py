"""Fires schedule Triggers: each tick becomes an asynchronous invocation carrying EventBridge's
Scheduled Event, admitted to the delivery store (JetStream on a cluster) like an Event
invocation, so it is retried, dead-lettered and scales a function from zero alike.

A tick's request id is derived from the Trigger and the tick, so the same tick fired twice
(two operators, a restart) is one message in the broker's duplicate window. A scheduler that
was away owes only the latest missed tick, fired once on its return, as EventBridge
Scheduler's flexible window does. `kubelambda operator` runs it while it holds the lease
(recording each Trigger's last tick in its status); local mode runs it beside its gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubelambda.api import Function, Trigger, schedule_of
from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.api.schedule import Schedule
from kubelambda.clock import Clock
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.delivery.store import DeliveryStore
from kubelambda.gateway.routing import delivery_policy

__all__ = ["Scheduler", "scheduled_event", "tick_id"]

log = logging.getLogger(__name__)

_TICK_IDS = uuid.UUID("0b7c61d2-58a4-5e1f-a3c9-7d2e4f6a8b10")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick_id(trigger: Trigger, tick: datetime) -> str:
    """The request id of a tick's invocation: the same whoever fires it, and however often."""
    return str(uuid.uuid5(_TICK_IDS, f"{trigger.namespace}/{trigger.name}/{_iso(tick)}"))


def scheduled_event(
    trigger: Trigger, tick: datetime, *, request_id: str, region: str, account_id: str
) -> dict[str, Any]:
    """EventBridge's Scheduled Event; its rule ARN names the Trigger (NAMESPACE.NAME)."""
    return {
        "version": "0",
        "id": request_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": _iso(tick),
        "region": region,
        "resources": [
            f"arn:aws:events:{region}:{account_id}:rule/{trigger.namespace}.{trigger.name}"
        ],
        "detail": {},
    }


@dataclass
class _Plan:
    trigger: Trigger
    schedule: Schedule
    after: datetime  # ticks up to here are fired (or were not owed)
    next: datetime | None


class Scheduler:
    def __init__(
        self,
        *,
        store: DeliveryStore,
        clock: Clock,
        triggers: Callable[[], Iterable[Trigger]],
        function: Callable[[FunctionKey], Function | None],
        region: str,
        account_id: str,
        default_namespace: str = "default",
        last_tick: Callable[[Trigger], datetime | None] = lambda trigger: None,
        fired: Callable[[Trigger, datetime], Awaitable[None]] | None = None,
        leading: Callable[[], bool] = lambda: True,
        poll_seconds: float = 0.5,
    ) -> None:
        self._store = store
        self._clock = clock
        self._triggers = triggers
        self._function = function
        self._region = region
        self._account_id = account_id
        self._default_namespace = default_namespace
        self._last_tick = last_tick
        self._fired = fired
        self._leading = leading
        self._poll = poll_seconds
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._task: asyncio.Task[None] | None = None
        self.fired = 0  # ticks fired by this process, for tests and logs

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.wall(), UTC)

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="scheduler")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            if self._leading():
                try:
                    await self.run_once()
                except Exception:
                    log.exception("the scheduler's pass failed; trying again")
            else:
                # Another process leads: its ticks, and a fresh look when this one leads.
                self._plans.clear()
            await asyncio.sleep(self._poll)  # a period, not a wait for a state

    # --- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> None:
        """Fire every tick that is due (each Trigger's latest owed one)."""
        now = self.now()
        self._replan(now)
        for plan in list(self._plans.values()):
            if plan.next is None or plan.next > now:
                continue
            due = plan.schedule.latest_until(now, after=plan.after) or plan.next
            if await self._fire(plan.trigger, due):
                plan.after = max(due, now)
                plan.next = plan.schedule.next_after(plan.after)

    def _replan(self, now: datetime) -> None:
        seen: set[tuple[str, str]] = set()
        for trigger in self._triggers():
            schedule = schedule_of(trigger)
            if schedule is None:
                continue
            key = (trigger.namespace, trigger.name)
            seen.add(key)
            plan = self._plans.get(key)
            if plan is not None and plan.trigger == trigger:
                continue
            # New, or changed: owed from its last fired tick, its creation, or now.
            after = self._last_tick(trigger) or _created(trigger) or now
            if plan is not None:
                after = max(after, plan.after)
            self._plans[key] = _Plan(trigger, schedule, after, schedule.next_after(after))
        for gone in self._plans.keys() - seen:
            del self._plans[gone]

    async def _fire(self, trigger: Trigger, tick: datetime) -> bool:
        key = FunctionKey(trigger.namespace, trigger.function)
        function = self._function(key)
        if function is None:
            log.warning(
                "schedule %s/%s: tick %s missed, Function %s does not exist",
                trigger.namespace,
                trigger.name,
                _iso(tick),
                key,
            )
            return True
        request_id = tick_id(trigger, tick)
        event = scheduled_event(
            trigger, tick, request_id=request_id, region=self._region, account_id=self._account_id
        )
        delivery = trigger.delivery or function.delivery
        job = DeliveryJob(
            id=request_id,
            payload=json.dumps(event, separators=(",", ":")).encode("utf-8"),
            policy=delivery_policy(delivery, namespace=trigger.namespace),
            invoked_arn=function_arn(
                key,
                region=self._region,
                account_id=self._account_id,
                default_namespace=self._default_namespace,
            ),
            enqueued_at=tick.timestamp(),
            function=key,
        )
        try:
            admitted = await self._store.admit([job])
        except OSError as exc:
            log.warning(
                "schedule %s/%s: tick %s not recorded yet: %s", *_name(trigger), _iso(tick), exc
            )
            return False
        if not admitted:
            log.warning(
                "schedule %s/%s: the delivery queue is full; tick %s waits",
                *_name(trigger),
                _iso(tick),
            )
            return False
        self.fired += 1
        log.info(
            "schedule %s/%s fired tick %s (request %s)", *_name(trigger), _iso(tick), request_id
        )
        if self._fired is not None:
            try:
                await self._fired(trigger, tick)
            except Exception as exc:  # the tick is in the store; its record is a courtesy
                log.warning(
                    "schedule %s/%s: cannot record tick %s: %s", *_name(trigger), _iso(tick), exc
                )
        return True


def _name(trigger: Trigger) -> tuple[str, str]:
    return trigger.namespace, trigger.name


def _created(trigger: Trigger) -> datetime | None:
    if not trigger.created:
        return None  # a manifest file: owed nothing from before this process
    try:
        return datetime.fromisoformat(trigger.created.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None
