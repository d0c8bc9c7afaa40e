"""`_X_AMZN_TRACE_ID` per invocation (worker/traceenv.py): seen by Python code and by the C
environment a subprocess inherits, and set a million times over without the process growing
(``os.environ[name] = value`` grows it by each new value, glibc's setenv keeping every copy).

Each test runs in a subprocess of its own: the variable is process-wide state.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[4] / "runtime"


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(RUNTIME), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_value_reaches_python_and_a_subprocess_and_none_removes_it():
    out = run(
        """
        import os, subprocess, sys
        from kubelambda_runtime.worker.traceenv import TraceVariable
        child = [sys.executable, "-c", "import os; print(os.environ.get('_X_AMZN_TRACE_ID'))"]
        trace = TraceVariable()
        for value in ("Root=1-a;Sampled=1", "Root=1-" + "b" * 600 + ";Sampled=0", "Root=1-c", None):
            trace.set(value)
            print(os.environ.get("_X_AMZN_TRACE_ID"), os.getenv("_X_AMZN_TRACE_ID"))
            print(subprocess.run(child, capture_output=True, text=True).stdout.strip())
        """
    )
    long = "Root=1-" + "b" * 600 + ";Sampled=0"
    assert out.splitlines() == [
        "Root=1-a;Sampled=1 Root=1-a;Sampled=1",
        "Root=1-a;Sampled=1",
        f"{long} {long}",
        long,
        "Root=1-c Root=1-c",
        "Root=1-c",
        "None None",
        "None",
    ]


def test_the_handler_setting_or_removing_it_does_not_stop_the_next_invocation_s():
    out = run(
        """
        import os, subprocess, sys
        from kubelambda_runtime.worker.traceenv import TraceVariable
        child = [sys.executable, "-c", "import os; print(os.environ.get('_X_AMZN_TRACE_ID'))"]
        trace = TraceVariable()
        trace.set("Root=1-first")
        os.environ["_X_AMZN_TRACE_ID"] = "the handler's"  # the environment leaves our buffer
        trace.set("Root=1-second")
        print(subprocess.run(child, capture_output=True, text=True).stdout.strip())
        del os.environ["_X_AMZN_TRACE_ID"]
        trace.set("Root=1-third")
        print(os.environ["_X_AMZN_TRACE_ID"])
        print(subprocess.run(child, capture_output=True, text=True).stdout.strip())
        """
    )
    assert out.splitlines() == ["Root=1-second", "Root=1-third", "Root=1-third"]


def test_a_value_with_a_nul_leaves_no_trace_rather_than_failing():
    out = run(
        """
        import os
        from kubelambda_runtime.worker.traceenv import TraceVariable
        trace = TraceVariable()
        trace.set("Root=1-a")
        trace.set("Root=1-\\x00b")
        print(os.environ.get("_X_AMZN_TRACE_ID"))
        """
    )
    assert out.strip() == "None"


def test_a_new_value_on_every_invocation_does_not_grow_the_process():
    out = run(
        """
        import os
        from kubelambda_runtime.worker.traceenv import TraceVariable
        def rss_mb():
            pages = int(open("/proc/self/statm").read().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        def values(start):
            for i in range(start, start + 200_000):
                yield f"Root=1-5759e988-{i:024x};Parent=53995c3f42cd8ad8;Sampled=0"
        trace = TraceVariable()
        for value in values(0):
            trace.set(value)
        before = rss_mb()
        for value in values(1_000_000):
            trace.set(value)
        ours = rss_mb() - before
        for value in values(2_000_000):
            os.environ["_X_AMZN_TRACE_ID"] = value  # what awslambdaric does
        print(ours, rss_mb() - before - ours)
        """
    )
    ours, setenv = map(float, out.split())
    # 200,000 new values through setenv: ~28 MB here. Ours: nothing to speak of.
    assert setenv > 10, f"setenv grew the process by {setenv:.1f} MB only: the reference failed"
    assert ours < 1, f"200,000 traces grew the process by {ours:.1f} MB"


def test_without_ctypes_it_falls_back_to_os_environ_once_and_for_all():
    out = run(
        """
        import os, sys
        sys.modules["ctypes"] = None  # import ctypes raises ImportError
        from kubelambda_runtime.worker.traceenv import TraceVariable
        trace = TraceVariable()
        for value in ("Root=1-a", "Root=1-b"):
            trace.set(value)
            print(os.environ["_X_AMZN_TRACE_ID"], trace._fallback)
        """
    )
    assert out.splitlines() == ["Root=1-a True", "Root=1-b True"]
