"""Starts the real function runtime (``python -m kubelambda_runtime``) as a process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.waiting import GiveUp, free_port, wait_for

INVOKE_PATH = "/2015-03-31/functions/function/invocations"


@dataclass
class RuntimeProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    code_dir: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def invoke(self, body: bytes | str = b"{}", **headers: str) -> httpx.Response:
        return self.client.post(INVOKE_PATH, content=body, headers=headers)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def write_code(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return directory


def start_runtime(
    *,
    code_dir: Path,
    handler: str = "app.handler",
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> RuntimeProcess:
    port = free_port()
    log_path = code_dir.parent / f"runtime-{port}.log"
    environment = {
        **os.environ,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(code_dir),
        "KUBELAMBDA_HOST": "127.0.0.1",
        "KUBELAMBDA_PORT": str(port),
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-I", "-u", "-m", "kubelambda_runtime"],
            env=environment,
            cwd=code_dir,  # as in a pod (WORKDIR /var/task) and in local mode
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    runtime = RuntimeProcess(process, f"http://127.0.0.1:{port}", log_path, code_dir)

    def answering() -> bool:
        if process.poll() is not None:
            raise GiveUp(f"runtime exited with {process.returncode}:\n{runtime.logs()}")
        status = runtime.client.get("/healthz").json()["status"]
        return status != "initializing" if wait_ready else True

    try:
        wait_for(answering, timeout=20, what=f"the runtime on port {port} to answer /healthz")
    except Exception:
        runtime.stop()
        raise
    return runtime
