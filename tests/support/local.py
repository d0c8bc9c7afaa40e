"""Runs ``kubelambda local`` as a real process on free loopback ports, for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from support.waiting import GiveUp, free_port, wait_for


@dataclass
class LocalMode:
    process: subprocess.Popen[str]
    url: str
    admin_url: str
    lines: list[str] = field(default_factory=list)
    # When each line arrived (time.monotonic()), for tests about how soon something happened.
    arrivals: list[float] = field(default_factory=list)
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, *, timeout: float = 30) -> str:
        def find() -> str | None:
            return next((line for line in list(self.lines) if text in line), None)

        return wait_for(find, timeout=timeout, what=f"a line with {text!r} in local mode's output")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_local(path: Path, *extra: str, admin_port: int | None = None) -> LocalMode:
    port, admin_port = free_port(), admin_port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "local",
            str(path),
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    local = LocalMode(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}")

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            local.arrivals.append(time.monotonic())
            local.lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()

    def serving() -> bool:
        if process.poll() is not None:
            raise GiveUp(f"local mode exited with {process.returncode}:\n{local.output()}")
        return any("kubelambda local: gateway" in line for line in local.lines)

    try:
        wait_for(serving, timeout=30, what="local mode to start serving")
    except Exception:
        local.stop()
        raise
    return local


def lambda_client(url: str):  # type: ignore[no-untyped-def]
    """boto3's Lambda client pointed at a gateway, with dummy credentials and no retries."""
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )
