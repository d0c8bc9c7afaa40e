"""A bounded pool of open clients kept per endpoint, so that looking at a source again does not
connect anew: the operator's probe (observe.py) keeps its NATS connections in one and its Kafka
clients in another."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ClientPool"]

K = TypeVar("K", bound=Hashable)
C = TypeVar("C")


class ClientPool(Generic[K, C]):
    """Open clients by endpoint, at most ``size`` (the least recently used is closed), and one
    opening per endpoint at a time, shared by the callers that wait for it. Callers drop a client
    whose request failed, so that the next one connects anew.

    ``size`` should be at least the number of callers at once: then a client in use is always
    among the ``size`` most recently used and is never closed under its caller.
    """

    def __init__(
        self,
        *,
        size: int,
        close: Callable[[C], Awaitable[None]],
        alive: Callable[[C], bool],
    ) -> None:
        if size < 1:
            raise ValueError(f"a pool of {size} clients holds none")
        self._size = size
        self._close = close
        self._alive = alive
        self._clients: OrderedDict[K, C] = OrderedDict()
        self._opening: dict[K, asyncio.Task[C]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._clients)

    async def get(self, key: K, open: Callable[[], Awaitable[C]]) -> C:
        client = self._clients.get(key)
        if client is not None and self._alive(client):
            self._clients.move_to_end(key)
            return client
        if client is not None:
            self.drop(key, client)
        opening = self._opening.get(key)
        if opening is None:
            opening = asyncio.ensure_future(open())
            self._opening[key] = opening
            opening.add_done_callback(lambda task: self._opened(key, task))
        # Shielded: a caller that gives up (its deadline) does not cancel the others' opening.
        return await asyncio.shield(opening)

    def _opened(self, key: K, task: asyncio.Task[C]) -> None:
        self._opening.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # the callers waiting on it got the error; one that gave up needs none
        self._clients[key] = task.result()
        while len(self._clients) > self._size:
            _, oldest = self._clients.popitem(last=False)
            self._close_later(oldest)

    def drop(self, key: K, client: C | None) -> None:
        """Stop keeping ``client`` for ``key`` (if it still is) and close it in the background:
        a caller at its deadline does not wait for the goodbye."""
        if client is not None and self._clients.get(key) is client:
            del self._clients[key]
            self._close_later(client)

    def _close_later(self, client: C) -> None:
        task = asyncio.ensure_future(self._close(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        for task in list(self._opening.values()):
            task.cancel()
        clients = list(self._clients.values())
        self._clients.clear()
        await asyncio.gather(*(self._close(client) for client in clients), *self._closing)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._opening.values(), return_exceptions=True)
