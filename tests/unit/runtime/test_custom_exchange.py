"""custom/exchange.py: how an invocation passes between the worker and the bootstrap's Runtime
API requests, and which requests the environment's state refuses (as Lambda's emulator does)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kubelambda_runtime.custom import exchange
from kubelambda_runtime.custom.exchange import ApiError, Delivery, Exchange, Outcome

DELIVERY = Delivery(
    request_id="r1", body=b'{"a": 1}', headers=(("Lambda-Runtime-Deadline-Ms", "1"),)
)
SOON = 5.0


def in_thread(call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call`` on a thread (the Runtime API's side); its result or error lands in the dict."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    box["thread"] = thread
    return box


def later(seconds: float, call: Callable[[], Any]) -> Any:
    time.sleep(seconds)  # a bootstrap that ends while the worker waits
    return call()


def deadline(seconds: float = SOON) -> float:
    return time.monotonic() + seconds


def test_init_ends_when_the_bootstrap_first_asks_for_an_invocation() -> None:
    ex = Exchange()
    waiting = in_thread(ex.next)
    assert ex.wait_init(deadline=deadline()) is None
    assert ex.done() is None
    outcome = ex.invoke(DELIVERY, deadline=deadline(0.2))  # nobody posts: the wait ends
    assert outcome.kind == exchange.EXPIRED
    waiting["thread"].join(SOON)
    assert waiting["value"] == DELIVERY


def test_an_invocation_is_handed_to_next_and_its_response_comes_back() -> None:
    ex = Exchange()
    taken = in_thread(ex.next)
    assert ex.wait_init(deadline=deadline()) is None
    assert ex.done() is None
    # The bootstrap answers once the invocation reaches its next (before that: refused).
    poster = in_thread(lambda: retry(lambda: ex.respond("r1", b'"ok"')))
    assert ex.invoke(DELIVERY, deadline=deadline()) == Outcome(exchange.RESPONSE, b'"ok"')
    assert ex.done() is None
    taken["thread"].join(SOON)
    poster["thread"].join(SOON)
    assert taken["value"] == DELIVERY and "error" not in poster


def test_an_error_post_keeps_its_body_and_error_type() -> None:
    ex = Exchange()
    in_thread(ex.next)
    assert ex.wait_init(deadline=deadline()) is None
    poster = in_thread(lambda: retry(lambda: ex.fail("r1", b"boom", error_type="Oops")))
    outcome = ex.invoke(DELIVERY, deadline=deadline())
    poster["thread"].join(SOON)
    assert outcome == Outcome(exchange.ERROR, b"boom", "Oops")


def retry(call: Callable[[], None]) -> None:
    """Call until the exchange takes it (the invocation may not be handed out yet)."""
    end = deadline()
    while True:
        try:
            call()
            return
        except ApiError:
            if time.monotonic() > end:
                raise
            time.sleep(0.005)


@pytest.mark.parametrize(
    ("request_id", "status", "error_type"),
    [("someone-else", 400, "InvalidRequestID"), ("", 400, "InvalidRequestID")],
)
def test_a_post_for_an_invocation_not_in_flight_is_refused(
    request_id: str, status: int, error_type: str
) -> None:
    ex = Exchange()
    with pytest.raises(ApiError) as refused:
        ex.respond(request_id, b"{}")
    assert (refused.value.status, refused.value.error_type) == (status, error_type)


def test_an_answered_invocation_cannot_be_answered_again() -> None:
    ex = Exchange()
    in_thread(ex.next)
    ex.wait_init(deadline=deadline())
    in_thread(lambda: retry(lambda: ex.respond("r1", b"1")))
    assert ex.invoke(DELIVERY, deadline=deadline()).kind == exchange.RESPONSE
    with pytest.raises(ApiError) as refused:
        ex.respond("r1", b"2")
    assert refused.value.status == 400


def test_init_error_before_next_is_the_init_outcome_and_after_it_is_refused() -> None:
    ex = Exchange()
    ex.init_failed(b'{"errorType": "X"}', error_type="X")
    assert ex.wait_init(deadline=deadline()) == Outcome(
        exchange.INIT_ERROR, b'{"errorType": "X"}', "X"
    )
    with pytest.raises(ApiError) as refused:
        ex.next()
    assert refused.value.status == 403

    ready = Exchange()
    in_thread(ready.next)
    assert ready.wait_init(deadline=deadline()) is None
    with pytest.raises(ApiError) as late:
        ready.init_failed(b"{}", error_type="")
    assert (late.value.status, late.value.error_type) == (403, "InvalidStateTransition")


def test_next_while_an_invocation_is_unanswered_is_refused() -> None:
    ex = Exchange()
    first = in_thread(ex.next)
    ex.wait_init(deadline=deadline())
    assert ex.invoke(DELIVERY, deadline=deadline(0.1)).kind == exchange.EXPIRED
    first["thread"].join(SOON)
    with pytest.raises(ApiError) as refused:
        ex.next()
    assert refused.value.status == 403


def test_the_bootstraps_exit_ends_a_wait_and_says_who_ends_the_environment() -> None:
    idle = Exchange()
    assert idle.exited(0) is False  # nobody waits: the caller ends the environment
    assert idle.exit_code == 0

    initializing = Exchange()
    ender = in_thread(lambda: later(0.05, lambda: initializing.exited(2)))
    assert initializing.wait_init(deadline=deadline()) == Outcome(exchange.EXITED)
    ender["thread"].join(SOON)
    assert ender["value"] is True  # the worker was waiting: it ends the environment
    assert initializing.done() == 2

    invoking = Exchange()
    in_thread(invoking.next)
    invoking.wait_init(deadline=deadline())
    in_thread(lambda: later(0.05, lambda: invoking.exited(-9)))
    assert invoking.invoke(DELIVERY, deadline=deadline()) == Outcome(exchange.EXITED)
    assert invoking.done() == -9
