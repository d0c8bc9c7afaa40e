"""One execution environment: loads the handler once, then runs invocations in turn.

``worker/__main__.py`` sets the process up and runs a ``Worker``, which talks to the server
through frames on its socket (channel.py): an invocation in a frame is answered in a frame; a
connection handed over with one ("take") is served directly until it goes back (direct.py).
The worker posts each invocation on the board (wire/board.py), where the server watches
deadlines.
"""

from __future__ import annotations

import binascii
import json
import os
import resource
import socket
import sys
import time
from typing import Any

from kubelambda_runtime.wire import config, faults, framing, loglines
from kubelambda_runtime.wire.board import Board
from kubelambda_runtime.wire.http1 import encode_response
from kubelambda_runtime.wire.invocation import Invocation, answer, bad_body
from kubelambda_runtime.worker import logs
from kubelambda_runtime.worker.channel import Channel
from kubelambda_runtime.worker.context import LambdaContext, parse_client_context, parse_identity
from kubelambda_runtime.worker.direct import Held
from kubelambda_runtime.worker.loader import Handler, load_handler
from kubelambda_runtime.worker.marshal import marshal
from kubelambda_runtime.worker.traceenv import TraceVariable

MAX_BODY = config.MAX_PAYLOAD_BYTES
# How long a stopping server's worker waits for the rest of a request it began to receive.
DRAIN_SECONDS = 1.0


