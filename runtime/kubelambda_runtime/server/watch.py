"""The deadline watch: stops a worker whose invocation on a held connection is past its deadline.

A worker answering on a connection it was handed (handover.py) runs invocations the server
never sees, so the pool arms this watch on every hand-over; while any connection is lent it
reads the board (wire/board.py), and it hands a worker it stopped back to the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kubelambda_runtime.server.slot import Slot
from kubelambda_runtime.wire import board as board_states
from kubelambda_runtime.wire.board import Board

if TYPE_CHECKING:
    from kubelambda_runtime.server.workerprocess import WorkerProcess

# How often held slots are checked for invocations to watch. An invocation seen running is
# stopped right at its deadline; one with a deadline closer than this to its start (less
# than Lambda's smallest timeout) may be stopped up to this late.
WATCH_SECONDS = 0.25


class DeadlineWatch:
    def __init__(
        self,
        slots: Sequence[Slot],
        board: Board,
        *,
        stopped: Callable[[Slot, WorkerProcess], None],
    ) -> None:
        self._slots = slots
        self._board = board
        self._stopped = stopped  # a worker it killed: the pool answers for it and replaces it
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """Look after WATCH_SECONDS, unless a look is due already (after a hand-over)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WATCH_SECONDS, self._check)

    def _check(self) -> None:
        """Stop a worker whose invocation on a held connection is past its deadline. Look
        again at the earliest deadline seen, or after WATCH_SECONDS."""
        self._timer = None
        now = time.time()
        wait = WATCH_SECONDS
        for slot in self._slots:
            if not slot.lent or slot.busy or slot.worker is None:
                continue
            posting = self._board.posting(slot.index)
            if posting.state != board_states.RUNNING:
                continue
            if now < posting.deadline:
                wait = min(wait, posting.deadline - now)
                continue
            slot.busy = True
            slot.worker.kill()
            self._stopped(slot, slot.worker)
        if any(slot.lent for slot in self._slots):
            self._timer = asyncio.get_running_loop().call_later(wait, self._check)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
