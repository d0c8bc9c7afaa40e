"""gateway/overload.py's accept-queue rule: refused beyond 512 connections waiting, and, once the
queue went over that bound, came back within it and went over again within a second (a lasting
overflow, not one flood being taken), beyond 16 until it stayed within 16 for a second (the
defaults)."""

from __future__ import annotations

from kubelambda.gateway.overload import Overload


class _Readings:
    """The accept queue and the clock an Overload reads, set by the test."""

    def __init__(self) -> None:
        self.waiting = 0
        self.now = 100.0

    def overload(self) -> Overload:
        return Overload(
            loop_lag=lambda: 0.0, accept_queue=lambda: self.waiting, clock=lambda: self.now
        )

    def refused(self, overload: Overload, waiting: int, *, after: float = 0.0) -> bool:
        self.now += after
        self.waiting = waiting
        return overload()


def test_one_flood_is_refused_only_beyond_512_as_it_is_taken() -> None:
    readings = _Readings()
    overload = readings.overload()
    # A stall's backlog, read as the loop takes it, for longer than a second: it only shrinks.
    assert all([readings.refused(overload, n, after=0.3) for n in (2500, 1500, 700, 513)])
    assert not readings.refused(overload, 512)
    assert not readings.refused(overload, 100)
    assert not overload.shedding


def test_a_queue_over_512_again_after_coming_back_within_it_sheds_beyond_16() -> None:
    readings = _Readings()
    overload = readings.overload()
    assert readings.refused(overload, 600)
    assert not readings.refused(overload, 500, after=0.01)
    assert readings.refused(overload, 513, after=0.5)
    assert overload.shedding
    assert readings.refused(overload, 17)
    assert not readings.refused(overload, 16)


def test_shedding_ends_once_the_queue_stayed_within_16_for_a_second() -> None:
    readings = _Readings()
    overload = readings.overload()
    readings.refused(overload, 600)
    readings.refused(overload, 0)
    readings.refused(overload, 600)
    assert overload.shedding
    assert readings.refused(overload, 17, after=0.5)  # over 16: a second from now
    assert not readings.refused(overload, 10, after=0.99)
    assert overload.shedding
    assert not readings.refused(overload, 10, after=0.02)
    assert not overload.shedding
    assert not readings.refused(overload, 512)  # the bound is 512 again


def test_returns_over_512_more_than_a_second_apart_are_floods_of_their_own() -> None:
    readings = _Readings()
    overload = readings.overload()
    assert readings.refused(overload, 600)
    assert not readings.refused(overload, 0)
    assert readings.refused(overload, 600, after=1.01)
    assert not overload.shedding
    assert not readings.refused(overload, 100)
    # ...but its own return within a second is an overflow.
    assert readings.refused(overload, 600, after=0.9)
    assert overload.shedding


def test_a_loop_running_late_refuses_whatever_the_queue() -> None:
    overload = Overload(loop_lag=lambda: 1.5, accept_queue=lambda: 0)
    assert overload()
    assert not Overload(loop_lag=lambda: 0.5, accept_queue=lambda: 0)()
