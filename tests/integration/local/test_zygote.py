"""Local mode's cold starts through the runtime's zygote: an instance is a fork of it, and is
still isolated as a new process was (the same environment, a session of its own, ended with
everything it started at scale-down, its crash nobody else's); the zygote's own death costs
no instance and it comes back."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from support.manifests import inline_function
from support.waiting import wait_for

# Where a handler runs: its ancestry up to PID 1 (worker, keeper, runtime, then the runtime's
# parent), the runtime's process group and session, and the environment.
WHO = """
import os

def stat(pid):
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return [int(fields[1]), int(fields[2]), int(fields[3])]  # parent, group, session

def handler(event, context):
    chain, pid = [], os.getpid()
    while pid > 1:
        chain.append(pid)
        pid = stat(pid)[0]
    return {"chain": chain, "runtime": stat(chain[2])[1:], "environ": dict(os.environ)}
"""
# Starts processes that leave its session (a setsid child, a double-forked daemon) and says
# which, with their start times (a pid alone may be reused).
LEAVES = """
import os, subprocess

def started_at(pid):
    return int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[19])

def handler(event, context):
    if event.get("crash"):
        os._exit(3)
    child = subprocess.Popen(["sleep", "300"], start_new_session=True).pid
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write, str(os.getpid()).encode())
            os.execvp("sleep", ["sleep", "300"])
        os._exit(0)
    os.close(write)
    daemon = int(os.read(read, 32))
    os.wait()
    return [[pid, started_at(pid)] for pid in (child, daemon)]
"""


def manifest(*functions: dict[str, Any]) -> str:
    return yaml.safe_dump_all(functions)


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def children(of: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if parent(int(name)) == of:
                    found.append(int(name))
            except (FileNotFoundError, ProcessLookupError):
                continue  # ended meanwhile
    return found


def zygote_of(local: Any) -> int:
    """The zygote local mode started: its child running kubelambda_runtime.zygote."""

    def find() -> int | None:
        for pid in children(local.process.pid):
            try:
                if "kubelambda_runtime.zygote" in command(pid):
                    return pid
            except (FileNotFoundError, ProcessLookupError):
                continue
        return None

    return wait_for(find, timeout=10, what="local mode's zygote process")


def invoke(local: Any, name: str, event: dict[str, Any] | None = None) -> Any:
    answer = local.client.post(
        f"/2015-03-31/functions/{name}/invocations", content=json.dumps(event or {})
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def alive(pid: int, since: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return int(fields[19]) == since


def test_a_cold_start_is_a_fork_of_the_zygote_in_a_session_of_its_own(local_mode):
    local = local_mode(manifest(inline_function("who", WHO)))
    seen = invoke(local, "who")
    _worker, _keeper, runtime, above, local_pid = seen["chain"][:5]
    assert local_pid == local.process.pid
    assert above == zygote_of(local)
    assert "kubelambda_runtime.zygote" in command(above)
    assert seen["runtime"] == [runtime, runtime]  # its own process group and session
    assert "instances start as new Python processes" not in local.output()


def test_a_forked_instance_gets_the_environment_a_new_process_gets(local_mode):
    """The second function sets LD_LIBRARY_PATH, which only a new process applies: the zygote
    refuses it, so it starts the old way, and the two environments can be compared."""
    local = local_mode(
        manifest(
            inline_function("who", WHO, env=[{"name": "ONLY_WHO", "value": "1"}]),
            inline_function(
                "spawned",
                WHO,
                env=[
                    {"name": "LD_LIBRARY_PATH", "value": "/opt/nowhere"},
                    {"name": "ONLY_SPAWNED", "value": "1"},
                ],
            ),
        )
    )
    forked, spawned = invoke(local, "who"), invoke(local, "spawned")
    assert forked["chain"][3] == zygote_of(local)
    assert spawned["chain"][3] == local.process.pid  # a child of local mode itself
    local.wait_for_line("spawned: instances start as new Python processes")
    assert "LD_LIBRARY_PATH" in local.wait_for_line("which a process reads at start")
    assert forked["environ"]["ONLY_WHO"] == spawned["environ"]["ONLY_SPAWNED"] == "1"
    assert "ONLY_SPAWNED" not in forked["environ"]
    assert "ONLY_WHO" not in spawned["environ"]
    assert forked["environ"]["TMPDIR"] != spawned["environ"]["TMPDIR"]
    assert os.path.basename(forked["environ"]["TMPDIR"]).startswith("kubelambda-who-")
    differing = {
        name
        for name in {*forked["environ"], *spawned["environ"]}
        if forked["environ"].get(name) != spawned["environ"].get(name)
    }
    per_function = {
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "LAMBDA_TASK_ROOT",
        "KUBELAMBDA_PORT",
        "TMPDIR",
    }
    # Each invocation's own trace (the gateway starts one when the caller sends none).
    per_invocation = {"_X_AMZN_TRACE_ID"}
    assert differing == per_function | per_invocation | {
        "ONLY_WHO",
        "ONLY_SPAWNED",
        "LD_LIBRARY_PATH",
    }


def test_scale_down_ends_a_forked_instance_with_everything_it_started(local_mode):
    local = local_mode(
        manifest(inline_function("leaves", LEAVES, scaling={"scaleToZeroAfterSeconds": 2}))
    )
    started = invoke(local, "leaves")
    assert all(alive(pid, since) for pid, since in started)
    (runtime,) = children(zygote_of(local))
    local.wait_for_line("leaves: 1 -> 0 instances", timeout=30)
    wait_for(
        lambda: not any(alive(pid, since) for pid, since in started) or None,
        timeout=15,
        what="what the instance started to end with it",
    )
    wait_for(lambda: not os.path.exists(f"/proc/{runtime}"), timeout=15, what="its runtime gone")


def test_a_crash_or_a_killed_runtime_is_no_one_elses(local_mode):
    local = local_mode(manifest(inline_function("who", WHO), inline_function("leaves", LEAVES)))
    before = invoke(local, "who")["chain"]
    zygote = zygote_of(local)
    crashed = local.client.post(
        "/2015-03-31/functions/leaves/invocations", content='{"crash": true}'
    )
    assert crashed.json()["errorType"] == "Runtime.ExitError"
    invoke(local, "leaves")  # a fresh environment serves it
    (runtime,) = [pid for pid in children(zygote) if pid != before[2]]
    os.kill(runtime, signal.SIGKILL)
    local.wait_for_line(f"leaves-{runtime} exited with -9; replacing it")
    invoke(local, "leaves")  # the replacement, forked again
    (replacement,) = [pid for pid in children(zygote) if pid != before[2]]
    assert replacement != runtime
    assert invoke(local, "who")["chain"] == before  # the same worker, untouched
    assert zygote_of(local) == zygote


def test_the_zygotes_death_costs_no_instance_and_it_comes_back(local_mode):
    local = local_mode(manifest(inline_function("who", WHO), inline_function("later", WHO)))
    before = invoke(local, "who")["chain"]
    zygote = zygote_of(local)
    os.kill(zygote, signal.SIGKILL)
    local.wait_for_line(f"fork server (pid {zygote}) exited with -9")
    assert invoke(local, "who")["chain"][:3] == before[:3]  # the same instance serves on
    back = local.wait_for_line("the runtime's fork server is back")
    new = int(back.rpartition("pid ")[2].rstrip(")"))
    assert new != zygote
    assert invoke(local, "later")["chain"][3] == new  # the next cold start forks from it
