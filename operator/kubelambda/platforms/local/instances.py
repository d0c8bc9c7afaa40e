"""One local instance of a function: a runtime process on a loopback port, until it is stopped.

The local platform starts and stops these; each waits (with a deadline) for its
runtime to answer /healthz and relays the runtime's log lines, prefixed with the
function's name, to local mode's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 30.0
# A runtime's output line longer than this is cut in local mode's output.
MAX_LINE_BYTES = 64 * 1024
RELAY_CHUNK_BYTES = 64 * 1024


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _health(host: str, port: int) -> str | None:
    """The runtime's /healthz status ("ready", "init_failed"...), None if it does not answer."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 2.0)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
    for status in ("ready", "init_failed", "initializing"):
        if f'"{status}"'.encode() in data:
            return status
    return None


class LocalInstance:
    """A runtime process serving one function on 127.0.0.1."""

    def __init__(self, *, name: str, host: str, port: int, process: asyncio.subprocess.Process):
        self.name = name
        self.host = host
        self.port = port
        self.process = process
        self.id = f"{name}-{process.pid}"
        self.started_at = time.monotonic()
        self._relay: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        *,
        name: str,
        code_dir: Path,
        environment: Mapping[str, str],
        host: str,
        output: Callable[[str], None],
    ) -> LocalInstance:
        port = free_port(host)
        scratch = tempfile.mkdtemp(prefix=f"kubelambda-{name}-")
        env = {
            **os.environ,
            **environment,
            "KUBELAMBDA_HOST": host,
            "KUBELAMBDA_PORT": str(port),
            # Lambda gives each environment its own /tmp; locally, its own TMPDIR.
            "TMPDIR": scratch,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                # Isolated: the runtime's own imports never come from the code folder (the
                # process's cwd) or a PYTHONPATH in the function's env; -u: logs unbuffered.
                "-I",
                "-u",
                "-m",
                "kubelambda_runtime",
                env=env,
                cwd=str(code_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        instance = cls(name=name, host=host, port=port, process=process)
        instance._relay = asyncio.create_task(instance._relay_output(output))
        return instance

    async def _relay_output(self, output: Callable[[str], None]) -> None:
        """Relay the runtime's lines; one longer than MAX_LINE_BYTES is cut (and said so)
        rather than stop the relay, which would leave the runtime blocked on a full pipe."""
        stream = self.process.stdout
        if stream is None:
            return
        pending = b""
        cutting = False  # inside a line already cut: drop bytes until its end
        while chunk := await stream.read(RELAY_CHUNK_BYTES):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not cutting:
                    output(self._line(line))
                cutting = False
            if len(pending) > MAX_LINE_BYTES and not cutting:
                output(self._line(pending[:MAX_LINE_BYTES]) + " [line cut: over 64 KiB]")
                cutting = True
            if cutting:
                pending = b""
        if pending and not cutting:
            output(self._line(pending))

    def _line(self, line: bytes) -> str:
        return f"[{self.name}] {line.decode(errors='replace').rstrip()}"

    async def wait_ready(self, *, within: float = READY_TIMEOUT_SECONDS) -> str:
        """Wait until the runtime answers: "ready", or "init_failed" (it answers with the
        init error, as Lambda does). Raises RuntimeError if it exits or never answers."""
        deadline = time.monotonic() + within
        delay = 0.002
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(
                    f"{self.id} exited with {self.process.returncode} while starting"
                )
            status = await _health(self.host, self.port)
            if status in ("ready", "init_failed"):
                return status
            # A short, growing pause: start-up takes ~150 ms and the first answer matters.
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        raise RuntimeError(f"{self.id} did not answer /healthz within {within:.0f} s")

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def wait_exit(self) -> int:
        return await self.process.wait()

    async def stop(self, *, grace: float) -> None:
        """SIGTERM (the runtime finishes what is in flight), SIGKILL after `grace` seconds."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._relay is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._relay, 1.0)
