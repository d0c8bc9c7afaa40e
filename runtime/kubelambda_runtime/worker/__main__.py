"""``python -m kubelambda_runtime.worker FD BOARD_FD SLOT``: one execution environment's process.

The server's pool (server/workerprocess.py) starts it with the Lambda environment variables
set; it forks its keeper (keeper.py), which ends what the environment started when the worker
exits, routes the handler's output through the log sink, then runs a ``Worker``
(environment.py) until the server closes the socket FD. A timed-out or crashed worker is
replaced by a new one, which runs init again, as on Lambda. For a custom runtime
(``provided.al2023``) it runs the code's bootstrap instead (kubelambda_runtime/custom/).
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import traceback

from kubelambda_runtime.wire import config
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.worker import keeper, logs
from kubelambda_runtime.worker.environment import Worker


def _limit_memory(memory_mb: int, *, custom_runtime: bool) -> None:
    # Address space, not resident memory: generous headroom for the interpreter's own
    # mappings, so only a handler that really allocates past its size hits it. A custom
    # runtime's bootstrap (inheriting it) gets the data limit instead: Go, Node and Java
    # reserve far more address space than they use, and would not even start under this one,
    # while reservations are not data until written to.
    limit = (memory_mb + 256) * 1024 * 1024
    kind = resource.RLIMIT_DATA if custom_runtime else resource.RLIMIT_AS
    resource.setrlimit(kind, (limit, limit))


def main(argv: list[str]) -> int:
    if len(argv) != 4 or not all(arg.isdigit() for arg in argv[1:]):
        print("usage: python -m kubelambda_runtime.worker FD BOARD_FD SLOT (started by the server)")  # noqa: T201
        return 2
    keeper.keep()
    sock = socket.socket(fileno=int(argv[1]))
    board = Board(int(argv[2]), int(argv[3]) + 1)
    settings = config.from_environment(os.environ)
    if settings.memory_rlimit:
        _limit_memory(settings.memory_mb, custom_runtime=settings.custom_runtime)
    if settings.custom_runtime:
        # Imported here: a Python function's worker never pays for the Runtime API's modules.
        from kubelambda_runtime.custom.main import run

        return run(sock=sock, board=board, slot=int(argv[3]), settings=settings)
    sink = logs.LogSink(os.dup(1))
    sys.stdout = logs.TaggedStream(sink)
    sys.stderr = logs.TaggedStream(sink)
    logs.install(sink, level=os.environ.get("AWS_LAMBDA_LOG_LEVEL"))
    worker = Worker(sock=sock, board=board, slot=int(argv[3]), settings=settings, sink=sink)
    try:
        handler = worker.init()
        if handler is not None:
            worker.serve(handler)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the server is gone; nothing left to answer
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
