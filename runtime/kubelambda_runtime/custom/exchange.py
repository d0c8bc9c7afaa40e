"""Where a custom runtime's worker and its bootstrap meet: the worker puts an invocation here and
waits for what the bootstrap posts about it; the Runtime API (runtimeapi.py) hands the
invocation to the bootstrap's ``next`` and brings back its ``response``, ``error`` or
``init/error``. The bootstrap's end (bootstrap.py) is reported here too.

One invocation at a time, as in a Lambda execution environment. The worker's side runs on the
worker's main thread; the bootstrap's on the Runtime API's threads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Final

RESPONSE: Final = "response"
ERROR: Final = "error"
INIT_ERROR: Final = "init_error"
EXITED: Final = "exited"
EXPIRED: Final = "expired"
TOO_LARGE: Final = "too_large"


@dataclass(frozen=True)
class Delivery:
    """An invocation as ``/runtime/invocation/next`` answers it: the event and its headers."""

    request_id: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Outcome:
    """What became of an init or an invocation: the bootstrap's post (its body, and the
    ``Lambda-Runtime-Function-Error-Type`` it gave), its exit, or the wait's end."""

    kind: str
    body: bytes = b""
    error_type: str = ""


class ApiError(Exception):
    """A Runtime API request the environment's state refuses; the status and the body Lambda
    answers it with (the emulator's rapi/rendering)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _invalid_request_id() -> ApiError:
    return ApiError(400, "InvalidRequestID", "Invalid request ID")


def _invalid_transition(now: str, wanted: str) -> ApiError:
    return ApiError(
        403, "InvalidStateTransition", f"State transition from {now} to {wanted} failed"
    )


class Exchange:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._initialized = False  # the bootstrap asked for its first invocation
        self._init_error: Outcome | None = None
        self._pending: Delivery | None = None  # given by the worker, not yet taken by next
        self._current: str | None = None  # taken by next, not yet answered
        self._outcome: Outcome | None = None
        self._busy = False  # the worker waits here, or is still answering what it got
        self.exit_code: int | None = None  # the bootstrap's, once it has ended

    # --- the bootstrap's side (Runtime API threads) ---------------------------------------

    def next(self) -> Delivery:
        """The next invocation, once the worker gives one. Blocks without a deadline, as
        Lambda's ``next`` does: the environment's lifetime bounds it (its thread dies with
        the worker)."""
        with self._changed:
            if self._current is not None:
                raise _invalid_transition("Invoking", "Ready")
            if self._init_error is not None:
                raise _invalid_transition("InitError", "Ready")
            self._initialized = True
            self._changed.notify_all()
            while self._pending is None:
                self._changed.wait()
            delivery, self._pending = self._pending, None
            self._current = delivery.request_id
            return delivery

    def respond(self, request_id: str, body: bytes) -> None:
        self._post(request_id, Outcome(RESPONSE, body))

    def fail(self, request_id: str, body: bytes, *, error_type: str) -> None:
        self._post(request_id, Outcome(ERROR, body, error_type))

    def too_large(self, request_id: str) -> None:
        """The bootstrap's response was over Lambda's limit (it is not read)."""
        self._post(request_id, Outcome(TOO_LARGE))

    def _post(self, request_id: str, outcome: Outcome) -> None:
        with self._changed:
            if request_id != self._current:
                raise _invalid_request_id()
            self._current = None
            self._outcome = outcome
            self._changed.notify_all()

    def init_failed(self, body: bytes, *, error_type: str) -> None:
        with self._changed:
            if self._initialized:
                raise _invalid_transition("Ready", "InitError")
            if self._init_error is None:
                self._init_error = Outcome(INIT_ERROR, body, error_type)
            self._changed.notify_all()

    def exited(self, code: int) -> bool:
        """The bootstrap ended with ``code`` (negative: the signal). True when the worker is
        waiting or answering, and will end the environment itself after that; False when it
        is idle: then the caller ends it, while holding ``ending`` so no invocation begins."""
        with self._changed:
            self.exit_code = code
            self._changed.notify_all()
            return self._busy

    @property
    def ending(self) -> threading.Condition:
        """The lock the worker's side takes; held, no invocation begins."""
        return self._changed

    # --- the worker's side ---------------------------------------------------------------

    def wait_init(self, *, deadline: float) -> Outcome | None:
        """None once the bootstrap asked for its first invocation; else why it did not (its
        init error, its exit, or the ``deadline``, time.monotonic()). The worker is busy
        until ``done``."""
        with self._changed:
            self._busy = True
            while not self._initialized:
                if self._init_error is not None:
                    return self._init_error
                if self.exit_code is not None:
                    return Outcome(EXITED)
                left = deadline - time.monotonic()
                if left <= 0:
                    return Outcome(EXPIRED)
                self._changed.wait(left)
            return None

    def invoke(self, delivery: Delivery, *, deadline: float) -> Outcome:
        """Give the bootstrap an invocation and wait for what it posts about it (which counts
        even when the bootstrap ended right after), its exit, or ``deadline``
        (time.monotonic()). The worker is busy until ``done``."""
        with self._changed:
            self._busy = True
            if self.exit_code is not None:
                return Outcome(EXITED)
            self._outcome = None
            self._pending = delivery
            self._changed.notify_all()
            while True:
                outcome, code = self._state()
                if outcome is not None:
                    self._outcome = None
                    return outcome
                if code is not None:
                    return Outcome(EXITED)
                left = deadline - time.monotonic()
                if left <= 0:
                    return Outcome(EXPIRED)
                self._changed.wait(left)

    def _state(self) -> tuple[Outcome | None, int | None]:
        # Read afresh after each wait (a method, so no narrowing carries over the wait).
        return self._outcome, self.exit_code

    def done(self) -> int | None:
        """The worker answered; the bootstrap's exit code if it has ended meanwhile (then the
        worker ends the environment), else None."""
        with self._changed:
            self._busy = False
            return self.exit_code
