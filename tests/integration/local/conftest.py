"""Fixtures that run ``kubelambda local`` on manifests and stop it after the test."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.local import LocalMode, start_local

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def examples() -> Iterator[LocalMode]:
    """Local mode serving the repository's examples/ folder, as the README's main job does."""
    local = start_local(EXAMPLES)
    yield local
    local.stop()


@pytest.fixture
def local_mode(tmp_path: Path) -> Iterator[Callable[..., LocalMode]]:
    """``local_mode(manifest_yaml, *options)`` serves one manifest; stopped at the end."""
    started: list[LocalMode] = []

    def start(manifest: str, *options: str) -> LocalMode:
        path = tmp_path / f"manifest{len(started)}.yaml"
        path.write_text(textwrap.dedent(manifest))
        local = start_local(path, *options)
        started.append(local)
        return local

    yield start
    for local in started:
        local.stop()
