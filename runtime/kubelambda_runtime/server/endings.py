"""Invocations the runtime ends itself: what it logs and answers, as Lambda does, for one
stopped at its deadline or cut short by its worker's death (its START line too, when the worker
never began it), and for one that init failed for.

The pool (pool.py) takes the error documents for invocations it sent in frames; for a worker
that held connections (handover.py) and was stopped by the deadline watch (watch.py) or
died, ``answer_for`` answers on the connections themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kubelambda_runtime.server.handover import HandOver
from kubelambda_runtime.server.slot import Lent, Slot
from kubelambda_runtime.server.workerprocess import WorkerProcess
from kubelambda_runtime.wire import board as board_states
from kubelambda_runtime.wire import config, faults, loglines
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.wire.http1 import encode_response
from kubelambda_runtime.wire.invocation import answer


class Endings:
    def __init__(
        self,
        settings: config.Settings,
        *,
        board: Board,
        handover: HandOver,
        count: Callable[[str, float], None],
        restart: Callable[[Slot], object],
    ) -> None:
        self._settings = settings
        self._board = board
        self._handover = handover
        self._count = count  # the outcome, and the invocation's duration
        self._restart = restart  # a fresh environment in the slot

    async def answer_for(self, slot: Slot, worker: WorkerProcess, *, timed_out: bool) -> None:
        """After a worker holding connections was stopped or died: answer the invocation it
        was running, and one it was handed but never began (as Lambda would), give the
        connections back to the server, and start a fresh environment."""
        code = await worker.reap()
        posting = self._board.posting(slot.index)  # final: its writer is gone
        lent = self._handover.take_back(slot)
        ended = "timeout" if timed_out else "crash"
        reason = worker.exit_reason() or faults.exit_reason(code)
        began_last = bool(lent) and self._board.begun(slot.index) != lent[-1].begun_at
        # The worker's last invocation ran on the last connection if it began the
        # invocation handed with it, else on the one before.
        running_on = lent[-1] if began_last else lent[-2] if len(lent) > 1 else None
        for item in lent:
            if item is running_on and posting.state == board_states.RUNNING:
                duration = time.perf_counter() - posting.started
                self._answer_on(
                    item,
                    posting.request_id,
                    duration,
                    ended=ended,
                    reason=reason,
                    memory_mb=worker.max_memory_mb,
                )
            elif item is lent[-1] and not began_last:
                self._answer_on(
                    item,
                    item.request_id,
                    0.0,
                    ended="crash",
                    reason=reason,
                    opened=False,
                    memory_mb=worker.max_memory_mb,
                )
            else:
                # Bytes the worker read and did not answer died with it; closing tells the
                # client at once instead of leaving it waiting.
                item.connection.reclaim(close=True)
        self._restart(slot)
        slot.busy = False

    def _answer_on(
        self,
        lent: Lent,
        request_id: str,
        duration: float,
        *,
        ended: str,
        reason: str | None,
        opened: bool = True,
        memory_mb: int | None,
    ) -> None:
        if ended == "timeout":
            document = self.timed_out(request_id, duration, opened=opened, memory_mb=memory_mb)
        else:
            document = self.crashed(
                request_id, duration, reason, opened=opened, memory_mb=memory_mb
            )
        self._count(ended, duration)
        response = answer(
            request_id,
            json.dumps(document).encode(),
            function_error=True,
            billed_ms=loglines.billed_ms(duration * 1000),
        )
        lent.connection.reclaim(answer=encode_response(response, keep_alive=True))

    # --- what Lambda logs when the runtime ends an invocation ------------------------------

    def timed_out(
        self,
        request_id: str,
        duration: float,
        *,
        opened: bool = True,
        memory_mb: int | None = None,
    ) -> dict[str, Any]:
        """Log an invocation stopped at its deadline; its error document. ``opened``: its
        worker began it, and so wrote its START line. ``memory_mb``: the environment's
        memory high-water mark, REPORT's Max Memory Used (omitted when unknown)."""
        timeout = self._settings.timeout_seconds
        loglines.emit(
            *self._opening(request_id, opened),
            loglines.timed_out_line(request_id, timeout, now=time.time()),
            *self._closing(request_id, duration, memory_mb, status="timeout"),
        )
        return faults.timeout_document(request_id=request_id, timeout_seconds=timeout)

    def crashed(
        self,
        request_id: str,
        duration: float,
        reason: str | None,
        *,
        opened: bool = True,
        memory_mb: int | None = None,
    ) -> dict[str, Any]:
        """Log an invocation whose worker died; its error document."""
        # Lambda reports a runtime that ran out of memory as such in REPORT; its answer is
        # the exit error all the same.
        error_type = "Runtime.OutOfMemory" if reason == "out of memory" else faults.EXIT_ERROR
        loglines.emit(
            *self._opening(request_id, opened),
            f"RequestId: {request_id} Error: {faults.exit_error(reason)}",
            faults.EXIT_ERROR,
            *self._closing(request_id, duration, memory_mb, status="error", error_type=error_type),
        )
        return faults.exit_document(request_id=request_id, reason=reason)

    def init_failed(
        self,
        request_id: str,
        duration: float,
        document: dict[str, Any],
        *,
        memory_mb: int | None = None,
    ) -> str:
        """Log an invocation answered with an init error (``document``): START, END and a
        REPORT with the error's type, as Lambda does after an INIT_REPORT. A runtime that
        exited in init has its exit error logged in between, as the platform words it.
        Returns the lines logged (the invocation's log tail)."""
        error_type = str(document.get("errorType", ""))
        middle: list[str] = []
        if error_type == faults.EXIT_ERROR:
            message = document.get("errorMessage", "")
            middle = [f"RequestId: {request_id} Error: {message}", error_type]
        if error_type == faults.TIMED_OUT:
            closing = self._closing(request_id, duration, memory_mb, status="timeout")
        else:
            closing = self._closing(
                request_id, duration, memory_mb, status="error", error_type=error_type
            )
        return loglines.emit(*self._opening(request_id, False), *middle, *closing)

    def _opening(self, request_id: str, opened: bool) -> list[str]:
        if opened:
            return []
        return [loglines.start_line(request_id, self._settings.function_version)]

    def _closing(
        self,
        request_id: str,
        duration: float,
        memory_mb: int | None,
        *,
        status: str,
        error_type: str | None = None,
    ) -> list[str]:
        return [
            loglines.end_line(request_id),
            loglines.report_line(
                request_id=request_id,
                duration_ms=duration * 1000,
                memory_mb=self._settings.memory_mb,
                max_memory_mb=memory_mb,
                init_ms=None,
                status=status,
                error_type=error_type,
            ),
        ]
