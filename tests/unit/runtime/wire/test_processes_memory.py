"""The memory high-water mark of an execution environment's processes (wire/processes.py), the
Max Memory Used of the REPORT lines the server writes."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from kubelambda_runtime.wire import processes


def write_status(proc: Path, pid: str, text: str) -> None:
    (proc / pid).mkdir()
    (proc / pid / "status").write_text(text)


def test_the_largest_high_water_mark_among_the_processes(tmp_path):
    write_status(tmp_path, "10", "Name:\tkeeper\nVmPeak:\t 90000 kB\nVmHWM:\t   12000 kB\n")
    write_status(tmp_path, "11", "Name:\tworker\nVmHWM:\t   81234 kB\nVmRSS:\t 5000 kB\n")
    write_status(tmp_path, "12", "Name:\tzombie\nState:\tZ (zombie)\n")  # no memory any more
    assert processes.high_water_kb([10, 11, 12, 13], str(tmp_path)) == 81234


def test_none_when_no_process_can_be_read(tmp_path):
    write_status(tmp_path, "12", "Name:\tzombie\nState:\tZ (zombie)\n")
    assert processes.high_water_kb([12, 13], str(tmp_path)) is None
    assert processes.high_water_kb([], str(tmp_path)) is None


def test_this_process_reads_as_its_own_ru_maxrss():
    # The same number getrusage gives the worker for the REPORT lines it writes itself.
    measured = processes.high_water_kb([os.getpid()])
    assert measured is not None
    assert abs(measured - resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) < 4096
