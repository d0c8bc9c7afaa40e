"""Hand-over of keep-alive connections to warm workers, which answer on them directly.

When the pool (pool.py) picks a slot whose worker can take it, it hands over the connection
an invocation came on ("take"): the worker answers it and the invocations that follow on it
(worker/direct.py), and the server is out of the path until the connection comes back
("returned"), or the pool asks for it ("release"). This keeps each slot's lent connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kubelambda_runtime.server.slot import Lent, Slot
from kubelambda_runtime.wire import framing
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.wire.invocation import Invocation

if TYPE_CHECKING:
    # httpserver imports httptools, which the pool must not import before the workers are
    # spawned; pool.py imports this module.
    from kubelambda_runtime.server.httpserver import Connection


class HandOver:
    """The connections the slots' workers hold: handed over, given back, asked back."""

    def __init__(self, slots: Sequence[Slot], board: Board, *, on_lent: Callable[[], None]) -> None:
        self._slots = slots
        self._board = board
        self._on_lent = on_lent  # after each hand-over: the deadline watch looks at it
        self._next_conn = 0
        self._all_back = asyncio.Event()

    def hand_over(self, slot: Slot, invocation: Invocation, connection: Connection) -> bool:
        worker = slot.worker
        if worker is None or not slot.ready or not worker.can_hand_over():
            return False
        if not connection.lendable():
            return False
        conn = self._next_conn = self._next_conn + 1
        header = framing.invocation_header(invocation, deadline_ms=invocation.deadline_ms)
        header.update(type="take", conn=conn, keep_alive=True)
        begun = self._board.begun(slot.index)
        if not worker.hand_over(header, invocation.body, connection.lend()):
            connection.reclaim()
            return False
        # The worker gives back the one it held before taking this.
        slot.lent.append(Lent(conn, connection, invocation.request_id, begun))
        self._all_back.clear()
        self._on_lent()
        return True

    def release(self, slot: Slot) -> None:
        """Ask the slot's worker for the connection it serves back (before it is sent an
        invocation in a frame)."""
        if slot.lent and slot.worker is not None:
            slot.worker.send({"type": "release", "conn": slot.lent[-1].conn})

    def returned(self, header: dict[str, Any], unread: bytes) -> None:
        conn = int(header["conn"])
        for slot in self._slots:
            for lent in slot.lent:
                if lent.conn == conn:
                    slot.lent.remove(lent)
                    self._note_returns()
                    lent.connection.reclaim(unread, close=bool(header.get("close")))
                    return

    def take_back(self, slot: Slot) -> list[Lent]:
        """The connections the slot's worker held, now that it is gone: the caller answers
        on them or closes them."""
        lent, slot.lent = slot.lent, []
        self._note_returns()
        return lent

    def close_lent(self, slot: Slot) -> None:
        """A connection the worker was still to give back died with it: close it, so its
        client learns at once."""
        for item in self.take_back(slot):
            item.connection.reclaim(close=True)

    def _note_returns(self) -> None:
        if not any(slot.lent for slot in self._slots):
            self._all_back.set()

    async def release_all(self, *, within: float) -> None:
        """The server is stopping: every worker answers the invocation it runs and what has
        arrived on its connection after it, then gives the connection back to be closed.
        Waits for them at most ``within`` seconds."""
        for slot in self._slots:
            if slot.lent and slot.worker is not None:
                release = {"type": "release", "conn": slot.lent[-1].conn, "closing": True}
                with contextlib.suppress(ConnectionError, AssertionError):
                    slot.worker.send(release)
        if any(slot.lent for slot in self._slots):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_back.wait(), within)
