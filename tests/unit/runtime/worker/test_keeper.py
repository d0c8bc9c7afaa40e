"""The environment's keeper (worker/keeper.py): it reaps what the worker orphans, ends all of it
when the worker exits, and exits as the worker did. Each case runs in a process of its own,
which ``keep`` forks as a real worker's would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubelambda_runtime.worker import keeper

RUNTIME_ROOT = str(Path(keeper.__file__).parents[2])

WORKER = """
import json, os, signal, subprocess, sys, time
from kubelambda_runtime.worker import keeper

keeper.keep()
# From here on this is the worker; its parent, the keeper.

def daemon(*command):
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write, str(os.getpid()).encode())
            if command:
                os.execvp(command[0], list(command))
            os._exit(0)
        os._exit(0)
    os.close(write)
    os.waitpid(middle, 0)
    return int(os.read(read, 32))

def reaped(pid):
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    return not os.path.exists(f"/proc/{pid}")

short = daemon()  # orphaned, and over at once: the keeper must reap it
report = {
    "keeper": os.getppid(),
    "keeper_fds": sorted(int(fd) for fd in os.listdir(f"/proc/{os.getppid()}/fd")),
    "started": [
        subprocess.Popen(["sleep", "300"], start_new_session=True).pid,
        daemon("sleep", "300"),
    ],
    "short_reaped": reaped(short),
}
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
end = sys.argv[2]
if end == "exit":
    os._exit(7)
os.kill(os.getpid(), getattr(signal, end))
"""


@pytest.mark.parametrize(
    ("end", "returncode"),
    [("exit", 7), ("SIGKILL", -signal.SIGKILL), ("SIGTERM", -signal.SIGTERM)],
)
def test_the_keeper_ends_all_the_worker_started_and_exits_as_it_did(tmp_path, end, returncode):
    report_path = tmp_path / "report.json"
    extra = os.open(os.devnull, os.O_RDONLY)  # a descriptor the keeper must not hold on to
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(report_path), end],
            env={**os.environ, "PYTHONPATH": RUNTIME_ROOT},
            stdin=subprocess.DEVNULL,
            pass_fds=(extra,),
        )
        assert process.wait(timeout=30) == returncode
    finally:
        os.close(extra)
    report = json.loads(report_path.read_text())
    assert report["keeper"] == process.pid
    assert report["keeper_fds"] == [0, 1, 2]
    assert report["short_reaped"], "an orphan that ended while the worker lived was left a zombie"
    # The keeper exits only once it has killed and reaped them: nothing is left, not even a zombie.
    assert [pid for pid in report["started"] if os.path.exists(f"/proc/{pid}")] == []
