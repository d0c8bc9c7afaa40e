"""Fixtures for deployment packages and layers on a real S3 server: one MinIO for the module,
with a private bucket of packages (`storage`) and a function of the test's own that vendors a
third-party module from this Python's site-packages (no network)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.minio import Minio, minio_for_pytest
from kubelambda.api.packages import S3Access

CODE_BUCKET = "packages"


@dataclass(frozen=True)
class Storage:
    minio: Minio

    @property
    def access(self) -> S3Access:
        return S3Access(
            endpoint=self.minio.endpoint,
            region=self.minio.region,
            access_key=self.minio.access_key,
            secret_key=self.minio.secret_key,
        )

    def put(self, key: str, data: bytes, *, bucket: str = CODE_BUCKET) -> dict[str, Any]:
        answer: dict[str, Any] = dict(
            self.minio.client().put_object(Bucket=bucket, Key=key, Body=data)
        )
        return answer

    def source(self, key: str, *, bucket: str = CODE_BUCKET, **extra: Any) -> dict[str, Any]:
        """A spec.code.s3 / spec.layers[].s3 for ``key`` on this MinIO."""
        return {"endpoint": self.minio.endpoint, "bucket": bucket, "key": key, **extra}


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    for minio in minio_for_pytest(tmp_path_factory):
        minio.client().create_bucket(Bucket=CODE_BUCKET)
        yield Storage(minio)
