"""Fixtures for bucket events end to end: a real MinIO whose webhook target (with a bearer token
and a queue directory) points at local mode's gateway on a port fixed for the module, and
`kubelambda local` started (and restarted) on that port."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness.minio import Webhook, minio_for_pytest
from integration.s3.events import S3_PATH, TARGET, TOKEN, Setup
from support.local import LocalMode, start_local


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    # The gateway's port stays bound until MinIO has its own: a free port picked before MinIO
    # starts could otherwise be the very one MinIO's harness picks next.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    hook = Webhook(
        endpoint=f"http://127.0.0.1:{port}{S3_PATH}",
        auth_token=TOKEN,
        queue_dir=tmp_path_factory.mktemp("minio-queue"),
    )
    try:
        for minio in minio_for_pytest(tmp_path_factory, webhooks={TARGET: hook}):
            holder.close()
            yield Setup(minio=minio, port=port)
    finally:
        holder.close()


@pytest.fixture
def local_at(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LocalMode]]:
    """`local_at(manifest, *options)`: local mode on the module's gateway port, with MinIO's
    credentials in its environment (for the subscription); stopped after the test."""
    started: list[LocalMode] = []
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", setup.minio.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", setup.minio.secret_key)

    def start(manifest: Path, *options: str) -> LocalMode:
        # The last --port wins: the port MinIO's webhook target was given.
        local = start_local(manifest, *options, "--port", str(setup.port))
        local.url = setup.gateway
        local.client.close()
        local.client = httpx.Client(base_url=setup.gateway, timeout=60)
        started.append(local)
        return local

    yield start
    for local in started:
        local.stop()
