"""One execution environment: a process that loads the handler once, then runs invocations in turn.

The server starts it as ``python -m kubelambda_runtime.worker FD`` with the Lambda
environment variables set, and talks to it through frames on the socket FD. A timed-out
or crashed worker is replaced by a new one, which runs init again, as on Lambda.
"""

from __future__ import annotations

import base64
import decimal
import json
import os
import resource
import socket
import sys
import time
import traceback
from typing import Any

from kubelambda_runtime import config, faults, framing, logs
from kubelambda_runtime.context import LambdaContext, parse_client_context, parse_identity
from kubelambda_runtime.loader import Handler, load_handler


def _json_default(value: object) -> object:
    # DynamoDB hands out Decimals; Lambda's marshaller turns them into JSON numbers.
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class Worker:
    def __init__(
        self, *, sock: socket.socket, settings: config.Settings, sink: logs.LogSink
    ) -> None:
        self._sock = sock
        self._incoming = sock.makefile("rb")
        self._settings = settings
        self._sink = sink
        self._log_stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._init_ms: float | None = None

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
        """Run invocations until the server closes the socket."""
        while True:
            try:
                header, body = framing.read_blocking(self._incoming)
            except EOFError:
                return
            self._invoke(handler, header, body)

    def _invoke(self, handler: Handler, header: dict[str, Any], body: bytes) -> None:
        request_id: str = header["id"]
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            message = f"Could not parse request body into json: {exc}"
            self._send({"type": "result", "outcome": "bad_request", "message": message})
            return
        settings = self._settings
        context = LambdaContext(
            function_name=settings.function_name,
            function_version=settings.function_version,
            invoked_function_arn=header.get("arn") or settings.function_arn,
            memory_limit_in_mb=settings.memory_mb,
            aws_request_id=request_id,
            log_group_name=settings.log_group_name,
            log_stream_name=self._log_stream,
            deadline_ms=int(header["deadline_ms"]),
            identity=parse_identity(header.get("identity")),
            client_context=parse_client_context(header.get("client_context")),
        )
        self._sink.begin(
            request_id,
            keep_tail=bool(header.get("tail")),
            opening=logs.start_line(request_id, settings.function_version),
        )
        started = time.perf_counter()
        outcome, payload = self._run(handler, event, context)
        duration_ms = (time.perf_counter() - started) * 1000
        self._sink.write_lines(
            logs.end_line(request_id),
            logs.report_line(
                request_id=request_id,
                duration_ms=duration_ms,
                memory_mb=settings.memory_mb,
                max_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                init_ms=self._init_ms,
            ),
        )
        self._init_ms = None  # Init Duration is reported on the first invocation only
        tail = self._sink.end()
        reply: dict[str, Any] = {"type": "result", "outcome": outcome, "duration_ms": duration_ms}
        if tail is not None:
            reply["tail"] = base64.b64encode(tail).decode()
        self._send(reply, payload)

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
            payload = json.dumps(result, default=_json_default).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            fault = faults.Fault(faults.MARSHAL_ERROR, f"Unable to marshal response: {exc}")
            self._log_error(fault.error_type, fault.message, [])
            return "error", json.dumps(fault.document(request_id)).encode()
        if len(payload) > config.MAX_PAYLOAD_BYTES:
            size_error = faults.error_document(
                message=(
                    f"Response payload size ({len(payload)} bytes) exceeded maximum allowed "
                    f"payload size ({config.MAX_PAYLOAD_BYTES} bytes)."
                ),
                error_type="Function.ResponseSizeTooLarge",
                request_id=request_id,
                stack=[],
            )
            return "error", json.dumps(size_error).encode()
        return "success", payload

    def _log_error(self, error_type: str, message: str, stack: list[str]) -> None:
        # Lambda logs an unhandled error as "[ERROR] Type: message" followed by the trace.
        print(f"[ERROR] {error_type}: {message}")  # noqa: T201
        if stack:
            print("Traceback (most recent call last):")  # noqa: T201
            print("".join(stack).rstrip("\n"))  # noqa: T201

    def _send(self, header: dict[str, Any], body: bytes = b"") -> None:
        self._sock.sendall(framing.encode(header, body))


def _limit_memory(memory_mb: int) -> None:
    # Address space, not resident memory: generous headroom for the interpreter's own
    # mappings, so only a handler that really allocates past its size hits it.
    limit = (memory_mb + 256) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m kubelambda_runtime.worker FD (started by the runtime server)")  # noqa: T201
        return 2
    sock = socket.socket(fileno=int(argv[1]))
    settings = config.from_environment(os.environ)
    sink = logs.LogSink(os.dup(1))
    sys.stdout = logs.TaggedStream(sink)
    sys.stderr = logs.TaggedStream(sink)
    logs.install(sink, level=os.environ.get("AWS_LAMBDA_LOG_LEVEL"))
    if settings.memory_rlimit:
        _limit_memory(settings.memory_mb)
    worker = Worker(sock=sock, settings=settings, sink=sink)
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
