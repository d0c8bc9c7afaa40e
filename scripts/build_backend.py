"""setuptools' build backend, asking for mypy besides when KUBELAMBDA_COMPILE=1 compiles the
gateway's request path (setup.py), so that pip's isolated build has it; otherwise setuptools'
own requirements alone, as for any install.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403 - the backend's other hooks, as they are

FLAG = "KUBELAMBDA_COMPILE"
# The mypyc the compiled build was tested with (tests/integration/gateway/test_compiled.py).
COMPILER = "mypy>=2.4"


@contextmanager
def _uncompiled() -> Iterator[None]:
    """setuptools runs setup.py to collect its requirements, before mypy is there to import."""
    flag = os.environ.pop(FLAG, None)
    try:
        yield
    finally:
        if flag is not None:
            os.environ[FLAG] = flag


def _requires(hook: Callable[[dict[str, object] | None], list[str]]) -> Callable[..., list[str]]:
    def requires(config_settings: dict[str, object] | None = None) -> list[str]:
        compiler = [COMPILER] if os.environ.get(FLAG) == "1" else []
        with _uncompiled():
            return [*hook(config_settings), *compiler]

    return requires


get_requires_for_build_wheel = _requires(build_meta.get_requires_for_build_wheel)
get_requires_for_build_editable = _requires(build_meta.get_requires_for_build_editable)
