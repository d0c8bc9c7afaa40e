"""The server's execution slots: one worker process each, ``concurrency`` of them per runtime.

The server asks the pool to run an invocation; the pool picks a free slot (or answers
busy at once), enforces the deadline, and replaces a worker that timed out or died, so
the next invocation finds a fresh environment, as Lambda does.

An invocation reaches a worker one of two ways. On a keep-alive connection with nothing
else pending, the pool hands the connection itself to a warm worker ("take"), which
answers it and the invocations that follow on it directly (direct.py): the server is
out of the path until the connection comes back ("returned"). Otherwise the invocation
goes in a frame and its result comes back in one. For held connections the pool reads
the board (board.py): it stops a worker at its invocation's deadline and, when a worker
dies, answers for it on the connection it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubelambda_runtime import board as board_states
from kubelambda_runtime import config, faults, framing, logs
from kubelambda_runtime.board import Board
from kubelambda_runtime.frameprotocol import FrameProtocol
from kubelambda_runtime.http1 import encode_response
from kubelambda_runtime.invocation import Invocation, answer

if TYPE_CHECKING:  # the server's module; not imported before the workers are spawned
    from kubelambda_runtime.httpserver import Connection

# Lambda's limit for the init phase; a handler module still importing after it is stuck.
INIT_TIMEOUT_SECONDS = 10.0
# How often held slots are checked for invocations to watch. An invocation seen running is
# stopped right at its deadline; one with a deadline closer than this to its start (less
# than Lambda's smallest timeout) may be stopped up to this late.
WATCH_SECONDS = 0.25


@dataclass(frozen=True)
class Result:
    """What the server answers: an HTTP status and body."""

    status: int
    body: bytes
    function_error: bool = False
    log_tail: str | None = None


class WorkerProcess:
    """A running worker: its process and the server's end of its socket."""

    def __init__(self, popen: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.popen = popen
        self._sock = sock
        self._protocol: FrameProtocol | None = None
        # Frames of type "returned", and the end of the socket, outside of any call.
        self.on_returned: Callable[[dict[str, Any], bytes], None] = lambda header, body: None
        self.on_lost: Callable[[], None] = lambda: None

    @classmethod
    def spawn(
        cls, environment: Mapping[str, str], *, cwd: str, board: Board, slot: int
    ) -> WorkerProcess:
        ours, theirs = socket.socketpair()
        with theirs:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kubelambda_runtime.worker",
                    str(theirs.fileno()),
                    str(board.fd),
                    str(slot),
                ],
                pass_fds=(theirs.fileno(), board.fd),
                env=dict(environment),
                cwd=cwd if os.path.isdir(cwd) else None,
                stdin=subprocess.DEVNULL,
                # Its own process group, so a timeout also ends what the handler started.
                start_new_session=True,
            )
        return cls(popen, ours)

    async def _connection(self) -> FrameProtocol:
        if self._protocol is None:
            _, self._protocol = await asyncio.get_running_loop().create_unix_connection(
                lambda: FrameProtocol(side={"returned": self._returned}, lost=self._lost),
                sock=self._sock,
            )
        return self._protocol

    def _returned(self, header: dict[str, Any], body: bytes) -> None:
        self.on_returned(header, body)

    def _lost(self) -> None:
        self.on_lost()

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        """Send a frame that needs no answer (the worker is known to be connected)."""
        assert self._protocol is not None
        self._protocol.send(framing.encode(header, body))

    def can_hand_over(self) -> bool:
        """Whether a frame sent beside the transport would keep its place in line."""
        return self._protocol is not None and self._protocol.idle_writer()

    def hand_over(self, header: dict[str, Any], body: bytes, fd: int) -> bool:
        """Send a frame with a copy of descriptor ``fd``; False (nothing sent) when the
        socket cannot take it now."""
        protocol = self._protocol
        if protocol is None or not protocol.idle_writer():
            return False
        frame = framing.encode({**header, "fd": True}, body)
        try:
            sent = socket.send_fds(self._sock, [frame], [fd])
        except (BlockingIOError, InterruptedError, OSError):
            return False
        if sent < len(frame):
            protocol.send(frame[sent:])  # the descriptor went with the first bytes
        return True

    def exit_reason(self) -> str | None:
        """The reason the worker gave before it exited on its own (out of memory)."""
        if self._protocol is None:
            return None
        return self._protocol.reason_given()

    async def receive(self) -> tuple[dict[str, Any], bytes]:
        return await (await self._connection()).receive()

    async def call(self, frame: bytes, *, within: float) -> tuple[dict[str, Any], bytes]:
        """Send one frame and wait for the answer; TimeoutError after ``within`` seconds."""
        connection = self._protocol or await self._connection()
        connection.send(frame)
        answer = connection.receive()
        # A timer on the future itself rather than asyncio.wait_for, which would wrap
        # every invocation in a task of its own.
        timer = asyncio.get_running_loop().call_later(within, _expire, answer)
        try:
            return await answer
        finally:
            timer.cancel()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    async def reap(self) -> int | None:
        """Wait (briefly) for the process to end and return its exit code."""
        self._close()
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(None, self.popen.wait), 5.0)
        except TimeoutError:
            self.kill()
            return await loop.run_in_executor(None, self.popen.wait)

    def close(self) -> None:
        """Ask the worker to finish: it exits when its socket closes."""
        self._close()

    def _close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
        else:
            self._sock.close()


