"""boto3's `lambda` client pointed at a gateway, as the tests of every tier make it."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def lambda_client(url: str, *, key: str = "test", secret: str = "test") -> Any:
    """A client signing with `key`/`secret`; no retries, so refusals and throttles show."""
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60),
    )
