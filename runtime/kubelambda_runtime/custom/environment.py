"""One execution environment of a custom runtime: a worker whose invocations run in the code's
``bootstrap``, through the Lambda Runtime API.

It is the Python worker (worker/environment.py) in every way the server sees: the same frames,
hand-over of connections, board postings, START/END/REPORT lines and log tail. Only init and
the running of an invocation differ: init starts the bootstrap and lasts until it first asks
for an invocation (``next``), as on Lambda; an invocation is handed to it (exchange.py) and
its answer is what it posts. A bootstrap that ends ends the environment with its exit status,
so the server reports it as it reports a Python worker's crash (Runtime.ExitError).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import time
from typing import Any, NoReturn

from kubelambda_runtime.custom import bootstrap, exchange, invocations
from kubelambda_runtime.custom.exchange import Exchange, Outcome
from kubelambda_runtime.custom.runtimeapi import RuntimeApi
from kubelambda_runtime.wire import config, faults, processes
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.wire.invocation import Invocation
from kubelambda_runtime.worker import logs
from kubelambda_runtime.worker.direct import Held
from kubelambda_runtime.worker.environment import Worker
from kubelambda_runtime.worker.loader import Handler

# Past the server's own limits (it kills an environment at its init timeout or invocation
# deadline): only a server that failed to would let these waits end.
INIT_WAIT_SECONDS = config.MAX_TIMEOUT_SECONDS + 10.0
INVOKE_GRACE_SECONDS = 5.0


def _no_handler(event: Any, context: Any) -> Any:
    raise AssertionError("a custom runtime's invocations run in its bootstrap")


class CustomWorker(Worker):
    def __init__(
        self,
        *,
        sock: socket.socket,
        board: Board,
        slot: int,
        settings: config.Settings,
        sink: logs.LogSink,
    ) -> None:
        super().__init__(sock=sock, board=board, slot=slot, settings=settings, sink=sink)
        self._exchange = Exchange()
        self._bootstrap: subprocess.Popen[bytes] | None = None
        self._output: bootstrap.Output | None = None
        self._invocation: Invocation | None = None

    def init(self) -> Handler | None:
        """Start the bootstrap and wait until it asks for its first invocation; tell the server
        whether init succeeded (a bootstrap that exits first ends the environment instead)."""
        started = time.perf_counter()
        task_root = self._settings.task_root
        try:
            path = bootstrap.find(task_root)
            api = RuntimeApi(self._exchange, before_post=self._write_output)
            environment = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address}
            api.start()
            self._bootstrap, output_fd = bootstrap.start(
                path, environment=environment, cwd=task_root
            )
        except faults.Fault as fault:
            self._sink.write_line(f"{fault.error_type}: {fault.message}")
            self._send({"type": "init_error"}, json.dumps(fault.document(None)).encode())
            return None
        self._output = bootstrap.Output(output_fd, self._sink.write_line)
        self._output.pump()
        bootstrap.watch_exit(self._bootstrap, self._bootstrap_ended)
        outcome = self._exchange.wait_init(deadline=time.monotonic() + INIT_WAIT_SECONDS)
        if outcome is None:
            self._init_ms = (time.perf_counter() - started) * 1000
            self._send({"type": "ready", "init_ms": self._init_ms})
            self._after_answer()
            return _no_handler
        self._write_output()
        if outcome.kind == exchange.EXITED:
            self._end_like_bootstrap()
        if outcome.kind == exchange.INIT_ERROR:
            document = invocations.error_document(outcome.body, error_type=outcome.error_type)
        else:
            document = json.dumps(
                faults.error_document(
                    message="Init did not finish in time",
                    error_type=faults.TIMED_OUT,
                    request_id=None,
                    stack=[],
                )
            ).encode()
        self._send({"type": "init_error"}, document)
        self.stop()
        return None

    # --- an invocation -------------------------------------------------------------------

    def _max_memory_kb(self) -> int:
        """The bootstrap's high-water mark, or this process's if larger: the bootstrap is the
        function, as Lambda's Max Memory Used counts it."""
        own = super()._max_memory_kb()
        running = self._bootstrap
        if running is None:
            return own
        return max(own, processes.high_water_kb([running.pid]) or 0)

    def _execute(self, handler: Handler, invocation: Invocation) -> tuple[str, bytes, str | None]:
        self._invocation = invocation  # _run hands its bytes to the bootstrap as they came
        try:
            return super()._execute(handler, invocation)
        finally:
            self._invocation = None

    def _run(self, handler: Handler, event: Any, context: Any) -> tuple[str, bytes]:
        invocation = self._invocation
        if invocation is None:  # only _execute calls _run
            raise AssertionError("no invocation to run")
        now = time.time()
        deadline_ms = invocation.deadline(timeout_seconds=self._settings.timeout_seconds, now=now)
        delivery = invocations.delivery(
            invocation, deadline_ms=deadline_ms, function_arn=self._settings.function_arn
        )
        wait = max(deadline_ms / 1000 - now, 0.0) + INVOKE_GRACE_SECONDS
        outcome = self._exchange.invoke(delivery, deadline=time.monotonic() + wait)
        return self._result(outcome, invocation.request_id)

    def _result(self, outcome: Outcome, request_id: str) -> tuple[str, bytes]:
        if outcome.kind == exchange.RESPONSE:
            return "success", outcome.body
        if outcome.kind == exchange.ERROR:
            return "error", invocations.error_document(outcome.body, error_type=outcome.error_type)
        if outcome.kind == exchange.TOO_LARGE:
            # Lambda's own answer, as the Python worker gives it (worker/environment.py).
            size_error = {
                "errorMessage": (
                    "Response payload size exceeded maximum allowed payload size "
                    f"({config.MAX_RESPONSE_BYTES} bytes)."
                ),
                "errorType": "Function.ResponseSizeTooLarge",
            }
            return "error", json.dumps(size_error).encode()
        if outcome.kind == exchange.EXITED:
            self._write_output()
            self._end_like_bootstrap()
        timeout = self._settings.timeout_seconds
        document = faults.timeout_document(request_id=request_id, timeout_seconds=timeout)
        return "error", json.dumps(document).encode()

    # Both ways an invocation is answered: in a frame, or on a connection the worker holds.
    # Once the answer is out, a bootstrap that ended meanwhile ends the environment.

    def _reply(self, handler: Handler, header: dict[str, Any], body: bytes) -> None:
        super()._reply(handler, header, body)
        self._after_answer()

    def _answer(
        self, handler: Handler, held: Held, invocation: Invocation, *, keep_alive: bool
    ) -> None:
        super()._answer(handler, held, invocation, keep_alive=keep_alive)
        self._after_answer()

    # --- the bootstrap's end -------------------------------------------------------------

    def _after_answer(self) -> None:
        if self._exchange.done() is not None:
            self._write_output()
            self._end_like_bootstrap()

    def _bootstrap_ended(self, code: int) -> None:
        """On the bootstrap's exit watch: an idle environment ends now (holding the exchange,
        so that no invocation begins); a busy one ends once its answer is out."""
        with self._exchange.ending:
            if not self._exchange.exited(code):
                self._write_output()
                self._end_like_bootstrap()

    def _write_output(self) -> None:
        if self._output is not None:
            self._output.drain()

    def _end_like_bootstrap(self) -> NoReturn:
        """End the worker as the bootstrap ended (its status, or its signal), so the server
        words the environment's end as Lambda words a runtime's ("Runtime exited with error:
        exit status 3", "signal: killed"). The keeper ends what is left."""
        code = self._exchange.exit_code
        if code is None or code >= 0:
            os._exit(code or 0)
        signum = -code
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the bootstrap's core is the one
        if signal.getsignal(signum) == signal.SIG_DFL:
            os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal this process cannot die of the same way

    def stop(self) -> None:
        """End the bootstrap (the worker is done with the environment)."""
        if self._bootstrap is not None and self._bootstrap.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._bootstrap.kill()
