"""platforms/s3.py against no server: its errors name what to fix."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kubelambda.api.subscriptions import BucketError, S3Server
from kubelambda.platforms.s3 import S3Notifications


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_without_credentials_the_error_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = S3Server(endpoint=f"http://127.0.0.1:{_closed_port()}", region="us-east-1")
    with pytest.raises(BucketError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        asyncio.run(S3Notifications().get(server, bucket="media"))


def test_an_unreachable_server_is_named() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    server = S3Server(endpoint=endpoint, region="us-east-1", access_key="k", secret_key="s")
    with pytest.raises(BucketError, match=f"bucket media on {endpoint}: .*Could not connect"):
        asyncio.run(S3Notifications().get(server, bucket="media"))
