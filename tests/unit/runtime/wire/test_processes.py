"""Process trees from /proc and the child-subreaper flag (wire/processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubelambda_runtime.wire import processes
from kubelambda_runtime.wire.processes import Process

RUNTIME_ROOT = str(Path(processes.__file__).parents[2])


def write_stat(proc: Path, pid: str, line: str) -> None:
    (proc / pid).mkdir()
    (proc / pid / "stat").write_text(line)


def test_snapshot_reads_parent_group_and_state_past_any_command_name(tmp_path):
    write_stat(tmp_path, "10", "10 (plain) S 1 10 10 0 -1 4194560 100 0 0 0")
    write_stat(tmp_path, "11", "11 (a b) c) (d) Z 10 10 10 0 -1 4194560 100 0 0 0")
    write_stat(tmp_path, "12", "12 (cut short")  # ended while being read
    (tmp_path / "self").mkdir()  # not a process
    (tmp_path / "13").mkdir()  # no stat: gone before it was opened
    assert processes.snapshot(str(tmp_path)) == {
        10: Process(pid=10, ppid=1, pgid=10, state="S"),
        11: Process(pid=11, ppid=10, pgid=10, state="Z"),
    }


def test_snapshot_without_proc_is_empty(tmp_path):
    assert processes.snapshot(str(tmp_path / "none")) == {}


def test_snapshot_of_this_machine_has_this_process():
    me = processes.snapshot()[os.getpid()]
    assert (me.ppid, me.pgid, me.state) == (os.getppid(), os.getpgrp(), "R")


def _table(*links: tuple[int, int]) -> dict[int, Process]:
    return {pid: Process(pid, ppid, pid, "S") for pid, ppid in links}


@pytest.mark.parametrize(
    ("links", "root", "expected"),
    [
        ([(2, 1), (3, 2), (4, 3), (5, 1)], 2, [3, 4]),
        ([(2, 1), (3, 2), (4, 2), (5, 4)], 2, [3, 4, 5]),
        ([(2, 1)], 2, []),
        ([(2, 1), (3, 2)], 9, []),
    ],
    ids=["a-chain", "branches", "a-leaf", "not-there"],
)
def test_descendants_are_everything_under_a_process(links, root, expected):
    assert sorted(processes.descendants(_table(*links), root)) == expected


def test_children_are_one_level_down():
    assert sorted(processes.children(_table((2, 1), (3, 2), (4, 1)), 1)) == [2, 4]


def test_kill_all_never_signals_a_group_or_everyone(monkeypatch):
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, signum: sent.append((pid, signum)))
    processes.kill_all([0, -1, -5, 7])
    assert sent == [(7, signal.SIGKILL)]


def test_a_child_subreaper_adopts_what_its_descendants_orphan():
    # In a process of its own: the flag would change what this test process adopts.
    script = """
import os
from kubelambda_runtime.wire import processes
assert processes.become_child_subreaper()
go, went = os.pipe()
said, say = os.pipe()
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        os.read(go, 1)  # once the middle process is gone
        os.write(say, str(os.getppid()).encode())
        os._exit(0)
    os._exit(0)
os.waitpid(middle, 0)
os.write(went, b"x")
parent = os.read(said, 32).decode()
os.waitpid(-1, 0)  # the orphan is this process's child now, for it to reap
print(parent, os.getpid())
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": RUNTIME_ROOT},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    orphan_parent, subreaper = done.stdout.split()
    assert orphan_parent == subreaper