@dataclass(frozen=True)
class Lent:
    """A connection handed to a worker with an invocation read from it."""

    conn: int  # its name in the frames
    connection: Connection
    request_id: str  # of the invocation it was handed with
    begun_at: int  # the board's count of begun invocations before the hand-over


class Slot:
    """One execution environment's place: a worker, or the fault that kept it from starting."""

    def __init__(
        self, index: int, spawn: Callable[[int], WorkerProcess], *, init_timeout: float
    ) -> None:
        self.index = index
        self._spawn = spawn
        self._init_timeout = init_timeout
        self.worker: WorkerProcess | None = None
        self.busy = False  # the pool itself waits on this slot (a call, a boot, a replacement)
        # Connections handed to its worker, oldest first: the last is the one it serves; any
        # before it are on their way back.
        self.lent: list[Lent] = []
        self.boot: asyncio.Task[bytes | None] | None = None
        self.booting: WorkerProcess | None = None
        self.init_error: bytes | None = None
        self.init_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self.worker is not None and self.boot is not None and self.boot.done()

    def start(self, worker: WorkerProcess | None = None) -> asyncio.Task[bytes | None]:
        """Begin init in the background, with a worker already spawned or a new one."""
        self.worker = None
        self.booting = worker or self._spawn(self.index)
        self.boot = asyncio.get_running_loop().create_task(self._boot(self.booting))
        return self.boot

    async def _boot(self, worker: WorkerProcess) -> bytes | None:
        started = time.perf_counter()
        try:
            return await self._await_init(worker, started)
        finally:
            self.booting = None

    async def _await_init(self, worker: WorkerProcess, started: float) -> bytes | None:
        try:
            header, body = await asyncio.wait_for(worker.receive(), self._init_timeout)
        except (TimeoutError, ConnectionError) as exc:
            worker.kill()
            reason = faults.exit_reason(await worker.reap())
            if isinstance(exc, TimeoutError):
                error_type = faults.TIMED_OUT
                message = f"Init timed out after {self._init_timeout:.2f} seconds"
            else:
                error_type, message = faults.EXIT_ERROR, f"Runtime exited with error: {reason}"
            body = json.dumps(
                faults.error_document(
                    message=message, error_type=error_type, request_id=None, stack=[]
                )
            ).encode()
            self.init_error = body
            return body
        if header.get("type") != "ready":
            await worker.reap()
            self.init_error = body
            return body
        self.init_seconds = time.perf_counter() - started
        self.init_error = None
        self.worker = worker
        return None


