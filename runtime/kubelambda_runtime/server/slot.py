"""One execution slot of the pool: its worker process (or the fault that kept it from
starting, logged as Lambda's INIT_REPORT), and the connections lent to that worker.

The pool (pool.py) owns the slots; the hand-over (handover.py), the deadline watch
(watch.py) and the endings (endings.py) read and change them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubelambda_runtime.server.workerprocess import WorkerProcess
from kubelambda_runtime.wire import faults, loglines

if TYPE_CHECKING:  # the server's module; not imported before the workers are spawned
    from kubelambda_runtime.server.httpserver import Connection

__all__ = ["Lent", "Slot"]


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
        # The memory high-water mark (MB) of the worker whose init failed last, for the
        # REPORT of each invocation answered with its error.
        self.init_memory_mb: int | None = None

    @property
    def inited(self) -> bool:
        """Whether an init of this slot has ended, successful or not."""
        return self.init_seconds is not None or self.init_error is not None

    @property
    def ready(self) -> bool:
        return self.worker is not None and self.boot is not None and self.boot.done()

    def start(
        self, worker: WorkerProcess | None = None, *, phase: str = "init"
    ) -> asyncio.Task[bytes | None]:
        """Begin init in the background, with a worker already spawned or a new one.
        ``phase`` names it in INIT_REPORT if it fails: ``init`` for an environment's own
        start, ``invoke`` for init run again for an invocation, as Lambda names them."""
        self.worker = None
        self.booting = worker or self._spawn(self.index)
        self.boot = asyncio.get_running_loop().create_task(self._boot(self.booting, phase))
        return self.boot

    async def _boot(self, worker: WorkerProcess, phase: str) -> bytes | None:
        started = time.perf_counter()
        try:
            error = await self._await_init(worker, started)
        finally:
            self.booting = None
        if error is not None:
            _report_failed_init(error, seconds=time.perf_counter() - started, phase=phase)
        return error

    async def _await_init(self, worker: WorkerProcess, started: float) -> bytes | None:
        try:
            header, body = await asyncio.wait_for(worker.receive(), self._init_timeout)
        except (TimeoutError, ConnectionError) as exc:
            if isinstance(exc, TimeoutError):
                worker.kill()
            # A worker that died closes its socket before its keeper has ended what it
            # started and exited with its status: wait for that rather than kill it.
            reason = faults.exit_reason(await worker.reap())
            if isinstance(exc, TimeoutError):
                error_type = faults.TIMED_OUT
                message = f"Init timed out after {self._init_timeout:.2f} seconds"
            else:
                error_type, message = faults.EXIT_ERROR, faults.exit_error(reason)
            self.init_memory_mb = worker.max_memory_mb
            body = json.dumps(
                faults.error_document(
                    message=message, error_type=error_type, request_id=None, stack=[]
                )
            ).encode()
            self.init_error = body
            return body
        if header.get("type") != "ready":
            await worker.reap()
            self.init_memory_mb = worker.max_memory_mb
            self.init_error = body
            return body
        self.init_seconds = time.perf_counter() - started
        self.init_error = None
        self.worker = worker
        return None


def _report_failed_init(error: bytes, *, seconds: float, phase: str) -> None:
    """INIT_REPORT for an init that failed (its error document ``error``), after whatever the
    worker logged of it."""
    try:
        error_type = str(json.loads(error).get("errorType") or "")
    except (ValueError, AttributeError):
        error_type = ""
    if error_type == faults.TIMED_OUT:
        line = loglines.init_report_line(init_ms=seconds * 1000, phase=phase, status="timeout")
    else:
        line = loglines.init_report_line(
            init_ms=seconds * 1000,
            phase=phase,
            status="error",
            error_type=error_type or loglines.UNKNOWN_ERROR,
        )
    loglines.emit(line)
