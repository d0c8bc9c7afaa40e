"""The two ends of the async_events scenario: `Recorder`, an HTTP server on loopback where the
function's handler reports each invocation's request id (pods reach it through a relay on the
node's address), and `Sender`, a caller in a thread sending Event invocations at a steady
pace with boto3's standard retries, as a client of Lambda would, counting what was accepted.
The chaos scenario (tests/e2e/chaos) uses both too, with the times of each report and 202.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


class Recorder:
    """Request ids the function reported, in arrival order (a repeat is a duplicate)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._times: list[float] = []  # time.monotonic() of each report, as _ids
        self.port = 0

    def add(self, request_id: str) -> None:
        with self._lock:
            self._ids.append(request_id)
            self._times.append(time.monotonic())

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def arrivals(self) -> list[tuple[str, float]]:
        """(request id, time.monotonic() it was reported), in arrival order."""
        with self._lock:
            return list(zip(self._ids, self._times, strict=True))


@contextmanager
def recorder() -> Iterator[Recorder]:
    """A `Recorder` serving POST / with {"id": ...} on 127.0.0.1 until the block ends."""
    made = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                made.add(str(json.loads(body)["id"]))
            except (ValueError, KeyError):
                self.send_response(400)
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per invocation would bury the test's output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    made.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="recorder", daemon=True)
    thread.start()
    try:
        yield made
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def lambda_client(
    url: str, *, key: str, secret: str, retries: int = 8, read_timeout: float = 30.0
) -> Any:
    """boto3's Lambda client as a caller configures it: standard retries (503, throttles,
    connection errors), several attempts, short connection timeouts. `retries=0`: every
    answer and connection error reaches the caller as it came."""
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            retries={"max_attempts": retries, "mode": "standard"},
            connect_timeout=3,
            read_timeout=read_timeout,
        ),
    )


@dataclass
class Sender:
    """Sends `total` Event invocations ({"n": N}) in a thread, `interval` seconds apart, never
    past `allowed` (raised by the test to keep events flowing through each disruption), until
    `stop()`. An event boto3 gives up on is sent again, as a caller would, until `patience`
    runs out."""

    client: Any
    function: str
    total: int
    interval: float
    patience: float = 180.0
    allowed: int = 0
    accepted: dict[str, int] = field(default_factory=dict)  # request id -> N
    accepted_at: dict[str, float] = field(default_factory=dict)  # request id -> monotonic time
    given_up: Counter[str] = field(default_factory=Counter)  # why boto3 stopped retrying
    refused: list[int] = field(default_factory=list)  # N not accepted within patience
    retried: int = 0  # tries boto3 repeated on its own (RetryAttempts) before an answer
    error: BaseException | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _stopped: bool = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._thread.start()

    def allow(self, count: int) -> None:
        with self._changed:
            self.allowed = max(self.allowed, count)
            self._changed.notify_all()

    def stop(self) -> None:
        """Send no more events once the one being sent has its answer."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def acceptances(self) -> dict[str, float]:
        """Request id -> time.monotonic() of its 202, for the events accepted so far."""
        with self._changed:
            return dict(self.accepted_at)

    def wait_accepted(self, count: int, *, timeout: float) -> bool:
        """Wait until `count` events were accepted (or the sender ended)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: len(self.accepted) >= count or not self.running(), timeout=timeout
            )

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            for n in range(self.total):
                with self._changed:
                    self._changed.wait_for(
                        lambda n=n: n < self.allowed or self._stopped  # type: ignore[misc]
                    )
                    if self._stopped:
                        return
                request_id = self._send(n)
                with self._changed:
                    if request_id is None:
                        self.refused.append(n)
                    else:
                        self.accepted[request_id] = n
                        self.accepted_at[request_id] = time.monotonic()
                    self._changed.notify_all()
                time.sleep(self.interval)  # a pace, not a wait for a state
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc
            with self._changed:
                self._changed.notify_all()

    def _send(self, n: int) -> str | None:
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline:
            try:
                answer = self.client.invoke(
                    FunctionName=self.function,
                    InvocationType="Event",
                    Payload=json.dumps({"n": n}).encode(),
                )
            except ClientError as refusal:
                self.retried += refusal.response["ResponseMetadata"].get("RetryAttempts", 0)
                status = refusal.response["ResponseMetadata"]["HTTPStatusCode"]
                if status < 500 and status != 429:
                    raise  # refused for good (a key, a name): the scenario is set up wrong
                self.given_up[str(refusal.response["Error"]["Code"])] += 1
                continue
            except BotoCoreError as failure:
                self.given_up[type(failure).__name__] += 1
                time.sleep(1.0)  # the gateway's address answers nothing yet: a pause, then again
                continue
            self.retried += answer["ResponseMetadata"].get("RetryAttempts", 0)
            if answer["StatusCode"] == 202:
                return str(answer["ResponseMetadata"]["RequestId"])
            self.given_up[f"status {answer['StatusCode']}"] += 1
        return None
