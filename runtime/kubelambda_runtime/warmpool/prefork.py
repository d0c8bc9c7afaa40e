"""The function's runtime forked ahead (``Prefork``): while the pool waits, it forks the process
that will become the runtime, which sheds at once what is the pool's, then blocks on a
socket for its order (environment, folder, readiness pipe). A specialisation then costs a
message rather than a fork of the pool and the child's first steps (lifecycle.Runtime.start).

The child is forked before the pool reads any request, so it holds nothing a request brought
(not even the overwritten bytes of a token). It keeps only its socket; on the order it becomes
the runtime exactly as ``zygote.run_runtime`` makes a fork of the pool one. A child that is
gone, or an order it cannot take, leaves the pool to fork one the usual way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Mapping

from kubelambda_runtime import __main__ as runtime
from kubelambda_runtime import forking, zygote

# The order: the function's environment (at most 256 KiB, specialization.MAX_ENV_BYTES; JSON
# escapes may double it) and its folder.
MAX_ORDER_BYTES = 1024 * 1024


class Prefork:
    """A child forked ahead, waiting for its order on ``sock``."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock: socket.socket | None = sock

    @classmethod
    def start(cls) -> Prefork:
        """Fork the child. Only while the process has no threads and no event loop."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # One message holds the order: room for the largest environment a request may give
        # (the kernel caps it at net.core.wmem_max, doubled: an order over that is refused, and
        # the pool forks at the request instead).
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_ORDER_BYTES)
            pid = os.fork()
        except BaseException:
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            forking.run_child(lambda: _child(theirs))
        theirs.close()
        return cls(pid, ours)

    def order(self, *, env: Mapping[str, str], cwd: str, ready: int) -> bool:
        """Have the child become the runtime of ``env`` in ``cwd``, announcing on ``ready`` (a
        copy goes with the order); False when it is gone or the order could not be sent (the
        caller forks one, and ``discard`` ends this one)."""
        sock = self._sock
        if sock is None:
            return False
        order = json.dumps({"env": dict(env), "cwd": cwd}).encode()
        try:
            socket.send_fds(sock, [order], [ready])
        except OSError:  # EPIPE: it died; EMSGSIZE: over the socket's buffer
            return False
        self._sock = None
        sock.close()
        return True

    def discard(self) -> None:
        """Not wanted (a new process is started instead, or the pool ends): kill the child; the
        pool reaps it with its other children."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def warm() -> None:
    """What a forked runtime does first, done before the request (by the pool, and again by the
    child forked ahead, to copy the pages it writes): it reads its readiness descriptor with
    argparse, whose first parse in a process took 2-3 ms of a specialisation."""
    runtime.parse(["--ready-fd", "0"], {"_HANDLER": "warm.up"})


def _child(sock: socket.socket) -> int:
    """The child: shed the pool's descriptors and signal handlers, warm up, wait for the order
    (or the pool's end of the socket closing: then exit), and become the runtime."""
    forking.close_descriptors(keep=(sock.fileno(),))
    forking.reset_signals()
    # Until its order the child belongs to the pool: Ctrl-C at a terminal is the pool's to
    # act on, and the pool kills this child when it no longer wants it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm()
    try:
        data, fds, flags, _ = socket.recv_fds(sock, MAX_ORDER_BYTES, 1)
    except OSError:
        return 1
    truncated = flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
    if not data or len(fds) != 1 or truncated:
        return 0  # the pool closed its end: not wanted
    sock.close()
    order = json.loads(data)
    env = {str(name): str(value) for name, value in order["env"].items()}
    return zygote.run_runtime(env=env, cwd=str(order["cwd"]), args=[], ready=fds[0])
