"""Starting, waiting for and stopping the harness's server processes, each logging to a file.

Servers run in their own process group and die with the test process (PR_SET_PDEATHSIG), so a
killed test run leaves nothing behind; every wait has a deadline and names the log to read.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Resolved once here, not in the forked child, where loading a library could deadlock on a
# lock another thread held at fork time.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """For preexec_fn: the kernel SIGTERMs the child when the thread that started it dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def scratch_dir(kind: str) -> Path:
    """A fresh temp dir named after this process; dirs of processes that died without cleaning
    up (SIGKILLed test runs) are removed first."""
    root = Path(tempfile.gettempdir())
    prefix = f"kubelambda-{kind}-"
    for stale in root.glob(f"{prefix}*-*"):
        pid = stale.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerFailed(RuntimeError):
    """A server exited early or did not become ready by its deadline; the message has its log."""


@dataclass
class Server:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.name} log ({self.log}), last lines ---\n{tail(self.log, lines)}"

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after `grace` seconds."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=grace)
        except ProcessLookupError:
            self.popen.wait(timeout=grace)


def start(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"$ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            [str(a) for a in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    return Server(name=name, popen=popen, log=log)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    watch: Sequence[Server] = (),
    interval: float = 0.1,
) -> None:
    """Poll `condition` until it holds; fail at the deadline, or at once if a watched server
    exits, with the servers' logs in the message. Exceptions from `condition` count as 'not yet'
    (a server that is still starting refuses connections) and the last one is reported."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if condition():
                return
        except Exception as exc:  # any failure here means "not ready yet"; reported at the end
            last_error = exc
        dead = [s for s in watch if not s.alive()]
        if dead:
            logs = "\n".join(s.log_tail() for s in dead)
            codes = ", ".join(f"{s.name} code {s.popen.returncode}" for s in dead)
            raise ServerFailed(f"exited ({codes}) while waiting for {what}\n{logs}")
        if time.monotonic() >= deadline:
            logs = "\n".join(s.log_tail() for s in watch)
            raise ServerFailed(
                f"{what}: not true after {timeout:.0f} s (last error: {last_error!r})\n{logs}"
            )
        time.sleep(interval)
