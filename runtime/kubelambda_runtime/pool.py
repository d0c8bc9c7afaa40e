"""The server's execution slots: one worker process each, ``concurrency`` of them per runtime.

The server asks the pool to run an invocation; the pool picks a free slot (or answers
busy at once), enforces the deadline, and replaces a worker that timed out or died, so
the next invocation finds a fresh environment, as Lambda does.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelambda_runtime import config, faults, framing, logs

# Lambda's limit for the init phase; a handler module still importing after it is stuck.
INIT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Invocation:
    request_id: str
    body: bytes
    deadline_ms: int | None = None
    arn: str | None = None
    client_context: str | None = None
    identity: str | None = None
    tail: bool = False


@dataclass(frozen=True)
class Result:
    """What the server answers: an HTTP status and body, and what the metrics count."""

    status: int
    body: bytes
    outcome: str  # success | error | timeout | crash | bad_request | busy
    function_error: bool = False
    log_tail: str | None = None
    duration_s: float = 0.0


class WorkerProcess:
    """A running worker: its process and the server's end of its socket."""

    def __init__(self, popen: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.popen = popen
        self._sock = sock
        self._protocol: framing.FrameProtocol | None = None

    @classmethod
    def spawn(cls, environment: Mapping[str, str], *, cwd: str) -> WorkerProcess:
        ours, theirs = socket.socketpair()
        with theirs:
            popen = subprocess.Popen(
                [sys.executable, "-m", "kubelambda_runtime.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=dict(environment),
                cwd=cwd if os.path.isdir(cwd) else None,
                stdin=subprocess.DEVNULL,
                # Its own process group, so a timeout also ends what the handler started.
                start_new_session=True,
            )
        return cls(popen, ours)

    async def _connection(self) -> framing.FrameProtocol:
        if self._protocol is None:
            _, self._protocol = await asyncio.get_running_loop().create_unix_connection(
                framing.FrameProtocol, sock=self._sock
            )
        return self._protocol

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


class Slot:
    """One execution environment's place: a worker, or the fault that kept it from starting."""

    def __init__(self, spawn: Callable[[], WorkerProcess], *, init_timeout: float) -> None:
        self._spawn = spawn
        self._init_timeout = init_timeout
        self.worker: WorkerProcess | None = None
        self.busy = False
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
        self.booting = worker or self._spawn()
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
        # Lambda stops an init at 10 s, but lets a function with a longer timeout go on
        # initialising within its first invocation: allow whichever is longer.
        init_timeout = max(INIT_TIMEOUT_SECONDS, settings.timeout_seconds)
        self.slots = [
            Slot(self._spawn, init_timeout=init_timeout) for _ in range(settings.concurrency)
        ]
        self.on_init: Callable[[float], None] = lambda seconds: None

    def _spawn(self) -> WorkerProcess:
        env = config.worker_environment(
            self._settings,
            base=self._environment,
            log_stream_name=config.new_log_stream_name(self._settings),
        )
        return WorkerProcess.spawn(env, cwd=self._settings.task_root)

    def spawn_all(self) -> list[WorkerProcess]:
        """Start every worker now (before the event loop runs, so init overlaps server start-up)."""
        return [self._spawn() for _ in self.slots]

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
        free = [slot for slot in self.slots if not slot.busy]
        if not free:
            return None
        # A warm worker first, then one already initialising, then a slot that needs one.
        slot = min(free, key=lambda s: 0 if s.ready else 1 if s.boot and not s.boot.done() else 2)
        slot.busy = True
        return slot

    async def invoke(self, invocation: Invocation) -> Result:
        slot = self._acquire()
        if slot is None:
            message = (
                f"Rate Exceeded: all {len(self.slots)} execution environments of this "
                "instance are busy"
            )
            body = json.dumps(faults.api_error("TooManyRequestsException", message)).encode()
            return Result(status=429, body=body, outcome="busy")
        try:
            return await self._invoke_in(slot, invocation)
        finally:
            slot.busy = False

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
        settings = self._settings
        deadline_ms = invocation.deadline_ms or int((time.time() + settings.timeout_seconds) * 1000)
        header = {"id": invocation.request_id, "deadline_ms": deadline_ms, "tail": invocation.tail}
        for key in ("arn", "client_context", "identity"):
            value = getattr(invocation, key)
            if value:
                header[key] = value
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
        duration = time.perf_counter() - started
        outcome = reply.get("outcome")
        if outcome == "bad_request":
            error = faults.api_error("InvalidRequestContentException", reply.get("message", ""))
            return Result(status=400, body=json.dumps(error).encode(), outcome="bad_request")
        return Result(
            status=200,
            body=body,
            outcome="success" if outcome == "success" else "error",
            function_error=outcome != "success",
            log_tail=reply.get("tail"),
            duration_s=duration,
        )

    async def _timed_out(
        self, slot: Slot, worker: WorkerProcess, invocation: Invocation, started: float
    ) -> Result:
        worker.kill()
        await worker.reap()
        duration = time.perf_counter() - started
        request_id = invocation.request_id
        timeout = self._settings.timeout_seconds
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        _log(f"{stamp}Z {request_id} Task timed out after {timeout:.2f} seconds")
        self._log_end(request_id, duration, status="timeout")
        self.start_slot(slot)  # a fresh environment for the next invocation
        document = faults.timeout_document(request_id=request_id, timeout_seconds=timeout)
        return Result(
            status=200,
            body=json.dumps(document).encode(),
            outcome="timeout",
            function_error=True,
            duration_s=duration,
        )

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
        reason = reason or faults.exit_reason(code)
        _log(f"RequestId: {invocation.request_id} Error: Runtime exited with error: {reason}")
        self._log_end(invocation.request_id, duration, status="error")
        self.start_slot(slot)
        document = faults.exit_document(request_id=invocation.request_id, reason=reason)
        return Result(
            status=200,
            body=json.dumps(document).encode(),
            outcome="crash",
            function_error=True,
            duration_s=duration,
        )

    def _error_result(self, document: bytes, request_id: str) -> Result:
        # An init fault answers every invocation, each with its own request id.
        fields = json.loads(document)
        fields["requestId"] = request_id
        fields.setdefault("stackTrace", [])
        return Result(
            status=200, body=json.dumps(fields).encode(), outcome="error", function_error=True
        )

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
        for slot in self.slots:
            if slot.booting is not None:
                slot.booting.kill()
            if slot.boot is not None and not slot.boot.done():
                slot.boot.cancel()
            if slot.worker is not None:
                slot.worker.close()
                await slot.worker.reap()
                slot.worker = None


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _log(line: str) -> None:
    os.write(1, (line + "\n").encode())
