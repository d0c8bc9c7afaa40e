"""One local instance of a function: a runtime process on a loopback port, until it is stopped.

The local platform starts and stops these. An instance's runtime is forked by the runtime's
zygote (zygote.py) when there is one and it agrees, else started as a new Python process;
either way with the same environment, working folder and session of its own. Each waits
(with a deadline) for its runtime's readiness signal (``--ready-fd``: "ready" or
"init_failed", as /healthz would answer) and relays the runtime's log lines, prefixed with the
function's name, to local mode's output. Each has a temporary folder of its own (its TMPDIR, as
Lambda gives each environment its own /tmp), removed once its runtime has ended: stopped,
crashed, or stopped with local mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from kubelambda.platforms.local.relay import pipe_reader, relay_lines
from kubelambda.platforms.local.zygote import Zygote, ZygoteRefused, ZygoteUnavailable

READY_TIMEOUT_SECONDS = 30.0
# How long a runtime that closed its readiness pipe without a word is given to exit.
EXIT_AFTER_SILENCE_SECONDS = 5.0


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def instance_environment(
    environment: Mapping[str, str], *, host: str, port: int, scratch: str
) -> dict[str, str]:
    """A runtime's whole environment: local mode's own, the function's, where to listen."""
    return {
        **os.environ,
        **environment,
        "KUBELAMBDA_HOST": host,
        "KUBELAMBDA_PORT": str(port),
        # Lambda gives each environment its own /tmp; locally, its own TMPDIR.
        "TMPDIR": scratch,
    }


class RuntimeProcess(Protocol):
    """An instance's runtime process: forked by the zygote, or a new one."""

    @property
    def pid(self) -> int: ...

    @property
    def exited(self) -> bool: ...

    async def wait(self) -> int | None: ...

    def send_signal(self, signum: int) -> None: ...

    def kill(self) -> None: ...


class SpawnedRuntime:
    """A runtime started as a new Python process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        self._process = process
        self.pid = process.pid
        self.stdout: asyncio.StreamReader = process.stdout

    @property
    def exited(self) -> bool:
        return self._process.returncode is not None

    async def wait(self) -> int | None:
        return await self._process.wait()

    def send_signal(self, signum: int) -> None:
        self._process.send_signal(signum)

    def kill(self) -> None:
        self._process.kill()


async def _spawn(env: Mapping[str, str], *, cwd: Path, ready: int) -> SpawnedRuntime:
    """A runtime as a new Python process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        # Isolated: the runtime's own imports never come from the code folder (the
        # process's cwd) or a PYTHONPATH in the function's env; -u: logs unbuffered.
        "-I",
        "-u",
        "-m",
        "kubelambda_runtime",
        "--ready-fd",
        str(ready),
        env=dict(env),
        cwd=str(cwd),
        pass_fds=(ready,),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # as the zygote's: its own session and process group
    )
    return SpawnedRuntime(process)


async def _fork(
    zygote: Zygote, env: Mapping[str, str], *, cwd: Path, ready: int
) -> tuple[RuntimeProcess, int]:
    """A runtime forked by the zygote; it and the read end of its output pipe."""
    out, into = os.pipe()
    try:
        forked = await zygote.spawn(environment=env, cwd=str(cwd), stdout=into, ready=ready)
    except BaseException:
        os.close(out)
        raise
    finally:
        os.close(into)
    return forked, out


class LocalInstance:
    """A runtime process serving one function on 127.0.0.1."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        process: RuntimeProcess,
        scratch: str | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.process = process
        self.id = f"{name}-{process.pid}"
        self.started_at = time.monotonic()
        self.forked = False  # by the zygote
        self.refusal: str | None = None  # why the zygote would not fork it
        self._ready: asyncio.StreamReader | None = None
        self._closers: list[asyncio.BaseTransport] = []
        self._relay: asyncio.Task[None] | None = None
        self._scratch = scratch  # its temporary folder, until removed

    @classmethod
    async def start(
        cls,
        *,
        name: str,
        code_dir: Path,
        environment: Mapping[str, str],
        host: str,
        output: Callable[[str], None],
        zygote: Zygote | None = None,
    ) -> LocalInstance:
        """Start the runtime: forked by ``zygote`` if given and it can, else a new process.
        OSError when neither can start (no descriptors left, say)."""
        port = free_port(host)
        scratch = tempfile.mkdtemp(prefix=f"kubelambda-{name}-")
        env = instance_environment(environment, host=host, port=port, scratch=scratch)
        try:
            ready_out, ready_in = os.pipe()
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        refusal = None
        process: RuntimeProcess | None = None
        stdout: asyncio.StreamReader | int = -1
        try:
            if zygote is not None:
                try:
                    process, stdout = await _fork(zygote, env, cwd=code_dir, ready=ready_in)
                except ZygoteRefused as exc:
                    refusal = str(exc)
                except ZygoteUnavailable:
                    pass  # the zygote says why, once
            forked = process is not None
            if process is None:
                spawned = await _spawn(env, cwd=code_dir, ready=ready_in)
                process, stdout = spawned, spawned.stdout
        except BaseException:
            os.close(ready_out)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        finally:
            os.close(ready_in)
        instance = cls(name=name, host=host, port=port, process=process, scratch=scratch)
        instance.forked, instance.refusal = forked, refusal
        try:
            await instance._attach(ready_out, stdout, output)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            instance._remove_scratch()
            raise
        return instance

    async def _attach(
        self, ready: int, stdout: asyncio.StreamReader | int, output: Callable[[str], None]
    ) -> None:
        """Read its readiness pipe and relay its output (a stream, or a pipe's read end)."""
        self._ready, transport = await pipe_reader(ready)
        self._closers.append(transport)
        if isinstance(stdout, int):
            stdout, transport = await pipe_reader(stdout)
            self._closers.append(transport)
        prefix = f"[{self.name}] "
        self._relay = asyncio.create_task(relay_lines(stdout, output, prefix=prefix))

    async def wait_ready(self, *, within: float = READY_TIMEOUT_SECONDS) -> str:
        """Wait until the runtime says it is "ready", or "init_failed" (it answers with the
        init error, as Lambda does). Raises RuntimeError if it exits or never says."""
        assert self._ready is not None
        try:
            async with asyncio.timeout(within):
                line = await self._ready.readline()
        except TimeoutError:
            raise RuntimeError(
                f"{self.id} did not say it was ready within {within:.0f} s"
            ) from None
        status = line.decode(errors="replace").strip()
        if status in ("ready", "init_failed"):
            return status
        try:  # the pipe's end without a word: it died while starting
            async with asyncio.timeout(EXIT_AFTER_SILENCE_SECONDS):
                code = await self.process.wait()
        except TimeoutError:
            raise RuntimeError(f"{self.id} closed its readiness pipe unready") from None
        raise RuntimeError(f"{self.id} exited with {_code(code)} while starting")

    @property
    def running(self) -> bool:
        return not self.process.exited

    async def wait_exit(self) -> int | None:
        """Its exit code; None when the zygote that forked it died before it, and its status
        with it. Its temporary folder is gone once this returns."""
        code = await self.process.wait()
        self._remove_scratch()
        return code

    async def stop(self, *, grace: float) -> None:
        """SIGTERM (the runtime finishes what is in flight), SIGKILL after `grace` seconds."""
        if not self.process.exited:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        self._remove_scratch()
        if self._relay is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._relay, 1.0)
        for transport in self._closers:
            transport.close()

    def _remove_scratch(self) -> None:
        """Remove its temporary folder (once its runtime has ended, or never started)."""
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _code(code: int | None) -> str:
    return "an unknown status" if code is None else str(code)