class Pool:
    def __init__(self, settings: config.Settings, *, environment: Mapping[str, str]) -> None:
        self._settings = settings
        self._environment = dict(environment)
        self.board = Board.create(settings.concurrency)
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
        self._next_conn = 0
        self._watch: asyncio.TimerHandle | None = None
        self._all_back = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, index: int) -> WorkerProcess:
        env = config.worker_environment(
            self._settings,
            base=self._environment,
            log_stream_name=config.new_log_stream_name(self._settings),
        )
        self.board.idle(index)  # whatever the last worker of this slot posted is over
        worker = WorkerProcess.spawn(
            env, cwd=self._settings.task_root, board=self.board, slot=index
        )
        worker.on_returned = self._returned
        worker.on_lost = lambda: self._lost(self.slots[index], worker)
        return worker

    def spawn_all(self) -> list[WorkerProcess]:
        """Start every worker now (before the event loop runs, so init overlaps server start-up)."""
        return [self._spawn(slot.index) for slot in self.slots]

    def start(self, spawned: list[WorkerProcess] | None = None) -> None:
        for index, slot in enumerate(self.slots):
            self.start_slot(slot, spawned[index] if spawned else None)

    def start_slot(
        self, slot: Slot, worker: WorkerProcess | None = None
    ) -> asyncio.Task[bytes | None]:
        boot = slot.start(worker)
        boot.add_done_callback(self._report_init(slot))
        return boot

    def _report_init(self, slot: Slot) -> Callable[[asyncio.Task[bytes | None]], None]:
        def report(task: asyncio.Task[bytes | None]) -> None:
            if not task.cancelled() and task.result() is None and slot.init_seconds is not None:
                self.on_init(slot.init_seconds)

        return report

    def health(self) -> tuple[str, bytes | None]:
        """``ready`` once every slot has a worker; else ``init_failed`` or ``initializing``."""
        if all(slot.worker is not None and (slot.busy or slot.ready) for slot in self.slots):
            return "ready", None
        for slot in self.slots:
            if slot.worker is None and slot.init_error is not None and not slot.busy:
                return "init_failed", slot.init_error
        return "initializing", None

    def _acquire(self) -> Slot | None:
        best: Slot | None = None
        best_rank = 4
        for slot in self.slots:
            if slot.busy:
                continue
            if slot.lent:
                if (
                    self.board.begun(slot.index) == slot.lent[-1].begun_at
                    or self.board.state(slot.index) == board_states.RUNNING
                ):
                    continue  # yet to pick up what it was handed, or running it
                # Warm, idle or writing its last answer (what it is sent now waits only
                # for that); its connection goes back first.
                rank = 1
            elif slot.ready:
                rank = 0
            else:
                rank = 2 if slot.boot is not None and not slot.boot.done() else 3
            if rank < best_rank:
                best, best_rank = slot, rank
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
        if connection is not None and self._hand_over(slot, invocation, connection):
            return None
        slot.busy = True
        try:
            if slot.lent and slot.worker is not None:
                slot.worker.send({"type": "release", "conn": slot.lent[-1].conn})
            return await self._invoke_in(slot, invocation)
        finally:
            slot.busy = False

    # --- connections served by workers -----------------------------------------------------

    def _hand_over(self, slot: Slot, invocation: Invocation, connection: Connection) -> bool:
        worker = slot.worker
        if worker is None or not slot.ready or not worker.can_hand_over():
            return False
        if not connection.lendable():
            return False
        conn = self._next_conn = self._next_conn + 1
        header = _frame_header(invocation, deadline_ms=invocation.deadline_ms)
        header.update(type="take", conn=conn, keep_alive=True)
        begun = self.board.begun(slot.index)
        if not worker.hand_over(header, invocation.body, connection.lend()):
            connection.reclaim()
            return False
        # The worker gives back the one it held before taking this.
        slot.lent.append(Lent(conn, connection, invocation.request_id, begun))
        self._all_back.clear()
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(WATCH_SECONDS, self._check)
        return True

    def _returned(self, header: dict[str, Any], unread: bytes) -> None:
        conn = int(header["conn"])
        for slot in self.slots:
            for lent in slot.lent:
                if lent.conn == conn:
                    slot.lent.remove(lent)
                    self._note_returns()
                    lent.connection.reclaim(unread, close=bool(header.get("close")))
                    return

    def _close_lent(self, slot: Slot) -> None:
        """A connection the worker was still to give back died with it: close it, so its
        client learns at once."""
        lent, slot.lent = slot.lent, []
        self._note_returns()
        for item in lent:
            item.connection.reclaim(close=True)

    def _note_returns(self) -> None:
        if not any(slot.lent for slot in self.slots):
            self._all_back.set()

    def _check(self) -> None:
        """The watch: stop a worker whose invocation on a held connection is past its
        deadline. It looks again at the earliest deadline it saw, or after WATCH_SECONDS."""
        self._watch = None
        now = time.time()
        wait = WATCH_SECONDS
        for slot in self.slots:
            if not slot.lent or slot.busy or slot.worker is None:
                continue
            posting = self.board.posting(slot.index)
            if posting.state != board_states.RUNNING:
                continue
            if now < posting.deadline:
                wait = min(wait, posting.deadline - now)
                continue
            slot.busy = True
            slot.worker.kill()
            self._track(self._answer_for(slot, slot.worker, timed_out=True))
        if any(slot.lent for slot in self.slots):
            self._watch = asyncio.get_running_loop().call_later(wait, self._check)

    def _lost(self, slot: Slot, worker: WorkerProcess) -> None:
        """A worker's socket closed: if nobody waits on the slot, the worker died on its own
        (a crash while it answered on its connection, or while idle)."""
        if slot.worker is not worker or slot.busy:
            return  # a call, a boot or a replacement in progress sees it and acts
        slot.busy = True
        self._track(self._answer_for(slot, worker, timed_out=False))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_for(self, slot: Slot, worker: WorkerProcess, *, timed_out: bool) -> None:
        """After a worker holding connections was stopped or died: answer the invocation it
        was running, and one it was handed but never began (as Lambda would), give the
        connections back to the server, and start a fresh environment."""
        code = await worker.reap()
        posting = self.board.posting(slot.index)  # final: its writer is gone
        lent, slot.lent = slot.lent, []
        self._note_returns()
        ended = "timeout" if timed_out else "crash"
        reason = worker.exit_reason() or faults.exit_reason(code)
        began_last = bool(lent) and self.board.begun(slot.index) != lent[-1].begun_at
        # The worker's last invocation ran on the last connection if it began the
        # invocation handed with it, else on the one before.
        running_on = lent[-1] if began_last else lent[-2] if len(lent) > 1 else None
        for item in lent:
            if item is running_on and posting.state == board_states.RUNNING:
                duration = time.perf_counter() - posting.started
                self._answer_on(item, posting.request_id, duration, ended=ended, reason=reason)
            elif item is lent[-1] and not began_last:
                self._answer_on(item, item.request_id, 0.0, ended="crash", reason=reason)
            else:
                # Bytes the worker read and did not answer died with it; closing tells the
                # client at once instead of leaving it waiting.
                item.connection.reclaim(close=True)
        self.start_slot(slot)
        slot.busy = False

    def _answer_on(
        self, lent: Lent, request_id: str, duration: float, *, ended: str, reason: str
    ) -> None:
        if ended == "timeout":
            document = self._log_timeout(request_id, duration)
        else:
            document = self._log_crash(request_id, duration, reason)
        self.on_outcome(ended, duration)
        response = answer(request_id, json.dumps(document).encode(), function_error=True)
        lent.connection.reclaim(answer=encode_response(response, keep_alive=True))

    async def release_all(self, *, within: float) -> None:
        """The server is stopping: every worker answers the invocation it runs and what has
        arrived on its connection after it, then gives the connection back to be closed.
        Waits for them at most ``within`` seconds."""
        for slot in self.slots:
            if slot.lent and slot.worker is not None:
                release = {"type": "release", "conn": slot.lent[-1].conn, "closing": True}
                with contextlib.suppress(ConnectionError, AssertionError):
                    slot.worker.send(release)
        if any(slot.lent for slot in self.slots):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_back.wait(), within)

    # --- invocations sent in frames --------------------------------------------------------

    async def _invoke_in(self, slot: Slot, invocation: Invocation) -> Result:
        worker = slot.worker
        if worker is None or not slot.ready:
            boot = slot.boot
            if boot is None or (boot.done() and worker is None):
                boot = self.start_slot(slot)  # init failed before: Lambda runs it again on invoke
            init_error = await asyncio.shield(boot)
            worker = slot.worker
            if init_error is not None or worker is None:
                return self._error_result(init_error or b"{}", invocation.request_id)
        deadline_ms = invocation.deadline_ms or int(
            (time.time() + self._settings.timeout_seconds) * 1000
        )
        header = _frame_header(invocation, deadline_ms=deadline_ms)
        header["type"] = "invoke"
        started = time.perf_counter()
        try:
            reply, body = await worker.call(
                framing.encode(header, invocation.body),
                within=max(deadline_ms / 1000 - time.time(), 0.0),
            )
        except TimeoutError:
            return await self._timed_out(slot, worker, invocation, started)
        except ConnectionError:
            return await self._crashed(slot, worker, invocation, started, reason=None)
        if reply.get("type") == "exit":
            return await self._crashed(slot, worker, invocation, started, reason=reply["reason"])
        outcome = reply.get("outcome")
        if outcome == "bad_request":
            error = faults.api_error("InvalidRequestContentException", reply.get("message", ""))
            return Result(status=400, body=json.dumps(error).encode())
        return Result(
            status=200,
            body=body,
            function_error=outcome != "success",
            log_tail=reply.get("tail"),
        )

    async def _timed_out(
        self, slot: Slot, worker: WorkerProcess, invocation: Invocation, started: float
    ) -> Result:
        worker.kill()
        await worker.reap()
        duration = time.perf_counter() - started
        document = self._log_timeout(invocation.request_id, duration)
        self.on_outcome("timeout", duration)
        self._close_lent(slot)
        self.start_slot(slot)  # a fresh environment for the next invocation
        return Result(status=200, body=json.dumps(document).encode(), function_error=True)

    async def _crashed(
        self,
        slot: Slot,
        worker: WorkerProcess,
        invocation: Invocation,
        started: float,
        *,
        reason: str | None,
    ) -> Result:
        code = await worker.reap()
        duration = time.perf_counter() - started
        document = self._log_crash(
            invocation.request_id, duration, reason or faults.exit_reason(code)
        )
        self.on_outcome("crash", duration)
        self._close_lent(slot)
        self.start_slot(slot)
        return Result(status=200, body=json.dumps(document).encode(), function_error=True)

    def _error_result(self, document: bytes, request_id: str) -> Result:
        # An init fault answers every invocation, each with its own request id.
        fields = json.loads(document)
        fields["requestId"] = request_id
        fields.setdefault("stackTrace", [])
        self.on_outcome("error", 0.0)
        return Result(status=200, body=json.dumps(fields).encode(), function_error=True)

    # --- what Lambda logs when the runtime ends an invocation ------------------------------

    def _log_timeout(self, request_id: str, duration: float) -> dict[str, Any]:
        timeout = self._settings.timeout_seconds
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        _log(f"{stamp}Z {request_id} Task timed out after {timeout:.2f} seconds")
        self._log_end(request_id, duration, status="timeout")
        return faults.timeout_document(request_id=request_id, timeout_seconds=timeout)

    def _log_crash(self, request_id: str, duration: float, reason: str) -> dict[str, Any]:
        _log(f"RequestId: {request_id} Error: Runtime exited with error: {reason}")
        self._log_end(request_id, duration, status="error")
        return faults.exit_document(request_id=request_id, reason=reason)

    def _log_end(self, request_id: str, duration: float, *, status: str) -> None:
        _log(logs.end_line(request_id))
        _log(
            logs.report_line(
                request_id=request_id,
                duration_ms=duration * 1000,
                memory_mb=self._settings.memory_mb,
                max_memory_mb=None,
                init_ms=None,
                status=status,
            )
        )

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for slot in self.slots:
            if slot.booting is not None:
                slot.booting.kill()
            if slot.boot is not None and not slot.boot.done():
                slot.boot.cancel()
            if slot.worker is not None:
                worker, slot.worker = slot.worker, None
                worker.close()
                await worker.reap()
        self.board.close()


def _frame_header(invocation: Invocation, *, deadline_ms: int | None) -> dict[str, Any]:
    header: dict[str, Any] = {"id": invocation.request_id, "tail": invocation.tail}
    if deadline_ms is not None:
        header["deadline_ms"] = deadline_ms
    for key in ("arn", "client_context", "identity"):
        value = getattr(invocation, key)
        if value:
            header[key] = value
    return header


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _log(line: str) -> None:
    os.write(1, (line + "\n").encode())
