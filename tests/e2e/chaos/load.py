"""The chaos scenario's steady mixed load on one Function: HTTP Trigger requests and Invoke API
RequestResponse calls (each answer kept as a `Call` with its outcome), Event invocations (the
async_events `Sender`, with boto3's retries, as a caller of Lambda sends them), bucket
uploads to MinIO, whose notifications reach the function, and messages its queue and kafka
Triggers poll (sources.py's `Producer`s). The function reports each Event's request id, each
object key and each message id to the `Recorder`; `window.py` reads all of it.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from e2e.async_events.traffic import Recorder, Sender
from e2e.chaos.sources import Producer

FUNCTION_TIMEOUT = 5.0  # the Function's timeoutSeconds
# The gateway holds a request at most its hold timeout (the chart's 30 s) while no instance is
# ready, then the function has its timeout: an answer later than this is a hung request.
CLIENT_TIMEOUT = 30.0 + FUNCTION_TIMEOUT + 10.0
CONNECT_TIMEOUT = 3.0
OK_BODY = b"ok"
# What a synchronous call came to. Failures: an answer 5xx with Retry-After, one at the
# function's deadline (504, or the function's timeout error), no connection at all (nothing
# was sent), no answer within CLIENT_TIMEOUT, anything else (a reset after sending, a 5xx
# without Retry-After, a 4xx, a wrong body).
OK, RETRY_AFTER, DEADLINE, REFUSED, HUNG, OTHER = (
    "ok",
    "5xx+Retry-After",
    "deadline",
    "refused",
    "hung",
    "other",
)
FAILURES = (RETRY_AFTER, DEADLINE, REFUSED, OTHER, HUNG)


@dataclass
class Call:
    """One synchronous request; `outcome` is None while it runs."""

    kind: str  # "http" (the HTTP Trigger) or "invoke" (Invoke API, RequestResponse)
    began: float
    ended: float | None = None
    outcome: str | None = None
    detail: str = ""

    def finish(self, outcome: str, detail: str = "") -> Call:
        self.ended = time.monotonic()
        self.outcome = outcome
        self.detail = detail
        return self


def answered(
    call: Call, *, status: int, retry_after: str | None, function_error: bool, ok_body: bool
) -> Call:
    """Classify an answer: ok, 5xx with Retry-After, the function's deadline, or other."""
    elapsed = time.monotonic() - call.began
    if status == 200 and not function_error and ok_body:
        return call.finish(OK)
    if status >= 500 and retry_after is not None:
        return call.finish(RETRY_AFTER, f"{status} Retry-After {retry_after}")
    # 504: no instance within the hold deadline, or the instance did not answer within the
    # function's timeout; a function error (HTTP Trigger: 502) is the deadline only once the
    # function's timeout has passed.
    late_error = (function_error or status == 502) and elapsed >= FUNCTION_TIMEOUT
    if status == 504 or late_error:
        return call.finish(DEADLINE, f"{status} after {elapsed:.1f} s")
    return call.finish(
        OTHER, f"{status}{' function error' if function_error else ''} after {elapsed:.1f} s"
    )


