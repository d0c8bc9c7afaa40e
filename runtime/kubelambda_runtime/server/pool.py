"""The server's execution slots: one worker process each, ``concurrency`` of them per runtime.

The server (endpoints.py) asks the pool to run an invocation; the pool picks a free slot (or
answers busy at once), enforces the deadline, and replaces a worker that timed out or died,
so the next invocation finds a fresh environment, as Lambda does.

An invocation reaches a worker one of two ways. On a keep-alive connection with nothing
else pending, the pool hands the connection itself to a warm worker, which answers it and
the invocations that follow on it directly (handover.py); the deadline watch (watch.py)
stops such a worker at its invocation's deadline, and endings.py answers for one that was
stopped or died. Otherwise the invocation goes in a frame to the worker (workerprocess.py)
and its result comes back in one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubelambda_runtime.server.descendants import Descendants
from kubelambda_runtime.server.endings import Endings
from kubelambda_runtime.server.handover import HandOver
from kubelambda_runtime.server.slot import Slot
from kubelambda_runtime.server.watch import DeadlineWatch
from kubelambda_runtime.server.workerprocess import Start, Started, WorkerProcess, exec_worker
from kubelambda_runtime.wire import board as board_states
from kubelambda_runtime.wire import config, faults, framing, loglines
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.wire.invocation import Invocation

if TYPE_CHECKING:  # the server's module; not imported before the workers are spawned
    from kubelambda_runtime.server.httpserver import Connection

# Lambda's limit for the init phase; a handler module still importing after it is stuck.
INIT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Result:
    """What the server answers: an HTTP status and body."""

    status: int
    body: bytes
    function_error: bool = False
    log_tail: str | None = None
    billed_ms: int | None = None  # the invocation's billed duration, when it ran


def _ended(document: dict[str, Any], duration: float) -> Result:
    """The answer for an invocation the runtime ended (timeout, crash), billed as its REPORT."""
    return Result(
        status=200,
        body=json.dumps(document).encode(),
        function_error=True,
        billed_ms=loglines.billed_ms(duration * 1000),
    )


class Pool:
    def __init__(
        self,
        settings: config.Settings,
        *,
        environment: Mapping[str, str],
        board: Board | None = None,
    ) -> None:
        self._settings = settings
        self._environment = dict(environment)
        # Given when the first workers were started before the pool (prespawn.start_first).
        self.board = board if board is not None else Board.create(settings.concurrency)
        self.descendants = Descendants()
        # Lambda stops an init at 10 s, but lets a function with a longer timeout go on
        # initialising within its first invocation: allow whichever is longer.
        init_timeout = max(INIT_TIMEOUT_SECONDS, settings.timeout_seconds)
        self.slots = [
            Slot(index, self._spawn, init_timeout=init_timeout)
            for index in range(settings.concurrency)
        ]
        self.on_init: Callable[[float], None] = lambda seconds: None
        # Outcomes the pool decides (busy, timeout, crash, init errors); workers count theirs.
        self.on_outcome: Callable[[str, float], None] = lambda outcome, seconds: None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch = DeadlineWatch(self.slots, self.board, stopped=self._stopped)
        self._handover = HandOver(self.slots, self.board, on_lent=self._watch.arm)
        self._endings = Endings(
            settings,
            board=self.board,
            handover=self._handover,
            # Looked up at each call: the server sets on_outcome after building the pool.
            count=lambda outcome, seconds: self.on_outcome(outcome, seconds),
            restart=self.start_slot,
        )

    def _spawn(self, index: int, start: Start = exec_worker) -> WorkerProcess:
        env = config.worker_environment(
            self._settings,
            base=self._environment,
            log_stream_name=config.new_log_stream_name(self._settings),
        )
        self.board.idle(index)  # whatever the last worker of this slot posted is over
        worker = WorkerProcess.spawn(
            env,
            cwd=self._settings.task_root,
            board=self.board,
            slot=index,
            descendants=self.descendants,
            start=start,
        )
        return self._wire(index, worker)

    def _wire(self, index: int, worker: WorkerProcess) -> WorkerProcess:
        worker.on_returned = self._handover.returned
        worker.on_lost = lambda: self._lost(self.slots[index], worker)
        return worker

    def adopt(self, started: Sequence[tuple[Started, socket.socket]]) -> list[WorkerProcess]:
        """The first workers, one per slot, started by ``prespawn.start_first`` on this pool's
        board before the pool was even imported: ``start`` for ``spawn_all``'s."""
        workers = []
        for index, (popen, sock) in enumerate(started):
            self.descendants.spawned(popen.pid)
            worker = WorkerProcess(popen, sock, descendants=self.descendants)
            workers.append(self._wire(index, worker))
        return workers

    def spawn_all(self, start: Start = exec_worker) -> list[WorkerProcess]:
        """Start every worker now (before the event loop runs, so init overlaps server start-up).

        ``start`` may fork them instead (the zygote's runtimes do): safe only here, while the
        process has no threads and no event loop. Replacements are always new processes."""
        return [self._spawn(slot.index, start) for slot in self.slots]

    def start(self, spawned: list[WorkerProcess] | None = None) -> None:
        for index, slot in enumerate(self.slots):
            self.start_slot(slot, spawned[index] if spawned else None)

    def start_slot(
        self, slot: Slot, worker: WorkerProcess | None = None, *, phase: str = "init"
    ) -> asyncio.Task[bytes | None]:
        boot = slot.start(worker, phase=phase)
        boot.add_done_callback(self._report_init(slot))
        return boot

    def _report_init(self, slot: Slot) -> Callable[[asyncio.Task[bytes | None]], None]:
        def report(task: asyncio.Task[bytes | None]) -> None:
            if not task.cancelled() and task.result() is None and slot.init_seconds is not None:
                self.on_init(slot.init_seconds)

        return report

    def health(self) -> tuple[str, bytes | None]:
        """``initializing`` until every slot has ended its first init; then ``init_failed``
        (with the error) while a slot's last init failed, else ``ready``.

        A failed init does not stop the runtime serving: as on Lambda, each invocation is
        answered with the init error after init is tried again for it (``_invoke_in``). So
        only a first init under way means the runtime cannot answer yet; a slot starting a
        fresh worker after a timeout or a crash keeps its place (invocations wait for it)."""
        if not all(slot.inited for slot in self.slots):
            return "initializing", None
        for slot in self.slots:
            if slot.worker is None and slot.init_error is not None:
                return "init_failed", slot.init_error
        return "ready", None

    def _acquire(self) -> Slot | None:
        """The slot to run an invocation in: a ready worker holding no connection; else the
        idle worker whose held connection was used least recently (it goes back to the
        server: the one least likely to bring the next request, so with more connections
        than workers the busy ones stay where they are rather than displace each other);
        else a worker still starting, then one to start."""
        best: Slot | None = None
        best_rank = 4
        best_started = 0.0
        for slot in self.slots:
            if slot.busy:
                continue
            started = 0.0
            if slot.lent:
                if (
                    self.board.begun(slot.index) == slot.lent[-1].begun_at
                    or self.board.state(slot.index) == board_states.RUNNING
                ):
                    continue  # yet to pick up what it was handed, or running it
                # Warm, idle or writing its last answer (what it is sent now waits only
                # for that); its connection goes back first.
                rank = 1
                started = self.board.started(slot.index)
            elif slot.ready:
                return slot
            else:
                rank = 2 if slot.boot is not None and not slot.boot.done() else 3
            if rank < best_rank or (rank == 1 == best_rank and started < best_started):
                best, best_rank, best_started = slot, rank, started
        return best

    async def invoke(
        self, invocation: Invocation, *, connection: Connection | None = None
    ) -> Result | None:
        """Run ``invocation``; None when ``connection`` was handed to a worker, which answers
        on it. Give a connection only for a keep-alive request with nothing read past it."""
        slot = self._acquire()
        if slot is None:
            message = (
                f"Rate Exceeded: all {len(self.slots)} execution environments of this "
                "instance are busy"
            )
            body = json.dumps(faults.api_error("TooManyRequestsException", message)).encode()
            self.on_outcome("busy", 0.0)
            return Result(status=429, body=body)
        if connection is not None and self._handover.hand_over(slot, invocation, connection):
            return None
        slot.busy = True
        try:
            self._handover.release(slot)
            return await self._invoke_in(slot, invocation)
        finally:
            slot.busy = False

    def _lost(self, slot: Slot, worker: WorkerProcess) -> None:
        """A worker's socket closed: if nobody waits on the slot, the worker died on its own
        (a crash while it answered on its connection, or while idle)."""
        if slot.worker is not worker or slot.busy:
            return  # a call, a boot or a replacement in progress sees it and acts
        slot.busy = True
        self._track(self._endings.answer_for(slot, worker, timed_out=False))

    def _stopped(self, slot: Slot, worker: WorkerProcess) -> None:
        """The deadline watch stopped the worker: answer for it on its connections."""
        self._track(self._endings.answer_for(slot, worker, timed_out=True))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def release_all(self, *, within: float) -> None:
        """The server is stopping: every worker gives back the connection it holds, after
        answering what arrived on it (handover.py). Waits at most ``within`` seconds."""
        await self._handover.release_all(within=within)

    # --- invocations sent in frames --------------------------------------------------------

    async def _invoke_in(self, slot: Slot, invocation: Invocation) -> Result:
        arrived = time.perf_counter()
        worker = slot.worker
        if worker is None or not slot.ready:
            boot = slot.boot
            if boot is None or (boot.done() and worker is None):
                # Init failed before: Lambda runs it again for the invocation.
                boot = self.start_slot(slot, phase="invoke")
            init_error = await asyncio.shield(boot)
            worker = slot.worker
            if init_error is not None or worker is None:
                return self._error_result(
                    init_error or b"{}",
                    invocation,
                    time.perf_counter() - arrived,
                    memory_mb=slot.init_memory_mb,
                )
        deadline_ms = invocation.deadline(
            timeout_seconds=self._settings.timeout_seconds, now=time.time()
        )
        header = framing.invocation_header(invocation, deadline_ms=deadline_ms)
        header["type"] = "invoke"
        # Whether the worker began the invocation (and so wrote its START line) before it
        # was stopped or died: the board's count of begun invocations moved.
        begun = self.board.begun(slot.index)
        started = time.perf_counter()
        try:
            reply, body = await worker.call(
                framing.encode(header, invocation.body),
                within=max(deadline_ms / 1000 - time.time(), 0.0),
            )
        except TimeoutError:
            return await self._timed_out(slot, worker, invocation, started, begun=begun)
        except ConnectionError:
            return await self._crashed(slot, worker, invocation, started, begun=begun, reason=None)
        if reply.get("type") == "exit":
            return await self._crashed(
                slot, worker, invocation, started, begun=begun, reason=reply["reason"]
            )
        outcome = reply.get("outcome")
        if outcome == "bad_request":
            error = faults.api_error("InvalidRequestContentException", reply.get("message", ""))
            return Result(status=400, body=json.dumps(error).encode())
        billed = reply.get("billed_ms")
        return Result(
            status=200,
            body=body,
            function_error=outcome != "success",
            log_tail=reply.get("tail"),
            billed_ms=billed if isinstance(billed, int) else None,
        )

    async def _timed_out(
        self,
        slot: Slot,
        worker: WorkerProcess,
        invocation: Invocation,
        started: float,
        *,
        begun: int,
    ) -> Result:
        worker.kill()
        await worker.reap()
        duration = time.perf_counter() - started
        opened = self.board.begun(slot.index) != begun
        document = self._endings.timed_out(
            invocation.request_id, duration, opened=opened, memory_mb=worker.max_memory_mb
        )
        self.on_outcome("timeout", duration)
        self._handover.close_lent(slot)
        self.start_slot(slot)  # a fresh environment for the next invocation
        return _ended(document, duration)

    async def _crashed(
        self,
        slot: Slot,
        worker: WorkerProcess,
        invocation: Invocation,
        started: float,
        *,
        begun: int,
        reason: str | None,
    ) -> Result:
        code = await worker.reap()
        duration = time.perf_counter() - started
        document = self._endings.crashed(
            invocation.request_id,
            duration,
            reason or faults.exit_reason(code),
            opened=self.board.begun(slot.index) != begun,
            memory_mb=worker.max_memory_mb,
        )
        self.on_outcome("crash", duration)
        self._handover.close_lent(slot)
        self.start_slot(slot)
        return _ended(document, duration)

    def _error_result(
        self, document: bytes, invocation: Invocation, duration: float, *, memory_mb: int | None
    ) -> Result:
        # An init fault answers every invocation, each with its own request id.
        fields = json.loads(document)
        fields["requestId"] = invocation.request_id
        fields.setdefault("stackTrace", [])
        logged = self._endings.init_failed(
            invocation.request_id, duration, fields, memory_mb=memory_mb
        )
        self.on_outcome("error", 0.0)
        tail = base64.b64encode(logged.encode()).decode() if invocation.tail else None
        return Result(
            status=200,
            body=json.dumps(fields).encode(),
            function_error=True,
            log_tail=tail,
            billed_ms=loglines.billed_ms(duration * 1000),
        )

    async def close(self) -> None:
        """End every environment: ask the workers to exit (their keepers end what they
        started), kill those still booting, and end whatever is left under the server."""
        self._watch.cancel()
        for slot in self.slots:
            booting = slot.booting
            if booting is not None:
                booting.kill()
            if slot.boot is not None and not slot.boot.done():
                slot.boot.cancel()
            if booting is not None:
                await booting.reap()
            if slot.worker is not None:
                worker, slot.worker = slot.worker, None
                worker.close()
                await worker.reap()
        await self.descendants.sweep()
        self.board.close()