class Worker:
    def __init__(
        self,
        *,
        sock: socket.socket,
        board: Board,
        slot: int,
        settings: config.Settings,
        sink: logs.LogSink,
    ) -> None:
        self._sock = sock
        self._channel = Channel(sock)
        self._board = board
        self._slot = slot
        self._settings = settings
        self._sink = sink
        self._log_stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._init_ms: float | None = None
        self._billed_ms: int | None = None  # of the last invocation run
        self._trace = TraceVariable()

    def init(self) -> Handler | None:
        """Load the handler and tell the server whether init succeeded."""
        started = time.perf_counter()
        try:
            handler = load_handler(self._settings.handler, task_root=self._settings.task_root)
        except faults.Fault as fault:
            self._log_error(fault.error_type, fault.message, fault.stack)
            self._send({"type": "init_error"}, json.dumps(fault.document(None)).encode())
            return None
        except Exception as exc:  # the module's own top-level code raised
            document = faults.exception_document(exc, None)
            self._log_error(document["errorType"], document["errorMessage"], document["stackTrace"])
            self._send({"type": "init_error"}, json.dumps(document).encode())
            return None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        self._init_ms = (time.perf_counter() - started) * 1000
        self._send({"type": "ready", "init_ms": self._init_ms})
        return handler

    def serve(self, handler: Handler) -> None:
        """Run invocations until the server closes the socket: those the server sends in
        frames, and those read from a connection it handed over ("take")."""
        held: Held | None = None
        while True:
            try:
                frame = self._channel.next(held.sock if held is not None else None)
            except EOFError:
                return
            if frame is None:  # the held connection has something
                assert held is not None
                request = held.read()
                if request is not None:
                    invocation = Invocation.of(request.headers, request.body)
                    self._answer(handler, held, invocation, keep_alive=request.keep_alive)
                if held.give_back:
                    self._give_back(held)
                    held = None
                continue
            header, body, fd = frame
            kind = header.get("type")
            if kind == "invoke":
                self._reply(handler, header, body)
            elif kind == "take" and fd is not None:
                if held is not None:
                    self._give_back(held)
                    held = None
                held = Held(socket.socket(fileno=fd), header["conn"], max_body=MAX_BODY)
                invocation = framing.invocation_of(header, body)
                self._answer(handler, held, invocation, keep_alive=bool(header["keep_alive"]))
                if held.give_back:
                    self._give_back(held)
                    held = None
            elif kind == "release" and held is not None and held.conn == header["conn"]:
                if header.get("closing"):
                    self._drain(handler, held)
                self._give_back(held)
                held = None

    def _reply(self, handler: Handler, header: dict[str, Any], body: bytes) -> None:
        """An invocation the server sent in a frame: the result goes back in one."""
        outcome, payload, tail = self._execute(handler, framing.invocation_of(header, body))
        reply: dict[str, Any] = {"type": "result", "outcome": outcome}
        if outcome == "bad_request":
            reply["message"], payload = payload.decode(), b""
        else:
            reply["billed_ms"] = self._billed_ms
        if tail is not None:
            reply["tail"] = tail
        self._send(reply, payload)
        self._board.idle(self._slot)

    def _answer(
        self, handler: Handler, held: Held, invocation: Invocation, *, keep_alive: bool
    ) -> None:
        """An invocation read from a held connection: the answer goes straight to the client."""
        outcome, payload, tail = self._execute(handler, invocation)
        request_id = invocation.request_id
        if outcome == "bad_request":
            response = bad_body(request_id, payload.decode())
        else:
            response = answer(
                request_id,
                payload,
                function_error=outcome != "success",
                log_tail=tail,
                billed_ms=self._billed_ms,
            )
        sent = held.send(encode_response(response, keep_alive=keep_alive))
        self._board.idle(self._slot)
        if not (sent and keep_alive):
            held.give_back = held.hang_up = True

    def _drain(self, handler: Handler, held: Held) -> None:
        """The server is stopping: answer what already arrived on the connection (closing
        it), so a request sent just before the stop is not lost."""
        while not held.give_back and held.readable(within=DRAIN_SECONDS if held.raw else 0):
            request = held.read()
            if request is not None:
                invocation = Invocation.of(request.headers, request.body)
                self._answer(handler, held, invocation, keep_alive=False)

    def _give_back(self, held: Held) -> None:
        self._channel.forget(held.sock)
        self._send({"type": "returned", "conn": held.conn, "close": held.hang_up}, bytes(held.raw))
        held.sock.close()  # the server's own descriptor keeps the connection open

    def _execute(self, handler: Handler, invocation: Invocation) -> tuple[str, bytes, str | None]:
        """Run one invocation: (outcome, result or error document, base64 log tail)."""
        request_id = invocation.request_id
        settings = self._settings
        deadline_ms = invocation.deadline(timeout_seconds=settings.timeout_seconds, now=time.time())
        started = time.perf_counter()
        self._board.begin(
            self._slot, request_id=request_id, deadline=deadline_ms / 1000, started=started
        )
        try:
            body = invocation.body
            event = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            self._board.finish(self._slot, outcome="bad_request", duration=0.0)
            return "bad_request", f"Could not parse request body into json: {exc}".encode(), None
        context = LambdaContext(
            function_name=settings.function_name,
            function_version=settings.function_version,
            invoked_function_arn=invocation.arn or settings.function_arn,
            memory_limit_in_mb=settings.memory_mb,
            aws_request_id=request_id,
            log_group_name=settings.log_group_name,
            log_stream_name=self._log_stream,
            deadline_ms=deadline_ms,
            identity=parse_identity(invocation.identity),
            client_context=parse_client_context(invocation.client_context),
            tenant_id=invocation.tenant_id,
        )
        # As awslambdaric's update_xray_env_variable: the invocation's trace header, or none.
        self._trace.set(invocation.trace_id)
        self._sink.begin(
            request_id,
            keep_tail=invocation.tail,
            opening=loglines.start_line(request_id, settings.function_version),
        )
        outcome, payload = self._run(handler, event, context)
        duration = time.perf_counter() - started
        self._billed_ms = loglines.billed_ms(duration * 1000)  # what its REPORT line says
        self._sink.write_lines(
            loglines.end_line(request_id),
            loglines.report_line(
                request_id=request_id,
                duration_ms=duration * 1000,
                memory_mb=settings.memory_mb,
                max_memory_mb=self._max_memory_kb() // 1024,
                init_ms=self._init_ms,
            ),
        )
        self._init_ms = None  # Init Duration is reported on the first invocation only
        tail = self._sink.end()
        self._board.finish(self._slot, outcome=outcome, duration=duration)
        # base64.b64encode's own call: the C module, without the base64 module's import.
        encoded = binascii.b2a_base64(tail, newline=False).decode() if tail is not None else None
        return outcome, payload, encoded

    def _max_memory_kb(self) -> int:
        """The environment's memory high-water mark so far: this process's."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def _run(self, handler: Handler, event: Any, context: LambdaContext) -> tuple[str, bytes]:
        request_id = context.aws_request_id
        try:
            result = handler(event, context)
        except MemoryError:
            # Out of memory: this environment cannot be trusted any more. Lambda replaces it.
            self._sink.write_line(
                f"{request_id}\t[ERROR] MemoryError: the function ran out of memory"
            )
            self._send({"type": "exit", "reason": "out of memory"})
            os._exit(1)
        except Exception as exc:
            document = faults.exception_document(exc, request_id)
            self._log_error(document["errorType"], document["errorMessage"], document["stackTrace"])
            return "error", json.dumps(document).encode()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        try:
            payload = marshal(result)
        except (TypeError, ValueError, RecursionError) as exc:
            fault = faults.Fault(faults.MARSHAL_ERROR, f"Unable to marshal response: {exc}")
            self._log_error(fault.error_type, fault.message, [])
            return "error", json.dumps(fault.document(request_id)).encode()
        if len(payload) > config.MAX_RESPONSE_BYTES:
            # Lambda's own answer, word for word, and with these two fields only; the limit
            # is 6 MiB + 100 bytes (the emulator's maxPayloadSize, 6*1024*1024 + 100).
            size_error = {
                "errorMessage": (
                    "Response payload size exceeded maximum allowed payload size "
                    f"({config.MAX_RESPONSE_BYTES} bytes)."
                ),
                "errorType": "Function.ResponseSizeTooLarge",
            }
            return "error", json.dumps(size_error).encode()
        return "success", payload

    def _log_error(self, error_type: str, message: str, stack: list[str]) -> None:
        # Lambda logs an unhandled error as one record: "[ERROR] Type: message", the trace.
        sys.stdout.flush()  # a partial line printed before it goes first
        self._sink.write_line(logs.error_record(error_type, message, stack))

    def _send(self, header: dict[str, Any], body: bytes = b"") -> None:
        self._sock.sendall(framing.encode(header, body))
