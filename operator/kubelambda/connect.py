"""Opening a connection without waiting a second for a lost SYN: a second attempt starts when
the first has not connected after a short while, and whichever connects first is used.

A peer on the cluster network answers a SYN in well under a millisecond, but the first packet of
a new connection is sometimes lost (a policy engine's dropped verdict, a neighbour entry being
resolved, a full accept queue), and the kernel sends it again only after a second: a cold start
would take that second. The gateway's upstream pool, its wake-up call and the operator's call
to a pool pod connect through ``first_connection``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

__all__ = ["AGAIN_AFTER_SECONDS", "first_connection"]

T = TypeVar("T")

# Well above a connect's time on a cluster network or loopback, even on a loaded machine, and
# far below the kernel's one-second retransmission.
AGAIN_AFTER_SECONDS: Final = 0.05


async def first_connection(
    connect: Callable[[], Awaitable[T]],
    *,
    discard: Callable[[T], None],
    again_after: float = AGAIN_AFTER_SECONDS,
) -> T:
    """``connect()``, and once more if the first has not finished after ``again_after``
    seconds: at most two attempts, the first to connect wins and the other's connection, if
    it comes, goes to ``discard``. An attempt that fails before the second starts raises at
    once (a refusal is an answer); once both run, the error is raised only when both failed.
    The caller bounds the whole (``asyncio.timeout``); cancelling cancels both attempts."""
    attempts: set[asyncio.Future[T]] = {asyncio.ensure_future(connect())}
    error: BaseException | None = None
    try:
        done, attempts = await asyncio.wait(attempts, timeout=again_after)
        if not done:
            attempts.add(asyncio.ensure_future(connect()))
        while True:
            won = [attempt for attempt in done if attempt.exception() is None]
            if won:
                for extra in won[1:]:
                    discard(extra.result())
                return won[0].result()
            error = error or next(iter(done)).exception() if done else error
            if not attempts:
                assert error is not None
                raise error
            done, attempts = await asyncio.wait(attempts, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for attempt in attempts:
            attempt.cancel()
            attempt.add_done_callback(lambda late: _discard_late(late, discard))
        # A raised error's traceback holds this frame: what the frame holds must not hold the
        # error in turn (the failed attempts, the error itself), or each refused connection
        # would leave a reference cycle for the collector.
        attempts = done = set()
        error = None


def _discard_late(attempt: asyncio.Future[T], discard: Callable[[T], None]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        discard(attempt.result())
