"""A real runtime (``python -m kubelambda_runtime``) whose code comes in the environment
(server/taskcode.py, docs/contracts.md "Code in the environment"): it writes the files into a
fresh, empty task root before its workers start, read-only, and serves from them; the handler
finds neither the code's variables nor the announcement key in its environment; a list it cannot
write ends it with exit status 1 and one line naming the problem, before it serves."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.runtime import RuntimeProcess
from support.waiting import free_port

Start = Callable[..., RuntimeProcess]

APP = """\
import os

from pkg import util


def handler(event, context):
    with open("/proc/self/environ", "rb") as environ:  # what the process was started with
        started_with = [entry.split(b"=", 1)[0].decode() for entry in environ.read().split(b"\\0")]
    return {
        "greeting": util.greet(event["name"]),
        "environ": sorted(os.environ),
        "started_with": sorted(name for name in started_with if name),
    }
"""
UTIL = "def greet(name):\n    return f'grüß dich, {name}'\n"


def code_env(files: dict[str, str]) -> dict[str, str]:
    """The variables the operator sets for ``files`` (path -> text)."""
    env = {"KUBELAMBDA_CODE_FILES": json.dumps(list(files))}
    env.update({f"KUBELAMBDA_CODE_{i}": text for i, text in enumerate(files.values())})
    return env


def test_the_runtime_serves_the_code_it_wrote_and_the_handler_sees_none_of_it(
    runtime: Start,
) -> None:
    env = {
        **code_env({"app.py": APP, "pkg/__init__.py": "", "pkg/util.py": UTIL}),
        "KUBELAMBDA_ANNOUNCE_KEY": "k3y-of-the-function",
        "FUNCTION_SETTING": "kept",
    }
    fn = runtime({}, env=env)  # an empty task root: the runtime writes every file
    answer = fn.invoke(json.dumps({"name": "you"}))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["greeting"] == "grüß dich, you"
    for seen in (result["environ"], result["started_with"]):
        assert "FUNCTION_SETTING" in seen
        leaked = [name for name in seen if name.startswith("KUBELAMBDA_CODE")]
        assert leaked == [] and "KUBELAMBDA_ANNOUNCE_KEY" not in seen
    root = fn.code_dir
    for path in ("app.py", "pkg/__init__.py", "pkg/util.py"):
        assert stat.S_IMODE((root / path).stat().st_mode) == 0o444, path
    assert stat.S_IMODE((root / "pkg").stat().st_mode) == 0o555
    assert (root / "pkg/util.py").read_text() == UTIL
    fn.stop()
    assert fn.process.returncode == 0


def run_refused(task_root: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Start the runtime as a pod does and wait (20 s at most) for it to end: its exit status
    and its stderr lines."""
    done = subprocess.run(
        [sys.executable, "-I", "-u", "-m", "kubelambda_runtime"],
        env={
            **os.environ,
            "_HANDLER": "app.handler",
            "LAMBDA_TASK_ROOT": str(task_root),
            "KUBELAMBDA_HOST": "127.0.0.1",
            "KUBELAMBDA_PORT": str(free_port()),
            **env,
        },
        cwd=task_root,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return done.returncode, done.stderr.splitlines()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KUBELAMBDA_CODE_FILES": "app.py"}, "KUBELAMBDA_CODE_FILES is not valid JSON"),
        (code_env({"../app.py": APP}), "KUBELAMBDA_CODE_FILES names '../app.py': not a path"),
        (code_env({"/var/task/app.py": APP}), "names '/var/task/app.py': an absolute path"),
        (
            {"KUBELAMBDA_CODE_FILES": '["app.py"]'},
            "names 'app.py' (file 0), but KUBELAMBDA_CODE_0 is not set",
        ),
        (code_env({"app.py": APP, "old.py": "new\n"}), "names 'old.py', which exists already"),
    ],
)
def test_code_it_cannot_write_ends_it_with_one_line_before_it_serves(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    (tmp_path / "old.py").write_text("old\n")
    status, lines = run_refused(tmp_path, env)
    assert status == 1, lines
    [line] = lines
    assert line.startswith("python -m kubelambda_runtime: ") and says in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.py"]  # nothing half-written
    assert (tmp_path / "old.py").read_text() == "old\n"
