"""Local mode removes each instance's temporary folder (its TMPDIR) when the instance ends: when
it is scaled to zero, when its runtime crashes, and when local mode itself is stopped."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from support.waiting import wait_for

MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: idler}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {maxReplicas: 1, scaleToZeroAfterSeconds: 2}
  code: {inline: {files: {app.py: "%(code)s"}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: crasher}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {maxReplicas: 1, scaleToZeroAfterSeconds: 600}
  code: {inline: {files: {app.py: "%(code)s"}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: idler-http}
spec: {function: idler, http: {path: /idler}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: crasher-http}
spec: {function: crasher, http: {path: /crasher}}
"""

# Answers the instance's temporary folder; with ?crash, kills its runtime (the worker's
# parent is its keeper, whose parent is the runtime's server).
CODE = r"""import os, signal, tempfile
def _parent(pid):
    with open(f'/proc/{pid}/stat') as stat:
        return int(stat.read().rsplit(')', 1)[1].split()[1])
def handler(event, context):
    if 'crash' in event.get('rawQueryString', ''):
        os.kill(_parent(os.getppid()), signal.SIGKILL)
    return {'tmp': tempfile.gettempdir()}
"""


def _manifest() -> str:
    code = CODE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return MANIFEST % {"code": code}


def _left(tmp: Path, name: str) -> list[Path]:
    return sorted(tmp.glob(f"kubelambda-{name}-*"))


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory local mode (started after this) makes its folders in."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def _instance_folder(local, name: str, tmp: Path) -> Path:  # type: ignore[no-untyped-def]
    answer = local.client.get(f"/{name}")
    assert answer.status_code == 200, answer.text
    folder = Path(answer.json()["tmp"])
    assert folder.parent == tmp and folder.name.startswith(f"kubelambda-{name}-")
    assert folder.is_dir()
    return folder


def test_scaled_to_zero_and_crashed_instances_leave_no_folder(local_mode, tmp):
    local = local_mode(_manifest())

    idle = _instance_folder(local, "idler", tmp)
    local.wait_for_line("idler: 1 -> 0 instances", timeout=30)
    wait_for(lambda: not idle.exists(), timeout=10, what=f"{idle} to be removed at scale to zero")

    crashed = _instance_folder(local, "crasher", tmp)
    local.client.get("/crasher?crash")  # its runtime dies: the gateway answers an error
    local.wait_for_line("exited with -9; replacing it", timeout=30)
    wait_for(
        lambda: not crashed.exists(), timeout=10, what=f"{crashed} to be removed after the crash"
    )

    again = _instance_folder(local, "crasher", tmp)  # the replacement has a folder of its own
    assert again != crashed
    local.stop()
    assert _left(tmp, "crasher") == [] and _left(tmp, "idler") == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_local_mode_leaves_no_folder(local_mode, tmp, signum):
    local = local_mode(_manifest())
    folders = [_instance_folder(local, name, tmp) for name in ("idler", "crasher")]
    local.process.send_signal(signum)
    try:
        local.process.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"local mode did not exit within 20 s of {signum.name}:\n{local.output()}")
    assert [folder for folder in folders if folder.exists()] == []
    assert _left(tmp, "crasher") == [] and _left(tmp, "idler") == []
