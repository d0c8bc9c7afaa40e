"""clock.py: the scaled clock tests and demos drive schedules with."""

from __future__ import annotations

from kubelambda.clock import FakeClock, ScaledClock


def test_scaled_clocks_started_apart_read_the_same_time() -> None:
    """An operator and its replacement, started at different moments, agree on the ticks."""
    base = FakeClock(wall=1_764_806_400.0 + 3600.0)  # an hour into a day
    first = ScaledClock(60, base)
    base.advance(600)
    second = ScaledClock(60, base)
    assert first.wall() == second.wall() == 1_764_806_400.0 + 4200.0 * 60
    base.advance(1)
    assert second.wall() - 1_764_806_400.0 == 4201.0 * 60
