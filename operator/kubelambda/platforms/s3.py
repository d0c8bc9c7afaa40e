"""Bucket notification configurations on a real S3 server, through boto3 (imported only once a
Trigger needs a subscription): the `BucketNotifications` of `kubelambda.api.subscriptions`.

The operator and local mode both use `S3Notifications`; calls run on a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kubelambda.api.subscriptions import BucketError, BucketNotFound, S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Notifications"]


class S3Notifications:
    """Reads and writes bucket notification configurations with boto3."""

    def __init__(self) -> None:
        self._clients: dict[S3Server, S3Client] = {}

    def _client(self, server: S3Server) -> S3Client:
        client = self._clients.get(server)
        if client is not None:
            return client
        try:
            import boto3  # ~30 MiB: loaded only once a Trigger needs a subscription
            from botocore.config import Config
        except ImportError:
            raise BucketError(
                "cannot subscribe buckets: boto3 is not installed"
                " (pip install 'kubelambda[control-plane]')"
            ) from None
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name=server.region,
            # None: boto3's default chain (the environment, AWS_PROFILE, ~/.aws).
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=5,
                read_timeout=15,
            ),
        )
        self._clients[server] = client
        return client

    def _call(self, server: S3Server, bucket: str, put: dict[str, Any] | None) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"bucket {bucket} on {server.endpoint}"
        try:
            client = self._client(server)
            if put is None:
                answer = dict(client.get_bucket_notification_configuration(Bucket=bucket))
                answer.pop("ResponseMetadata", None)
                return answer
            client.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration=put,  # type: ignore[arg-type]
            )
            return {}
        except NoCredentialsError:
            raise BucketError(
                f"{where}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE)"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code")
            failure = BucketNotFound if code == "NoSuchBucket" else BucketError
            raise failure(f"{where}: {code}: {error.get('Message')}") from None
        except BotoCoreError as exc:
            raise BucketError(f"{where}: {exc}") from None

    async def get(self, server: S3Server, *, bucket: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._call, server, bucket, None)

    async def put(self, server: S3Server, *, bucket: str, configuration: dict[str, Any]) -> None:
        await asyncio.to_thread(self._call, server, bucket, configuration)
