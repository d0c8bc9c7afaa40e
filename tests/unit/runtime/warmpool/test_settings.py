"""The pool process's own settings (warmpool/settings.py)."""

from __future__ import annotations

import pytest

from kubelambda_runtime.warmpool import settings
from kubelambda_runtime.wire.config import ConfigError


def test_the_defaults() -> None:
    own = settings.from_environment({"KUBELAMBDA_POOL_PORT": "8079", "TMPDIR": "/scratch"})
    assert own == settings.PoolSettings(port=8079, host="0.0.0.0", task_dir="/scratch")
    assert own.init_timeout == 10.0


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"KUBELAMBDA_POOL_PORT": "http"}, "KUBELAMBDA_POOL_PORT must be a port"),
        ({"KUBELAMBDA_POOL_PORT": "70000"}, "KUBELAMBDA_POOL_PORT must be a port"),
        (
            {"KUBELAMBDA_POOL_PORT": "8079", "KUBELAMBDA_POOL_INIT_TIMEOUT": "nan"},
            "KUBELAMBDA_POOL_INIT_TIMEOUT must be",
        ),
        (
            {"KUBELAMBDA_POOL_PORT": "8079", "KUBELAMBDA_POOL_INIT_TIMEOUT": "0"},
            "KUBELAMBDA_POOL_INIT_TIMEOUT must be",
        ),
    ],
)
def test_a_wrong_setting_is_named(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        settings.from_environment(env)


def test_a_pool_needs_its_token() -> None:
    with pytest.raises(ConfigError, match="KUBELAMBDA_POOL_TOKEN is not set"):
        settings.token({"KUBELAMBDA_POOL_PORT": "8079"})
    assert settings.token({"KUBELAMBDA_POOL_TOKEN": "t"}) == "t"
