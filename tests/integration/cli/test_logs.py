"""`kubelambda logs` against a real `kubelambda local`: the folder local mode names, found from
the gateway's URL; reading and following (until local mode stops) a function's lines; a kept
--log-dir; and the cluster's logs through a stand-in kubectl on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import yaml

from kubelambda.tools.logfiles import default_folder
from support.local import LocalMode, start_local
from support.manifests import inline_function
from support.waiting import wait_for

ECHO = """
def handler(event, context):
    print("marker", event.get("marker"))
    return "ok"
"""


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "functions.yaml"
    path.write_text(
        yaml.safe_dump_all([inline_function("echo", ECHO), inline_function("idle", ECHO)])
    )
    return path


def _logs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubelambda.cli", "logs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _mark(local: LocalMode) -> str:
    marker = uuid.uuid4().hex
    answer = local.client.post("/2015-03-31/functions/echo/invocations", json={"marker": marker})
    assert answer.status_code == 200, local.output()
    return marker


def _folder_line(local: LocalMode) -> str:
    return local.wait_for_line("kubelambda local: function logs in ")


def test_logs_reads_what_a_function_printed_from_local_mode_s_default_folder(
    tmp_path: Path,
) -> None:
    local = start_local(_manifest(tmp_path))
    try:
        port = int(local.url.rsplit(":", 1)[1])
        folder = default_folder(port)
        assert f"function logs in {folder} (kubelambda logs NAME)" in _folder_line(local)
        marker = _mark(local)

        def printed() -> str | None:
            done = _logs("echo", "--url", local.url)
            return done.stdout if marker in done.stdout else None

        out = wait_for(printed, timeout=10, what="the marker in `kubelambda logs echo`")
        lines = out.splitlines()
        assert lines[0].startswith("START RequestId: ")
        assert f"marker {marker}" in lines  # printed lines are unprefixed, as on Lambda
        assert lines[-1].startswith("REPORT RequestId: ")
        assert not any("kubelambda local:" in line for line in lines)  # only the function's

        done = _logs("idle", "--url", local.url)
        assert done.returncode == 1
        assert done.stderr == (
            f"kubelambda logs: idle has written nothing in {folder} (functions that have: echo);"
            " a function writes once it runs, at its first invocation\n"
        )
    finally:
        local.stop()
    assert not folder.exists()  # removed with local mode
    done = _logs("echo", "--url", local.url)
    assert done.returncode == 1
    assert done.stderr.startswith(f"kubelambda logs: no local mode writes logs to {folder}")


def test_follow_prints_new_lines_and_ends_when_local_mode_stops(tmp_path: Path) -> None:
    local = start_local(_manifest(tmp_path))
    follower: subprocess.Popen[str] | None = None
    try:
        _folder_line(local)
        first = _mark(local)
        env = {**os.environ, "KUBELAMBDA_URL": local.url}
        follower = subprocess.Popen(
            [sys.executable, "-m", "kubelambda.cli", "logs", "echo", "-f", "--tail", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        seen: list[str] = []

        def pump() -> None:
            assert follower is not None and follower.stdout is not None
            seen.extend(line.rstrip("\n") for line in follower.stdout)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        wait_for(lambda: any(first in line for line in seen), timeout=10, what="the tail")
        second = _mark(local)
        wait_for(lambda: any(second in line for line in seen), timeout=10, what="a new line")
        local.stop()
        assert follower.wait(timeout=10) == 0, follower.stderr.read() if follower.stderr else ""
        reader.join(timeout=5)
        assert seen[-1].startswith("REPORT RequestId: ")  # the last line before the stop
    finally:
        local.stop()
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait()


def test_a_chosen_log_dir_is_kept_after_local_mode_stops(tmp_path: Path) -> None:
    kept = tmp_path / "logs"
    local = start_local(_manifest(tmp_path), "--log-dir", str(kept))
    try:
        assert f"function logs in {kept} " in _folder_line(local)
        marker = _mark(local)
        wait_for(
            lambda: marker in (kept / "echo.log").read_text(),
            timeout=10,
            what="the marker in echo.log",
        )
    finally:
        local.stop()
    done = _logs("echo", "--log-dir", str(kept), "--tail", "3")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert f"marker {marker}" in done.stdout


def test_on_a_cluster_kubectl_reads_the_function_s_pods(tmp_path: Path) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text('#!/bin/sh\necho "kubectl $*"\nexit 3\n')
    kubectl.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = _logs("hello", "-n", "shop", "-f", env=env)
    assert done.returncode == 3  # kubectl's own
    assert done.stdout == (
        "kubectl --namespace shop logs --selector kubelambda.dev/function=hello --prefix"
        " --tail=-1 --max-log-requests=20 --follow\n"
    )
