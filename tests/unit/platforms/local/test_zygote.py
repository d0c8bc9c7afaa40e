"""When local mode starts the runtime's zygote again after it died (platforms/local/zygote.py),
and the environment an instance's runtime gets either way (instances.py)."""

from __future__ import annotations

import os

import pytest

from kubelambda.platforms.local.instances import instance_environment
from kubelambda.platforms.local.zygote import MAX_RESTART_SECONDS, STABLE_SECONDS, restart_delay


@pytest.mark.parametrize(
    ("previous", "lived", "first", "delay"),
    [
        (None, 0.1, 1.0, 1.0),  # the first death: the first delay
        (None, 0.1, 0.0, 0.0),
        (1.0, 0.5, 1.0, 2.0),  # died young again: twice as long
        (8.0, 0.5, 1.0, 16.0),
        (0.0, 0.5, 0.0, 1.0),  # doubling nothing would never back off
        (48.0, 0.5, 1.0, MAX_RESTART_SECONDS),
        (32.0, STABLE_SECONDS, 1.0, 1.0),  # it lived long: the delay starts over
    ],
)
def test_restarts_back_off_while_the_zygote_dies_young(previous, lived, first, delay):
    assert restart_delay(previous, lived, first=first) == delay


def test_an_instance_gets_local_modes_environment_the_functions_and_its_own_address():
    os.environ["KUBELAMBDA_TEST_LOCAL_MODE"] = "local"
    try:
        env = instance_environment(
            {"AWS_LAMBDA_FUNCTION_NAME": "hello", "KUBELAMBDA_TEST_LOCAL_MODE": "function"},
            host="127.0.0.1",
            port=9001,
            scratch="/tmp/kubelambda-hello-x",
        )
    finally:
        del os.environ["KUBELAMBDA_TEST_LOCAL_MODE"]
    assert env["KUBELAMBDA_TEST_LOCAL_MODE"] == "function"  # the function's wins
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "hello"
    assert env["PATH"] == os.environ["PATH"]
    assert (env["KUBELAMBDA_HOST"], env["KUBELAMBDA_PORT"]) == ("127.0.0.1", "9001")
    assert env["TMPDIR"] == "/tmp/kubelambda-hello-x"
