"""The function's runtime as the pool process holds it: started (``Runtime.start``), its
readiness line read, stopped or killed, and, when its init failed, the error it reports
(``init_error``). ``process.Pool`` has at most one."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from kubelambda_runtime import zygote
from kubelambda_runtime.warmpool.prefork import Prefork
from kubelambda_runtime.wire import config, processes
from kubelambda_runtime.wire.startup import startup_differences

MAX_READY_LINE = 64  # "ready" or "init_failed", and a newline
INIT_ERROR_SECONDS = 1.0  # for the runtime's own /healthz, which holds its init error
MAX_HEALTH_BYTES = 256 * 1024
# After SIGTERM the runtime drains within its timeout + 1 s; killed a second later, as the
# platform's stop (timeoutSeconds + 2) would.
STOP_MARGIN_SECONDS = 2.0
RUNTIME_COMMAND = (sys.executable, "-I", "-u", "-m", "kubelambda_runtime")


class Runtime:
    """One function's runtime: a fork of the pool (``how`` = "fork": forked ahead while the pool
    waited, or at the request) or, when its environment sets what only a new process applies, a
    new process ("exec")."""

    def __init__(self, pid: int, *, ready_fd: int, how: str, settings: config.Settings) -> None:
        self.pid = pid
        self.ready_fd = ready_fd  # -1 once read to its end
        self.how = how
        self.settings = settings
        self.kill_at: float | None = None  # once asked to stop
        self.code: int | None = None
        self._line = bytearray()

    @classmethod
    def start(
        cls,
        *,
        env: Mapping[str, str],
        cwd: str,
        settings: config.Settings,
        prefork: Prefork | None = None,
    ) -> Runtime:
        """Start it: ``prefork``'s child given its order when there is one that can take it,
        else a fork of the pool, else (the environment needs it) a new process. ``prefork`` is
        used up either way."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            if startup_differences(os.environ, env):
                if prefork is not None:
                    prefork.discard()
                process = subprocess.Popen(
                    [*RUNTIME_COMMAND, "--ready-fd", str(write_end)],
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    pass_fds=(write_end,),
                    start_new_session=True,
                )
                process.returncode = 0  # reaped by the pool's loop, never by Popen
                pid, how = process.pid, "exec"
            elif prefork is not None and prefork.order(env=env, cwd=cwd, ready=write_end):
                pid, how = prefork.pid, "fork"
            else:
                if prefork is not None:
                    prefork.discard()
                pid = zygote.fork_runtime(env=env, cwd=cwd, args=[], ready=write_end)
                how = "fork"
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)
        return cls(pid, ready_fd=read_end, how=how, settings=settings)

    def read_ready(self) -> str | None:
        """Read what the readiness pipe has: the line once whole, else None. At its end without
        a line, the runtime died while it started: its exit says the rest."""
        try:
            data = os.read(self.ready_fd, MAX_READY_LINE)
        except BlockingIOError:
            return None
        if data:
            self._line += data
        if b"\n" not in self._line and data and len(self._line) < MAX_READY_LINE:
            return None
        self._close_ready()
        line, newline, _ = self._line.partition(b"\n")
        return line.decode(errors="replace") if newline else None

    def _close_ready(self) -> None:
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1

    def stop(self) -> None:
        """SIGTERM: it drains as in a function pod; killed if not ended in its stop grace."""
        if self.code is None and self.kill_at is None:
            self.kill_at = time.monotonic() + self.settings.timeout_seconds + STOP_MARGIN_SECONDS
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL it and everything under the pool (all of it is the runtime's)."""
        self.kill_at = None
        if self.code is None:
            table = processes.snapshot()
            processes.kill_all([self.pid, *processes.descendants(table, os.getpid())])

    def ended(self, code: int) -> None:
        self.code = code
        self.kill_at = None
        self._close_ready()


def init_error(settings: config.Settings) -> dict[str, Any]:
    """The init error the runtime reports on its /healthz, in Lambda's shape (errorType,
    errorMessage, …)."""
    host = settings.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    connection = http.client.HTTPConnection(host, settings.port, timeout=INIT_ERROR_SECONDS)
    try:
        connection.request("GET", "/healthz")
        document = json.loads(connection.getresponse().read(MAX_HEALTH_BYTES))
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict) and "errorType" in error:
            return error
    except (OSError, ValueError, http.client.HTTPException):
        pass
    finally:
        connection.close()
    return {
        "errorType": "Runtime.Unknown",
        "errorMessage": "the runtime said its init failed, but its /healthz did not say how",
    }