def http_call(url: str, call: Call) -> Call:
    """GET `url` (the HTTP Trigger's route on the gateway's Service); connecting and answering
    are timed apart, so a refused connection (nothing sent) is told from a reset or a hang."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "", parts.port or 80, timeout=CONNECT_TIMEOUT
    )
    try:
        try:
            connection.connect()
        except OSError as exc:
            return call.finish(REFUSED, repr(exc))
        if connection.sock is not None:  # connect() made it; the answer may take longer
            connection.sock.settimeout(CLIENT_TIMEOUT)
        try:
            connection.request("GET", parts.path)
            response = connection.getresponse()
            body = response.read()
        except TimeoutError:
            return call.finish(HUNG, f"no answer within {CLIENT_TIMEOUT:.0f} s")
        except (OSError, http.client.HTTPException) as exc:
            return call.finish(OTHER, f"after sending: {exc!r}")
        return answered(
            call,
            status=response.status,
            retry_after=response.getheader("retry-after"),
            function_error=False,
            ok_body=body == OK_BODY,
        )
    finally:
        connection.close()


def invoke_call(client: Any, function: str, call: Call) -> Call:
    """One Invoke API RequestResponse call with a client that does not retry (`lambda_client`
    with retries=0), so each answer and connection error is seen as it came."""
    try:
        answer = client.invoke(FunctionName=function, Payload=b'{"sync": true}')
        payload = answer["Payload"].read()
    except ClientError as refusal:
        meta = refusal.response["ResponseMetadata"]
        headers = {k.lower(): v for k, v in meta.get("HTTPHeaders", {}).items()}
        return answered(
            call,
            status=int(meta["HTTPStatusCode"]),
            retry_after=headers.get("retry-after"),
            function_error=False,
            ok_body=False,
        )
    except ReadTimeoutError:
        return call.finish(HUNG, f"no answer within {CLIENT_TIMEOUT:.0f} s")
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        return call.finish(REFUSED, repr(exc))
    except BotoCoreError as exc:  # a connection closed after sending, among others
        return call.finish(OTHER, repr(exc))
    try:
        ok_body = json.loads(payload).get("body") == OK_BODY.decode()
    except (ValueError, AttributeError):
        ok_body = False
    return answered(
        call,
        status=int(answer["StatusCode"]),
        retry_after=None,
        function_error=bool(answer.get("FunctionError")),
        ok_body=ok_body,
    )


@dataclass
class Pace:
    """Requests (messages) per second of each kind; a few are enough: the point is behaviour.
    A source at 0 is left out (no Kafka broker started)."""

    http: float = 2.0
    invoke: float = 2.0
    events: float = 2.0
    uploads: float = 1.0
    queue: float = 2.0  # JetStream messages for the queue Trigger
    kafka: float = 2.0  # Kafka records for the kafka Trigger


@dataclass
class Load:
    """The running load. `calls()` and `async_items()` are snapshots for window.py."""

    http_url: str
    invoke_client: Any
    function: str
    sender: Sender
    s3: Any
    bucket: str
    recorder: Recorder
    pace: Pace
    producers: list[Producer] = field(default_factory=list)
    _calls: list[Call] = field(default_factory=list)
    _uploads: dict[str, float] = field(default_factory=dict)  # key -> time MinIO stored it
    upload_errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=32, thread_name_prefix="load")
    )
    _keys: itertools.count[int] = field(default_factory=itertools.count)

    def start(self) -> None:
        self.sender.start()
        for producer in self.producers:
            producer.start()
        for name, rate, action in (
            ("http", self.pace.http, self._http),
            ("invoke", self.pace.invoke, self._invoke),
            ("uploads", self.pace.uploads, self._upload),
        ):
            thread = threading.Thread(
                target=self._paced, args=(1.0 / rate, action), name=f"pace-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """No new requests; those under way end within their timeouts."""
        self._stop.set()
        self.sender.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.sender.join(timeout=CLIENT_TIMEOUT)
        for producer in self.producers:
            producer.stop()

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def async_items(self) -> dict[str, float]:
        """Event request ids, object keys and message ids ("queue:…", "kafka:…") accepted so
        far -> when (202, MinIO's answer, the broker's acknowledgement)."""
        with self._lock:
            items = dict(self._uploads)
        items.update(self.sender.acceptances())
        for producer in self.producers:
            items.update(producer.stored())
        return items

    def not_published(self) -> dict[str, int]:
        """Messages each source's producer gave up on (never stored: not lost, refused)."""
        return {producer.source: producer.refused() for producer in self.producers}

    def _paced(self, interval: float, action: Callable[[], None]) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(action)
            due += interval
            # The pace of the load, not a wait for a state; a late tick is not made up twice.
            self._stop.wait(max(0.0, due - time.monotonic()))
            due = max(due, time.monotonic() - interval)

    def _begin(self, kind: str) -> Call:
        call = Call(kind=kind, began=time.monotonic())
        with self._lock:
            self._calls.append(call)
        return call

    def _http(self) -> None:
        call = self._begin("http")
        try:
            http_call(self.http_url, call)
        except Exception as exc:  # a failure the client did not expect is still an outcome
            call.finish(OTHER, f"unexpected: {exc!r}")

    def _invoke(self) -> None:
        call = self._begin("invoke")
        try:
            invoke_call(self.invoke_client, self.function, call)
        except Exception as exc:  # a failure the client did not expect is still an outcome
            call.finish(OTHER, f"unexpected: {exc!r}")

    def _upload(self) -> None:
        key = f"chaos/{next(self._keys):06d}.txt"
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=key.encode())
        except Exception as exc:  # MinIO on loopback refused: kept for the report
            with self._lock:
                self.upload_errors.append(f"{key}: {exc!r}")
            return
        with self._lock:
            self._uploads[key] = time.monotonic()
