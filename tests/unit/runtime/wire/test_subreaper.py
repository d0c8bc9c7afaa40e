"""wire/processes.become_child_subreaper: PID 1 (the runtime as a container's entrypoint) is
the reaper of its namespace already, so it neither calls prctl nor imports ctypes for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUNTIME_ROOT = Path(__file__).resolve().parents[4] / "runtime"


def _run(code: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(RUNTIME_ROOT)!r})\n"
            "from kubelambda_runtime.wire import processes\n" + code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_as_pid_1_it_is_the_reaper_without_ctypes() -> None:
    out = _run("print(processes.become_child_subreaper(pid=1), 'ctypes' in sys.modules)")
    assert out == "True False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_any_other_process_sets_the_flag() -> None:
    # PR_GET_CHILD_SUBREAPER (37) reads the flag back.
    out = _run(
        "import ctypes\n"
        "flag = ctypes.c_int(0)\n"
        "libc = ctypes.CDLL(None)\n"
        "print(processes.become_child_subreaper(),"
        " libc.prctl(37, ctypes.byref(flag), 0, 0, 0), flag.value)"
    )
    assert out == "True 0 1"
