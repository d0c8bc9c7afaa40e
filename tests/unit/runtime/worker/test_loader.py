"""Handler loading and the faults it reports."""

from __future__ import annotations

import sys
import uuid

import pytest

from kubelambda_runtime.wire import faults
from kubelambda_runtime.worker.loader import load_handler


@pytest.fixture
def code(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    package = f"pkg_{uuid.uuid4().hex}"  # a fresh name: imports are cached per process
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "mod.py").write_text(
        "def handler(e, c):\n    return 'nested'\nvalue = 3\n"
    )
    return tmp_path, package


def test_dotted_and_slashed_module_paths(code):
    root, package = code
    assert load_handler(f"{package}.mod.handler", task_root=str(root))(None, None) == "nested"
    assert load_handler(f"{package}/mod.handler", task_root=str(root))(None, None) == "nested"


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("nodot", faults.MALFORMED_HANDLER_NAME),
        ("sys.handler", faults.BUILT_IN_MODULE_CONFLICT),
        ("absent_module_xyz.handler", faults.IMPORT_MODULE_ERROR),
        ("{package}.mod.absent", faults.HANDLER_NOT_FOUND),
        ("{package}.mod.value", faults.HANDLER_NOT_FOUND),
    ],
)
def test_faults(code, handler, error_type):
    root, package = code
    with pytest.raises(faults.Fault) as raised:
        load_handler(handler.format(package=package), task_root=str(root))
    assert raised.value.error_type == error_type
