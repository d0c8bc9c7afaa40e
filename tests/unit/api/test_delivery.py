"""Delivery.retry_delays: the first retry after backoffSeconds, then doubling."""

from __future__ import annotations

import pytest

from kubelambda.api import Delivery


@pytest.mark.parametrize(
    ("retries", "backoff", "delays"),
    [(2, 60, (60, 120)), (0, 60, ()), (1, 5, (5,))],
)
def test_retry_delays(retries: int, backoff: int, delays: tuple[int, ...]) -> None:
    assert Delivery(retries=retries, backoff_seconds=backoff).retry_delays() == delays
