"""The pool process's own settings, read from the variables the pool pod sets (never passed on
to the function's runtime). ``process.main`` reads them once at start."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from typing import NamedTuple

from kubelambda_runtime.wire.config import ConfigError

PORT_VARIABLE = "KUBELAMBDA_POOL_PORT"  # set: ``python -m kubelambda_runtime`` is a pool pod
TOKEN_VARIABLE = "KUBELAMBDA_POOL_TOKEN"
TASK_DIR_VARIABLE = "KUBELAMBDA_POOL_TASK_DIR"
INIT_TIMEOUT_VARIABLE = "KUBELAMBDA_POOL_INIT_TIMEOUT"
# Every variable named so is the pool's: a specialise request may not set one.
OWN_PREFIX = "KUBELAMBDA_POOL_"
# Lambda's limit for a function's init phase.
INIT_TIMEOUT_SECONDS = 10.0
MAX_INIT_TIMEOUT_SECONDS = 900.0


class PoolSettings(NamedTuple):
    port: int
    host: str = "0.0.0.0"
    # Where task folders are made: the pod's root filesystem is read-only, /tmp is not.
    task_dir: str = ""
    init_timeout: float = INIT_TIMEOUT_SECONDS


def token(env: Mapping[str, str]) -> str:
    """The bearer token a specialiser must present; ConfigError if there is none."""
    value = env.get(TOKEN_VARIABLE, "")
    if not value:
        raise ConfigError(
            f"{TOKEN_VARIABLE} is not set: a pool pod takes specialise requests only from a "
            "caller that presents this token (give it from a Secret)"
        )
    return value


def from_environment(env: Mapping[str, str]) -> PoolSettings:
    """The pool's settings but the token; ConfigError names the variable that is wrong."""
    raw_port = env.get(PORT_VARIABLE, "")
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ConfigError(f"{PORT_VARIABLE} must be a port (1-65535), got {raw_port!r}")
    raw_timeout = env.get(INIT_TIMEOUT_VARIABLE, "")
    try:
        init_timeout = float(raw_timeout) if raw_timeout else INIT_TIMEOUT_SECONDS
    except ValueError:
        init_timeout = math.nan
    if not 0 < init_timeout <= MAX_INIT_TIMEOUT_SECONDS:  # also false for nan
        raise ConfigError(
            f"{INIT_TIMEOUT_VARIABLE} must be seconds above 0 and at most "
            f"{MAX_INIT_TIMEOUT_SECONDS:g}, got {raw_timeout!r}"
        )
    return PoolSettings(
        port=int(raw_port),
        host=env.get("KUBELAMBDA_HOST") or "0.0.0.0",
        task_dir=env.get(TASK_DIR_VARIABLE) or env.get("TMPDIR") or tempfile.gettempdir(),
        init_timeout=init_timeout,
    )
