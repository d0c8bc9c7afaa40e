"""The pool process's second step (``serve``): ``python -I -u -m kubelambda_runtime.warmpool FD``,
which the first (handoff.py) starts in its place.

It imports what a runtime and its workers import (the zygote's PRELOAD, and /metrics'), listens
on the pool port and answers /healthz and one specialise request: it writes the function's
files and sends their folder and environment to the child it forked while it waited (prefork.py),
which becomes the runtime as local mode's zygote makes one (``zygote.run_runtime``); it forks one
at the request when that child is gone, or starts a new process when the environment changes what
only a new process applies (lifecycle.py). Then it reports the runtime's health, passes
SIGTERM on, and ends after it. Single-threaded, no event loop (so forking is safe): one select
over the listening socket, its connections, the runtime's readiness pipe and the signal wake-up
pipe.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any, NamedTuple, TextIO

from kubelambda_runtime import zygote
from kubelambda_runtime.warmpool import exchange, prefork, settings, specialization
from kubelambda_runtime.warmpool.handoff import Handoff
from kubelambda_runtime.warmpool.lifecycle import Runtime, init_error
from kubelambda_runtime.wire import processes

STARTING, WAITING, SPECIALIZING, SPECIALIZED = "starting", "waiting", "specializing", "specialized"
FAILED, EXITED = "failed", "exited"
HEALTH_PATH = "/healthz"
SPECIALIZE_PATH = "/_kubelambda/specialize"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_CONNECTIONS = 64  # more at once are closed at once
REQUEST_SECONDS = 10.0  # for a caller to send its whole request
# What the runtime and its workers import late, beyond the zygote's: /metrics (a pod is
# scraped), an invocation's client context, and how the pool reads an init error.
PRELOAD = (*zygote.PRELOAD, "prometheus_client", "prometheus_client.core", "base64", "http.client")


def _say(line: str, *, stream: TextIO | None = None) -> None:
    """A line of the pod's log (the runtime's own lines go there too)."""
    (stream or sys.stdout).write(f"kubelambda pool: {line}\n")


def serve(handoff: Handoff) -> int:
    """Listen, import, and run the pool until it ends; its exit status."""
    own = settings.from_environment(handoff.env)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            own.host, own.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        _say(f"cannot listen on {own.host}:{own.port}: {exc}", stream=sys.stderr)
        return 1
    listener.setblocking(False)
    for name in PRELOAD:
        importlib.import_module(name)
    prefork.warm()  # for a runtime forked at the request too, if the one forked ahead is gone
    return Pool(own, env=handoff.env, token_sha256=handoff.token_sha256, listener=listener).run()


class Connection(NamedTuple):
    sock: socket.socket
    exchange: exchange.Exchange
    deadline: float


class Pool:
    """The pool's loop and its one runtime."""

    def __init__(
        self,
        own: settings.PoolSettings,
        *,
        env: dict[str, str],
        token_sha256: bytes,
        listener: socket.socket,
    ) -> None:
        self._own = own
        self._env = env  # the pool's environment: the serving variables a runtime inherits
        self._token_sha256 = token_sha256
        self._listener = listener
        self._connections: dict[int, Connection] = {}
        self._pending: socket.socket | None = None  # the specialise request being served
        self._runtime: Runtime | None = None
        self._prefork: prefork.Prefork | None = None  # the runtime forked ahead, while waiting
        self._function = ""
        self._error: dict[str, Any] | None = None  # why it failed
        self._init_deadline: float | None = None
        self._started = 0.0  # when the specialise request was taken
        self._stop_asked = False
        self._stopping = False
        self._wake = -1
        self.state = STARTING
        self.exit_status = 0

    def run(self) -> int:
        # Forked first, before any request is read and before this process's own handlers.
        try:
            self._prefork = prefork.Prefork.start()
        except OSError as exc:
            _say(f"cannot fork ahead ({exc}): a specialisation forks at its request")
        processes.become_child_subreaper()
        self._wake, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wake-up fd wakes select
        self.state = WAITING
        _say(f"waiting on port {self._own.port} (pid {os.getpid()})")
        while not (self._stopping and self._runtime is None):
            self._turn()
        if self._pending is not None:
            self._answer(self._pending, 503, {"error": "the pool pod is stopping"})
        if self._prefork is not None:
            self._prefork.discard()
        return self.exit_status

    def _on_stop(self, signum: int, frame: object) -> None:
        self._stop_asked = True  # acted on by the loop (the wake-up fd wakes it)

    def _turn(self) -> None:
        """Wait for something to happen (at most until the next deadline), and handle it."""
        watched = [self._listener.fileno(), self._wake, *self._connections]
        if self._runtime is not None and self._runtime.ready_fd >= 0:
            watched.append(self._runtime.ready_fd)
        deadlines = [c.deadline for c in self._connections.values()]
        if self._init_deadline is not None:
            deadlines.append(self._init_deadline)
        if self._runtime is not None and self._runtime.kill_at is not None:
            deadlines.append(self._runtime.kill_at)
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        readable, _, _ = select.select(watched, [], [], timeout)
        if self._wake in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake, 512):
                    pass
            self._reap()
        if self._stop_asked and not self._stopping:
            self._stopping = True
            if self._runtime is not None:
                self._runtime.stop()  # it drains as in a function pod, then ends
        if self._listener.fileno() in readable:
            self._accept()
        for fd in readable:
            if fd in self._connections:
                self._read(fd)
        if self._runtime is not None and self._runtime.ready_fd in readable:
            line = self._runtime.read_ready()
            if line is not None:
                self._on_ready(line)
        self._expire(time.monotonic())

    # connections

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors: the caller sees its connection closed
                return
            if len(self._connections) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            deadline = time.monotonic() + REQUEST_SECONDS
            reading = exchange.Exchange(max_body=MAX_BODY_BYTES, admit=self._admit)
            self._connections[sock.fileno()] = Connection(sock, reading, deadline)

    def _read(self, fd: int) -> None:
        connection = self._connections[fd]
        try:
            request = connection.exchange.receive(connection.sock)
        except (BlockingIOError, InterruptedError):
            return
        except specialization.Refused as exc:
            del self._connections[fd]
            self._answer(connection.sock, exc.status, exc.document())
            return
        except OSError:  # ConnectionError too: the caller left
            del self._connections[fd]
            connection.sock.close()
            return
        if request is not None:
            del self._connections[fd]
            self._handle(connection.sock, request)

    def _answer(self, sock: socket.socket, status: int, document: dict[str, Any]) -> None:
        with contextlib.suppress(OSError), sock:
            sock.settimeout(1.0)  # a small answer; a caller that reads nothing loses it
            sock.sendall(exchange.answer(status, document))

    def _expire(self, now: float) -> None:
        for fd, connection in list(self._connections.items()):
            if connection.deadline <= now:
                del self._connections[fd]
                self._answer(connection.sock, 400, {"error": "the request took too long to send"})
        if self._init_deadline is not None and self._init_deadline <= now:
            self._fail(504, {"error": f"not ready within {self._own.init_timeout:g} s"})
            if self._runtime is not None:
                self._runtime.kill()
        kill_at = self._runtime.kill_at if self._runtime is not None else None
        if self._runtime is not None and kill_at is not None and kill_at <= now:
            self._runtime.kill()

    # requests

    def _handle(self, sock: socket.socket, request: exchange.Request) -> None:
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            self._answer(sock, *self._health())
        elif request.path == SPECIALIZE_PATH and request.method == "POST":
            self._specialize(sock, request)
        elif request.path in (HEALTH_PATH, SPECIALIZE_PATH):
            self._answer(sock, 405, {"error": f"{request.method} is not allowed on {request.path}"})
        else:
            message = f"no such path {request.path!r}: {HEALTH_PATH} or POST {SPECIALIZE_PATH}"
            self._answer(sock, 404, {"error": message})

    def _health(self) -> tuple[int, dict[str, Any]]:
        document: dict[str, Any] = {"state": self.state}
        if self._function:
            document["function"] = self._function
        if self._error is not None:
            document["error"] = self._error
        return (200 if self.state in (WAITING, SPECIALIZED) else 503), document

    def _admit(self, method: str, path: str, bearer_sha256: bytes | None) -> None:
        """Let in the body of a specialise request this pod can take, and no other."""
        if (method, path) != ("POST", SPECIALIZE_PATH):
            raise specialization.Refused(400, f"{method} {path} takes no body")
        presented = bearer_sha256 or b""
        if not hmac.compare_digest(presented, self._token_sha256):
            what = "a wrong bearer token" if presented else "no bearer token"
            raise specialization.Refused(401, f"the request has {what}")
        if self.state != WAITING or self._stopping:
            state = "stopping" if self._stopping else self.state
            message = f"this pool pod is {state}: it takes one specialisation, once"
            raise specialization.Refused(409, message, state=state)

    def _specialize(self, sock: socket.socket, request: exchange.Request) -> None:
        started = time.monotonic()
        try:
            self._admit(request.method, request.path, request.bearer_sha256)
            wanted = specialization.parse(request.body, own=self._env)
            task_root = specialization.write_task_root(wanted.files, parent=self._own.task_dir)
        except specialization.Refused as exc:
            self._answer(sock, exc.status, exc.document())
            return
        except OSError as exc:
            self._answer(sock, 500, {"error": f"cannot write the function's files: {exc}"})
            return
        env = {**wanted.env, specialization.TASK_ROOT_VARIABLE: task_root}
        ahead, self._prefork = self._prefork, None
        try:
            self._runtime = Runtime.start(
                env=env, cwd=task_root, settings=wanted.settings, prefork=ahead
            )
        except OSError as exc:
            if ahead is not None:
                ahead.discard()
            self._answer(sock, 500, {"error": f"cannot start the runtime: {exc}"})
            return
        self.state, self._function, self._pending = SPECIALIZING, wanted.function, sock
        self._init_deadline = started + self._own.init_timeout
        self._started = started

    def _on_ready(self, line: str) -> None:
        """The runtime's readiness line: ``ready`` or ``init_failed``."""
        runtime = self._runtime
        if self.state != SPECIALIZING or runtime is None:
            return
        if line == "ready":
            init_ms = round((time.monotonic() - self._started) * 1000, 3)
            self.state, self._init_deadline = SPECIALIZED, None
            self._reply(200, {"function": self._function, "initMs": init_ms, "start": runtime.how})
            _say(f"{self._function} ready in {init_ms} ms ({runtime.how})")  # after: not waited on
        else:
            self._fail(422, init_error(runtime.settings))
            runtime.stop()

    def _fail(self, status: int, error: dict[str, Any]) -> None:
        """The specialisation failed: answer it; the pod stays failed (it is deleted)."""
        self.state, self._error, self._init_deadline = FAILED, error, None
        _say(f"{self._function} failed ({status}): {json.dumps(error)}")
        self._reply(status, error)

    def _reply(self, status: int, document: dict[str, Any]) -> None:
        if self._pending is not None:
            self._answer(self._pending, status, document)
            self._pending = None

    # the runtime's end

    def _reap(self) -> None:
        """Reap every child that ended; the runtime's end changes the state."""
        for pid, code in zygote.reap_ended():
            runtime = self._runtime
            if runtime is not None and pid == runtime.pid:
                runtime.ended(code)
                self._runtime = None
                self._on_exit(code)
            elif self._prefork is not None and pid == self._prefork.pid:
                _say(f"the runtime forked ahead ended ({code}): a specialisation forks one")
                self._prefork.discard()
                self._prefork = None
        if self._runtime is None:
            # What a dead runtime left (its workers' keepers, what they started) goes with it;
            # the child forked ahead stays.
            table = processes.snapshot()
            ahead = self._prefork.pid if self._prefork is not None else None
            processes.kill_all([p for p in processes.descendants(table, os.getpid()) if p != ahead])

    def _on_exit(self, code: int) -> None:
        self.exit_status = code if code >= 0 else 128 - code
        how = f"exit status {code}" if code >= 0 else f"signal {-code}"
        if self.state == SPECIALIZING and self._stopping:
            self._fail(503, {"error": "the pool pod was stopped while it specialised"})
        elif self.state == SPECIALIZING:
            message = f"Runtime exited with error: {how}"
            self._fail(422, {"errorType": "Runtime.ExitError", "errorMessage": message})
        elif self.state == SPECIALIZED:
            self.state = EXITED
            _say(f"the runtime of {self._function} ended ({how})")
