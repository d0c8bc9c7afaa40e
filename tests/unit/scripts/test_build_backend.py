"""scripts/build_backend.py and setup.py: what pip's build asks for and compiles, with and without
KUBELAMBDA_COMPILE=1 (the control-plane image's build sets it; a development install does not)."""

from __future__ import annotations

import importlib.util
import os
import runpy
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_backend", ROOT / "scripts/build_backend.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _setuptools_hook(seen: list[str | None]) -> object:
    """Stands for setuptools' hook, which runs setup.py: records the flag it would see."""

    def hook(config_settings: dict[str, object] | None = None) -> list[str]:
        seen.append(os.environ.get("KUBELAMBDA_COMPILE"))
        return ["wheel"]

    return hook


@pytest.mark.parametrize(("flag", "compiler"), [("1", True), (None, False), ("0", False)])
def test_mypy_is_asked_for_only_when_compiling(
    monkeypatch: pytest.MonkeyPatch, flag: str | None, compiler: bool
) -> None:
    if flag is None:
        monkeypatch.delenv("KUBELAMBDA_COMPILE", raising=False)
    else:
        monkeypatch.setenv("KUBELAMBDA_COMPILE", flag)
    backend = _backend()
    seen: list[str | None] = []
    requires = backend._requires(_setuptools_hook(seen))()
    assert requires == (["wheel", backend.COMPILER] if compiler else ["wheel"])
    # setup.py, run for its requirements before mypy is installed, does not try to compile;
    # the flag is back for the build itself.
    assert seen == [None]
    assert os.environ.get("KUBELAMBDA_COMPILE") == flag


def test_every_compiled_module_exists() -> None:
    compiled = runpy.run_path(str(ROOT / "setup.py"), run_name="setup")["COMPILED"]
    assert compiled, "setup.py compiles nothing"
    for module in compiled:
        assert (ROOT / module).is_file(), f"setup.py compiles {module}, which does not exist"


def test_without_the_flag_setup_py_builds_plain_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBELAMBDA_COMPILE", raising=False)
    ext_modules = runpy.run_path(str(ROOT / "setup.py"), run_name="setup")["_ext_modules"]()
    assert ext_modules == []
