"""How ``lifecycle.Runtime.start`` starts the function's runtime: the child forked ahead when it
takes its order, a fork at the request when there is none or it is gone, a new process when the
environment needs one; and the child forked ahead is used up either way. The forks and the
process start are fakes here (tests/integration/runtime/warmpool starts real ones)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest

from kubelambda_runtime import zygote
from kubelambda_runtime.warmpool import lifecycle
from kubelambda_runtime.wire import config

SETTINGS = config.from_environment({"_HANDLER": "app.handler"})
FORKED_PID, NEW_PID, AHEAD_PID = 1001, 1002, 1003


class FakePrefork:
    """A child forked ahead that takes its order, or is gone (``takes`` False)."""

    def __init__(self, *, takes: bool) -> None:
        self.pid = AHEAD_PID
        self.takes = takes
        self.orders: list[tuple[dict[str, str], str]] = []
        self.discarded = False

    def order(self, *, env: Mapping[str, str], cwd: str, ready: int) -> bool:
        os.fstat(ready)  # the readiness pipe's write end, open while it is sent
        self.orders.append((dict(env), cwd))
        return self.takes

    def discard(self) -> None:
        self.discarded = True


class FakePopen:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pid = NEW_PID
        self.returncode: int | None = None


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[Mapping[str, str]]:
    forked: list[Mapping[str, str]] = []

    def fork_runtime(*, env: Mapping[str, str], cwd: str, args: list[str], ready: int) -> int:
        forked.append(env)
        return FORKED_PID

    monkeypatch.setattr(zygote, "fork_runtime", fork_runtime)
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    return forked


def _env(**more: str) -> dict[str, str]:
    # The pool's own variables read at start, as the runtime's: a fork can apply them.
    own = {name: value for name, value in os.environ.items() if name.startswith(("LC_", "LANG"))}
    return {**own, "_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": "/tmp/t", **more}


@pytest.mark.parametrize(
    ("ahead", "env", "pid", "how", "forked", "ordered", "discarded"),
    [
        pytest.param("takes", _env(), AHEAD_PID, "fork", False, True, False, id="forked ahead"),
        pytest.param("gone", _env(), FORKED_PID, "fork", True, True, True, id="ahead is gone"),
        pytest.param(None, _env(), FORKED_PID, "fork", True, False, False, id="none ahead"),
        pytest.param(
            "takes", _env(LD_PRELOAD="x.so"), NEW_PID, "exec", False, False, True, id="new process"
        ),
    ],
)
def test_the_runtime_starts_the_fastest_way_its_environment_allows(
    forks: list[Mapping[str, str]],
    ahead: str | None,
    env: dict[str, str],
    pid: int,
    how: str,
    forked: bool,
    ordered: bool,
    discarded: bool,
) -> None:
    prefork = None if ahead is None else FakePrefork(takes=ahead == "takes")
    runtime = lifecycle.Runtime.start(
        env=env,
        cwd="/tmp/t",
        settings=SETTINGS,
        prefork=prefork,  # type: ignore[arg-type]
    )
    try:
        assert (runtime.pid, runtime.how) == (pid, how)
        assert forks == ([env] if forked else [])
        if prefork is not None:
            assert prefork.orders == ([(env, "/tmp/t")] if ordered else [])
            assert prefork.discarded is discarded
    finally:
        os.close(runtime.ready_fd)
