"""The server's end of an environment's processes (server/descendants.py): the kill takes the
whole tree, sessions of their own included, and the sweep ends and reaps what a dead
environment left to the server, never a worker. Each case runs as a stand-in server in a
process of its own, since the server must be a child subreaper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubelambda_runtime.server import descendants

RUNTIME_ROOT = str(Path(descendants.__file__).parents[2])

COMMON = """
import asyncio, json, os, subprocess, sys, time
from kubelambda_runtime.server.descendants import Descendants, adopt_orphans, kill_environment
from kubelambda_runtime.wire import processes

assert adopt_orphans()
tracked = Descendants()

def spawn(script):
    # A stand-in worker: its own session, as the pool starts them; it prints pids it started.
    worker = subprocess.Popen(
        [sys.executable, "-c", script], start_new_session=True, stdout=subprocess.PIPE
    )
    tracked.spawned(worker.pid)
    return worker, json.loads(worker.stdout.readline())

def left(pids):
    return [pid for pid in pids if os.path.exists(f"/proc/{pid}")]

def strays(*workers):
    table = processes.snapshot()
    return sorted(set(processes.children(table, os.getpid())) - {w.pid for w in workers})
"""

# A worker with its keeper, as the runtime starts them, that starts one child in its own session
# (which starts one of its own) and one double-forked daemon: none is in the worker's process
# group, and the daemon's parent is the keeper.
ENVIRONMENT = r"""
import json, os, subprocess, time
from kubelambda_runtime.worker import keeper
keeper.keep()
own = subprocess.Popen(
    ["sh", "-c", "sleep 300 & echo $!; wait"], start_new_session=True, stdout=subprocess.PIPE
)
grandchild = int(own.stdout.readline())
read, write = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(write, str(os.getpid()).encode())
        os.execvp("sleep", ["sleep", "300"])
    os._exit(0)
os.close(write)
os.wait()
daemon = int(os.read(read, 32))
print(json.dumps([own.pid, grandchild, daemon]), flush=True)
time.sleep(300)
"""


def run(script: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", COMMON + script],
        env={**os.environ, "PYTHONPATH": RUNTIME_ROOT, "ENVIRONMENT": ENVIRONMENT},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_killing_an_environment_ends_its_whole_tree_and_the_sweep_reaps_it():
    report = run(
        """
worker, started = spawn(os.environ["ENVIRONMENT"])
kill_environment(worker.pid)
code = worker.wait(5)
tracked.reaped(worker.pid)
reaped = asyncio.run(tracked.sweep())
print(json.dumps({"code": code, "left": left(started), "reaped": reaped, "strays": strays()}))
"""
    )
    assert report["code"] == -9
    assert report["left"] == []  # killed, and reaped: not even zombies
    assert report["reaped"], "the sweep reaped nothing the environment left"
    assert report["strays"] == []


def test_the_sweep_ends_what_a_dead_environment_left_and_spares_live_workers():
    report = run(
        """
alive, alive_started = spawn(os.environ["ENVIRONMENT"])
dead, dead_started = spawn(os.environ["ENVIRONMENT"])
dead.kill()  # its keeper alone: the worker and what it started come back to this server
dead.wait(5)
tracked.reaped(dead.pid)
deadline = time.monotonic() + 5
while not strays(alive) and time.monotonic() < deadline:
    time.sleep(0.01)
before = strays(alive)
reaped = asyncio.run(tracked.sweep())
print(json.dumps({
    "before": before,
    "reaped": reaped,
    "dead_left": left(dead_started),
    "alive": alive.poll() is None,
    "alive_left": left(alive_started),
    "strays": strays(alive),
}))
kill_environment(alive.pid)
"""
    )
    assert report["before"], "the dead worker's processes did not come back to the server"
    assert set(report["before"]) <= set(report["reaped"])
    assert report["dead_left"] == []
    # The sweep knows a worker from an orphan: a live worker and its processes are untouched.
    assert report["alive"]
    assert len(report["alive_left"]) == 3
    assert report["strays"] == []
