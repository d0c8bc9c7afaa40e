"""harness/images.stale_bytecode: which modules an image would compile again at every start."""

from __future__ import annotations

import os
import py_compile
from pathlib import Path

from harness.images import stale_bytecode


def _module(root: Path, name: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("VALUE = 1\n")
    return path


def test_a_module_without_a_pyc_is_stale(tmp_path: Path) -> None:
    module = _module(tmp_path, "pkg/plain.py")
    assert stale_bytecode(tmp_path) == [module]


def test_a_current_pyc_is_not(tmp_path: Path) -> None:
    module = _module(tmp_path, "pkg/compiled.py")
    py_compile.compile(str(module), doraise=True)
    assert stale_bytecode(tmp_path) == []


def test_a_pyc_of_another_source_time_is_stale(tmp_path: Path) -> None:
    # As when a copy does not keep the files' times: the .pyc no longer matches its source.
    module = _module(tmp_path, "moved.py")
    py_compile.compile(str(module), doraise=True)
    os.utime(module, (1_000_000_000, 1_000_000_000))
    assert stale_bytecode(tmp_path) == [module]


def test_a_hash_based_pyc_is_current_whatever_the_times(tmp_path: Path) -> None:
    module = _module(tmp_path, "hashed.py")
    py_compile.compile(
        str(module), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    os.utime(module, (1_000_000_000, 1_000_000_000))
    assert stale_bytecode(tmp_path) == []


def test_symbolic_links_are_left_to_their_targets(tmp_path: Path) -> None:
    target = _module(tmp_path, "real.py")
    py_compile.compile(str(target), doraise=True)
    (tmp_path / "alias.py").symlink_to(target)
    assert stale_bytecode(tmp_path) == []
