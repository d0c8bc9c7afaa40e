"""A custom runtime's worker process: what ``python -m kubelambda_runtime.worker`` runs when the
settings name a custom runtime (worker/__main__.py calls ``run`` after forking its keeper).
"""

from __future__ import annotations

import os
import signal
import socket

from kubelambda_runtime.custom.environment import CustomWorker
from kubelambda_runtime.wire import config
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.worker import logs


def run(*, sock: socket.socket, board: Board, slot: int, settings: config.Settings) -> int:
    """Run one execution environment until the server closes ``sock``; the exit status."""
    # The worker ends itself with the bootstrap's signal when the bootstrap dies of one
    # (environment.py), also from a thread, where Python's own SIGINT handler could not be
    # taken away: give it the default now.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sink = logs.LogSink(os.dup(1))
    worker = CustomWorker(sock=sock, board=board, slot=slot, settings=settings, sink=sink)
    try:
        handler = worker.init()
        if handler is not None:
            worker.serve(handler)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the server is gone; nothing left to answer
    finally:
        worker.stop()
    return 0
