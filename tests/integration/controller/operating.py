"""The operator as the tests run it: ``python -m kubelambda.controller`` in a subprocess against
the harness's API server, with its log in a file the tests read and show on failure."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.apiserver import ApiServer
from support.waiting import wait_for

RUNTIME_IMAGE = "localhost/kubelambda-runtime:test"
# The queue ARN of the harness MinIO's webhook target "kubelambda" (test_buckets.py starts it).
WEBHOOK_TARGET = "kubelambda"
WEBHOOK_ARN = f"arn:minio:sqs:us-east-1:{WEBHOOK_TARGET}:webhook"
IDLE = re.compile(r"queue idle after (\d+) reconciles")


class OperatorProcess:
    """One operator process at a time; ``restart`` replaces it, as a new pod would."""

    def __init__(self, api: ApiServer, log_dir: Path, *extra_args: str) -> None:
        self.api = api
        self.log = log_dir / "operator.log"
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0  # where the current process's log starts
        self._previous = 0  # where the one before it started

    @property
    def args(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "operator",
            f"--kubeconfig={self.api.kubeconfig}",
            f"--runtime-image=python3.12={RUNTIME_IMAGE}",
            "--gateway-url=http://kubelambda-gateway.kubelambda.svc",
            f"--s3-webhook-arn={WEBHOOK_ARN}",
            "--log-level=DEBUG",
            "--resync-seconds=3600",  # the tests trigger what they need; a resync would blur it
            *self.extra_args,
        ]

    def start(self) -> None:
        self._previous = self._offset
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.api.env(),
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        """The current process's log so far."""
        with self.log.open("rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    def previous_output(self) -> str:
        """The log of the process that ``restart`` replaced (empty before any restart)."""
        with self.log.open("rb") as log:
            log.seek(self._previous)
            return log.read(self._offset - self._previous).decode(errors="replace")

    def caught_up(self, *, reconciles: int, timeout: float = 60.0) -> int:
        """Wait until the current process has reconciled at least ``reconciles`` times and its
        queue is empty; returns its reconcile count."""

        def count() -> int | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the operator exited:\n{self.tail()}")
            found = [int(n) for n in IDLE.findall(self.output())]
            return found[-1] if found and found[-1] >= reconciles else None

        return wait_for(
            count, timeout=timeout, what=f"the operator idle after {reconciles} reconciles"
        )

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def get(api: ApiServer, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    found = api.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        if "NotFound" in found.stderr:
            return None
        raise AssertionError(found.stderr)
    obj: dict[str, Any] = json.loads(found.stdout)
    return obj


def condition(obj: dict[str, Any] | None, type: str = "Ready") -> dict[str, Any] | None:
    for found in ((obj or {}).get("status") or {}).get("conditions") or ():
        if found.get("type") == type:
            return dict(found)
    return None


def wait_condition(
    api: ApiServer,
    kind: str,
    name: str,
    namespace: str,
    *,
    reason: str,
    status: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Wait until its Ready condition has ``reason`` (and ``status``); return the object."""

    def reached() -> dict[str, Any] | None:
        obj = get(api, kind, name, namespace)
        found = condition(obj)
        if found and found["reason"] == reason and status in (None, found["status"]):
            return obj
        return None

    return wait_for(reached, timeout=timeout, what=f"{kind}/{name} Ready reason {reason}")


def objects(api: ApiServer, namespace: str, kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every object of ``kinds`` in ``namespace`` by "Kind/name", managedFields included (kubectl
    leaves them out unless asked)."""
    found = api.kubectl(
        "get", ",".join(kinds), "-n", namespace, "--show-managed-fields", "-o", "json"
    )
    return {
        f"{item['kind']}/{item['metadata']['name']}": item
        for item in json.loads(found.stdout)["items"]
    }


def settled(
    api: ApiServer, namespace: str, kinds: Sequence[str], *, quiet: float = 3.0, timeout: float = 90
) -> dict[str, dict[str, Any]]:
    """The objects (as ``objects`` gives them) once no resourceVersion has changed for ``quiet``
    seconds: the operator and the controller-manager (Deployment status, ReplicaSets) are
    done with them."""
    last: dict[str, Any] = {"versions": None, "since": 0.0}

    def quiet_now() -> dict[str, dict[str, Any]] | None:
        found = objects(api, namespace, kinds)
        versions = {key: item["metadata"]["resourceVersion"] for key, item in found.items()}
        now = time.monotonic()
        if versions != last["versions"]:
            last["versions"], last["since"] = versions, now
            return None
        return found if now - last["since"] >= quiet else None

    return wait_for(
        quiet_now, timeout=timeout, what=f"objects in {namespace} to stop changing", interval=0.5
    )
