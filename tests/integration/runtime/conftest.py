"""Fixtures that start real runtime processes on loopback and stop them after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.runtime import RuntimeProcess, start_runtime, write_code

Start = Callable[..., RuntimeProcess]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Start]:
    """``runtime({"app.py": source}, handler=..., env=...)`` starts one; all stop at the end."""
    started: list[RuntimeProcess] = []

    def start(files: dict[str, str], **options: Any) -> RuntimeProcess:
        code_dir = write_code(tmp_path / f"code{len(started)}", files)
        process = start_runtime(code_dir=code_dir, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
