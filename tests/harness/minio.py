"""A real S3 server for tests: the MinIO built by `binaries`, on loopback, with a temp data dir.

Bucket notifications go to webhook targets configured through MinIO's own environment
variables (MINIO_NOTIFY_WEBHOOK_*_<ID>); subscribe a bucket with the ARN `Minio.webhook_arn`.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import binaries
from harness.cache import subdir
from harness.procs import Server, free_port, scratch_dir, start, wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Webhook:
    """One notification target: MinIO POSTs each event to `endpoint` (after probing it)."""

    endpoint: str
    auth_token: str | None = None  # sent as `Authorization: Bearer <token>`
    queue_dir: Path | None = None  # keeps events while the endpoint is down


@dataclass(frozen=True)
class Minio:
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    data_dir: Path
    server: Server
    webhooks: Mapping[str, Webhook] = field(default_factory=dict)

    def webhook_arn(self, target_id: str) -> str:
        """The queue ARN that subscribes a bucket to webhook target `target_id`."""
        return f"arn:minio:sqs:{self.region}:{target_id}:webhook"

    def env(self) -> dict[str, str]:
        """AWS_* variables for a client process (boto3, the gateway) to use this server."""
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def client(self) -> S3Client:
        import boto3  # a dev dependency; only tests that talk S3 need it
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def log_tail(self, lines: int = 40) -> str:
        return self.server.log_tail(lines)


def webhook_env(webhooks: Mapping[str, Webhook]) -> dict[str, str]:
    env: dict[str, str] = {}
    for target_id, hook in webhooks.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", target_id):
            raise ValueError(f"webhook target id {target_id!r}: letters, digits and _ only")
        env[f"MINIO_NOTIFY_WEBHOOK_ENABLE_{target_id}"] = "on"
        env[f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{target_id}"] = hook.endpoint
        if hook.auth_token is not None:
            env[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{target_id}"] = hook.auth_token
        if hook.queue_dir is not None:
            hook.queue_dir.mkdir(parents=True, exist_ok=True)
            env[f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{target_id}"] = str(hook.queue_dir)
    return env


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


@contextmanager
def minio_server(
    *,
    webhooks: Mapping[str, Webhook] | None = None,
    region: str = "us-east-1",
    log_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Minio]:
    """Start MinIO on 127.0.0.1 with fresh credentials; yield once it is live and ready; stop it
    and remove its data however the body ends."""
    binary = binaries.ensure_minio()
    logs = (
        log_dir
        if log_dir is not None
        else Path(
            tempfile.mkdtemp(prefix=f"minio-{time.strftime('%Y%m%d-%H%M%S')}-", dir=subdir("logs"))
        )
    )
    data = scratch_dir("minio")
    hooks = dict(webhooks or {})
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, data, ignore_errors=True)
        port, console = free_port(), free_port()
        access_key, secret_key = "kubelambda", secrets.token_hex(16)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            "MINIO_REGION": region,
            # Nothing may leave the machine: no update checks, no console, no call-home.
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER": "off",
            "MINIO_CALLHOME_ENABLE": "off",
            **webhook_env(hooks),
            **(extra_env or {}),
        }
        server = start(
            "minio",
            [
                binary,
                "server",
                f"--address=127.0.0.1:{port}",
                f"--console-address=127.0.0.1:{console}",
                data / "export",
            ],
            log=logs / "minio.log",
            env=env,
            cwd=data,
        )
        cleanup.callback(server.stop)
        endpoint = f"http://127.0.0.1:{port}"
        for probe in (f"{endpoint}/minio/health/live", f"{endpoint}/minio/health/ready"):
            wait_until(
                functools.partial(_ok, probe),
                what=f"MinIO {probe}",
                timeout=READY_TIMEOUT,
                watch=[server],
            )
        yield Minio(
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            data_dir=data,
            server=server,
            webhooks=hooks,
        )


def minio_for_pytest(tmp_path_factory: Any, **kwargs: Any) -> Iterator[Minio]:
    """For a yield-fixture: `yield from minio_for_pytest(tmp_path_factory, webhooks=...)`."""
    log_dir = tmp_path_factory.mktemp("minio-logs")
    with minio_server(log_dir=log_dir, **kwargs) as server:
        yield server
