"""The console's source in local mode: the process's own Functions, instances, gateway metrics
(through `SampleRing`), delivery store and log files.

`kubelambda local` builds it from the parts it already runs and hands in callables, so the
console depends on no platform: `status` is the local platform's (desired, ready) per function,
`load` the gateway's activator snapshot, `read_logs` the function's log file lines.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.api.trigger import Trigger, schedule_of
from kubelambda.console.app import create_app, serve_console
from kubelambda.console.figures import FunctionState, Logs, Overview, invocations_of
from kubelambda.console.runtimes import RuntimeErrors
from kubelambda.console.samples import SampleRing
from kubelambda.gateway.functionstate import FunctionLoad
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.server import Gateway

__all__ = ["LOG_LINES_READ", "LocalSource", "next_ticks", "start_local_console"]

LOG_LINES_READ = 2000  # the tail of a function's log searched for its latest invocations

ReadLogs = Callable[[FunctionKey], list[str]]
"""A function's log lines, oldest first; LookupError (its message says why) when none."""


def next_ticks(
    triggers: Sequence[Trigger], key: FunctionKey, now: datetime
) -> tuple[tuple[str, datetime], ...]:
    """The next tick of each schedule Trigger of `key` (those with one left)."""
    found = []
    for trigger in triggers:
        if trigger.namespace != key.namespace or trigger.function != key.name:
            continue
        schedule = schedule_of(trigger)
        tick = schedule.next_after(now) if schedule is not None else None
        if tick is not None:
            found.append((trigger.name, tick))
    return tuple(found)


class LocalSource:
    def __init__(
        self,
        *,
        functions: Sequence[Function],
        triggers: Sequence[Trigger],
        status: Callable[[], Mapping[FunctionKey, tuple[int, int]]],
        load: Callable[[], Mapping[FunctionKey, FunctionLoad]],
        ring: SampleRing,
        monotonic: Callable[[], float],
        queued_async: Callable[[], int] | None = None,
        read_logs: ReadLogs | None = None,
    ) -> None:
        self._functions = functions
        self._triggers = triggers
        self._status = status
        self._load = load
        self._ring = ring
        self._monotonic = monotonic
        self._queued_async = queued_async
        self._read_logs = read_logs

    async def overview(self) -> Overview:
        now, figures, charts = self._ring.read()
        status, load, moment = self._status(), self._load(), self._monotonic()
        states = []
        for function in self._functions:
            key = FunctionKey(function.namespace, function.name)
            desired, ready = status.get(key, (0, 0))
            seen = load.get(key)
            last = seen.last_request_at if seen is not None else None
            scaling = function.scaling
            states.append(
                FunctionState(
                    key=key,
                    desired=desired,
                    ready=ready,
                    min_replicas=scaling.min_replicas,
                    max_replicas=scaling.max_replicas,
                    scale_to_zero_after_seconds=float(scaling.scale_to_zero_after_seconds),
                    idle_seconds=None if last is None else max(moment - last, 0.0),
                    next_ticks=next_ticks(self._triggers, key, datetime.fromtimestamp(now, UTC)),
                )
            )
        return Overview(
            now=now,
            source="local mode",
            states=states,
            figures=figures,
            charts=charts,
            queued_async=None if self._queued_async is None else float(self._queued_async()),
        )

    async def logs(self, key: FunctionKey, *, last: int) -> Logs:
        if self._read_logs is None:
            return Logs([], note="local mode writes no log files (see its first lines)")
        try:
            lines = await asyncio.to_thread(self._read_logs, key)
        except LookupError as exc:
            return Logs([], note=str(exc.args[0]) if exc.args else "no log lines yet")
        found = invocations_of(lines[-LOG_LINES_READ:], last=last)
        return Logs(found, note="" if found else "no invocation in its latest log lines")


def start_local_console(
    sock: socket.socket,
    *,
    gateway: Gateway,
    status: Callable[[], Mapping[FunctionKey, tuple[int, int]]],
    ready_instances: Callable[[FunctionKey], Sequence[Instance]],
    functions: Sequence[Function],
    triggers: Sequence[Trigger],
    read_logs: ReadLogs | None,
) -> list[asyncio.Task[None]]:
    """Sample `gateway`'s metrics and the instances' error counts, and serve the console on
    `sock`: the two tasks, for the caller to cancel."""
    runtimes = RuntimeErrors(
        functions=[FunctionKey(f.namespace, f.name) for f in functions],
        ready_instances=ready_instances,
    )
    ring = SampleRing(
        gateway.metrics.registry.collect,
        wall=time.time,
        function_errors=runtimes.totals,
        refresh=runtimes.scrape,
    )
    source = LocalSource(
        functions=functions,
        triggers=triggers,
        status=status,
        load=gateway.load,
        ring=ring,
        monotonic=time.monotonic,
        queued_async=lambda: len(gateway.delivery_store),
        read_logs=read_logs,
    )
    return [
        asyncio.create_task(ring.run(), name="console-samples"),
        asyncio.create_task(serve_console(create_app(source), sock), name="console"),
    ]
