"""`kubelambda gateway` learns how many replicas share each function's limits from
KUBELAMBDA_GATEWAY_REPLICAS (the chart sets it from gateway.replicas)."""

from __future__ import annotations

import pytest

from kubelambda.commands.gateway import REPLICAS_ENV, gateway_replicas


@pytest.mark.parametrize(("value", "replicas"), [(None, 1), ("", 1), ("1", 1), (" 3 ", 3)])
def test_the_replica_count_comes_from_the_environment(value: str | None, replicas: int) -> None:
    environ = {} if value is None else {REPLICAS_ENV: value}
    assert gateway_replicas(environ) == replicas


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_replica_count_that_is_not_a_whole_number_above_zero_is_refused(value: str) -> None:
    with pytest.raises(SystemExit, match=f"{REPLICAS_ENV} must be a whole number"):
        gateway_replicas({REPLICAS_ENV: value})
