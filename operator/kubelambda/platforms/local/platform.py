"""The local platform: function instances as runtime processes on this machine.

To the gateway it is a `Platform` (ready instances, change notices, wake); to the
autoscaler a `ReplicaTarget` (it starts and stops processes to match the count asked
for). Like a Deployment it replaces an instance that exits, and only the autoscaler
says how many there should be. It starts the runtime's zygote (zygote.py) with itself, so
instances start as forks of an interpreter that has imported the runtime already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance, InstancesListener, Listeners, PlatformError
from kubelambda.platforms.local.functions import LocalFunction
from kubelambda.platforms.local.instances import LocalInstance
from kubelambda.platforms.local.zygote import Zygote

log = logging.getLogger(__name__)

# An instance that dies sooner than this after starting is crash-looping: wait before
# replacing it, as a Deployment's back-off would.
_CRASH_LOOP_SECONDS = 2.0


class _Function:
    def __init__(self, spec: LocalFunction) -> None:
        self.spec = spec
        self.desired = 0
        self.instances: list[LocalInstance] = []  # started, ready or not
        self.ready: dict[str, LocalInstance] = {}
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.start_failing = False  # the last start failed; said once until one succeeds
        self.retry_pending = False  # a reconcile is due after such a failure
        self.refusal_said = False  # why the zygote will not fork its instances, said once


class LocalPlatform:
    def __init__(
        self,
        *,
        functions: Sequence[LocalFunction],
        host: str = "127.0.0.1",
        output: Callable[[str], None] = print,
        on_wake: Callable[[FunctionKey, int], Awaitable[None]] | None = None,
        zygote: Zygote | None = None,
        fork: bool = True,
    ) -> None:
        """``zygote``: the one to fork instances with (default: a new one, started now if an
        event loop runs, else at the first instance); ``fork=False``: none, every instance a
        new process."""
        self._functions = {f.key: _Function(f) for f in functions}
        self._host = host
        self._output = output
        self.on_wake = on_wake
        self._listeners = Listeners()
        self._closing = False
        if zygote is None and fork and Zygote.supported():
            zygote = Zygote(output=output)
        self.zygote = zygote
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # it starts with the first instance
        else:
            if zygote is not None:
                # Before any request: it imports the runtime while local mode starts.
                zygote.start()

    # Platform, for the gateway

    def ready_instances(self, function: FunctionKey) -> Sequence[Instance]:
        entry = self._functions.get(function)
        if entry is None:
            return ()
        concurrency = entry.spec.spec.concurrency
        return tuple(
            Instance(id=i.id, host=i.host, port=i.port, concurrency=concurrency)
            for i in entry.ready.values()
        )

    def subscribe(self, listener: InstancesListener) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    async def wake(self, function: FunctionKey, *, concurrency: int) -> None:
        if function not in self._functions:
            raise PlatformError(f"local mode runs no function {function}")
        if self.on_wake is not None:
            await self.on_wake(function, concurrency)
        elif self.replicas(function) == 0:
            await self.scale(function, 1, reason="woken by a request")

    # ReplicaTarget, for the autoscaler

    def replicas(self, function: FunctionKey) -> int:
        entry = self._functions.get(function)
        return entry.desired if entry is not None else 0

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None:
        entry = self._functions.get(function)
        if entry is None or self._closing:
            return
        if replicas != entry.desired:
            self._output(
                f"kubelambda: {function.name}: {entry.desired} -> {replicas} instances ({reason})"
            )
        entry.desired = replicas
        self._spawn(entry, self._reconcile(function, entry))

    # the processes

    def _spawn(self, entry: _Function, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        entry.tasks.add(task)
        task.add_done_callback(entry.tasks.discard)

    async def _reconcile(self, key: FunctionKey, entry: _Function) -> None:
        async with entry.lock:
            alive = [i for i in entry.instances if i.running]
            missing = entry.desired - len(alive)
            if missing > 0:
                if self.zygote is not None:
                    self.zygote.start()  # if it never started (a dead one restarts itself)
                for _ in range(missing):
                    try:
                        instance = await LocalInstance.start(
                            name=entry.spec.spec.name,
                            code_dir=entry.spec.code_dir,
                            environment=entry.spec.environment,
                            host=self._host,
                            output=self._output,
                            zygote=self.zygote,
                        )
                    except OSError as exc:
                        # No descriptors for its pipes, say: try again after a pause, and
                        # say so once, not at every try.
                        if not entry.start_failing:
                            entry.start_failing = True
                            self._output(
                                f"kubelambda: {entry.spec.spec.name}: cannot start an "
                                f"instance ({exc}); trying again every "
                                f"{_CRASH_LOOP_SECONDS:g} s"
                            )
                        if not entry.retry_pending:
                            entry.retry_pending = True
                            self._spawn(entry, self._retry_start(key, entry))
                        return
                    entry.start_failing = False
                    if instance.refusal is not None and not entry.refusal_said:
                        entry.refusal_said = True
                        self._output(
                            f"kubelambda: {entry.spec.spec.name}: instances start as new Python "
                            f"processes, not forks of the runtime's zygote: {instance.refusal}"
                        )
                    entry.instances.append(instance)
                    self._spawn(entry, self._watch(key, entry, instance))
            elif missing < 0:
                # Stop the ones not yet serving first, then the newest.
                doomed = sorted(alive, key=lambda i: (i.id in entry.ready, -i.started_at))
                for instance in doomed[:-missing]:
                    self._retire(key, entry, instance)
                    self._spawn(entry, self._stop(instance, entry))

    async def _watch(self, key: FunctionKey, entry: _Function, instance: LocalInstance) -> None:
        """Bring one instance to ready, tell the gateway, and replace it if it dies."""
        try:
            status = await instance.wait_ready()
        except RuntimeError as exc:
            self._output(f"kubelambda: {entry.spec.spec.name}: {exc}")
        else:
            if instance in entry.instances and instance.running:
                if status == "init_failed":
                    self._output(
                        f"kubelambda: {entry.spec.spec.name}: init failed; invocations answer "
                        "with the error until the code is fixed"
                    )
                entry.ready[instance.id] = instance
                self._notify(key, entry)
        code = await instance.wait_exit()
        if instance not in entry.instances:
            return  # retired on purpose
        self._retire(key, entry, instance)
        status = "" if code is None else f" with {code}"  # None: its zygote died before it
        self._output(f"kubelambda: {instance.id} exited{status}; replacing it")
        if time.monotonic() - instance.started_at < _CRASH_LOOP_SECONDS:
            await asyncio.sleep(_CRASH_LOOP_SECONDS)
        if not self._closing:
            await self._reconcile(key, entry)

    async def _retry_start(self, key: FunctionKey, entry: _Function) -> None:
        await asyncio.sleep(_CRASH_LOOP_SECONDS)
        entry.retry_pending = False
        if not self._closing:
            await self._reconcile(key, entry)

    def _retire(self, key: FunctionKey, entry: _Function, instance: LocalInstance) -> None:
        if instance in entry.instances:
            entry.instances.remove(instance)
        if entry.ready.pop(instance.id, None) is not None:
            self._notify(key, entry)

    async def _stop(self, instance: LocalInstance, entry: _Function) -> None:
        # In-flight invocations may run to the function's timeout before the process ends.
        await instance.stop(grace=entry.spec.stop_grace_seconds)

    def _notify(self, key: FunctionKey, entry: _Function) -> None:
        self._listeners.notify(key, self.ready_instances(key))

    def status(self) -> Mapping[FunctionKey, tuple[int, int]]:
        """(desired, ready) per function, for local mode's status lines."""
        return {key: (e.desired, len(e.ready)) for key, e in self._functions.items()}

    async def aclose(self) -> None:
        """Stop every instance and wait for them to end."""
        self._closing = True
        stops = []
        for key, entry in self._functions.items():
            for task in list(entry.tasks):
                task.cancel()
            for instance in list(entry.instances):
                self._retire(key, entry, instance)
                stops.append(instance.stop(grace=5.0))
        await asyncio.gather(*stops, return_exceptions=True)
        for entry in self._functions.values():
            for task in list(entry.tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.zygote is not None:
            await self.zygote.aclose()
