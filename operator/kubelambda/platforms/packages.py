"""Deployment packages and layers on a real S3 server, through boto3: the `PackageStore` of
`kubelambda.api.packages`.

``resolve`` (the controller) reads an object's central directory with ranged GETs and hashes
the object as it streams past, storing nothing; ``fetch`` (the init container, local mode)
streams it into a file. Both pin the ETag they saw, so an object replaced mid-read is noticed.
"""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from kubelambda.api.function import S3Object
from kubelambda.api.packages import (
    ObjectVersion,
    PackageError,
    ResolvedPackage,
    S3Access,
    refuse_changed,
)
from kubelambda.api.unpack import UNZIPPED_LIMIT, PackageRefused, inspect

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CENTRAL_DIRECTORY_LIMIT", "S3Packages"]

# The most a central directory may take (50,000 entries with long names fit in ~10 MiB): a
# forged end record cannot make the controller read the whole object into memory.
CENTRAL_DIRECTORY_LIMIT: Final = 32 * 1024 * 1024
# zipfile looks for the end record in the last 64 KiB + 22 bytes: one GET answers that.
_TAIL: Final = 65536 + 22
_CHUNK: Final = 1024 * 1024
_CACHED: Final = 256
_NOT_FOUND: Final = {"404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"}
_DENIED: Final = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "Forbidden",
    "AllAccessDisabled",
}


class _Ranged:
    """A seekable, read-only view of one object version for zipfile, each read a ranged GET
    (the tail is read once). Reads beyond CENTRAL_DIRECTORY_LIMIT are refused."""

    def __init__(self, read: Any, size: int, *, what: str) -> None:
        self._read = read
        self._size = size
        self._position = 0
        self._what = what
        start = max(0, size - _TAIL)
        self._tail_start = start
        self._tail = read(start, size - 1) if size else b""

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._position + n)
        if end <= self._position:
            return b""
        if end - self._position > CENTRAL_DIRECTORY_LIMIT:
            raise PackageRefused(
                "PackageTooManyEntries",
                f"{self._what}: its central directory would take more than"
                f" {CENTRAL_DIRECTORY_LIMIT} bytes",
            )
        if self._position >= self._tail_start:
            data = self._tail[self._position - self._tail_start : end - self._tail_start]
        else:
            data = self._read(self._position, end - 1)
        self._position += len(data)
        return data


class S3Packages:
    """Reads zips with boto3 (imported on first use). Resolutions are remembered by object
    version and ETag, so looking at an unchanged object again costs one HEAD."""

    def __init__(self, *, read_timeout: float = 60) -> None:
        self._read_timeout = read_timeout
        self._clients: dict[S3Access, S3Client] = {}
        self._resolved: OrderedDict[tuple[object, ...], ResolvedPackage] = OrderedDict()
        self._lock = threading.Lock()  # resolve runs on worker threads

    def _client(self, access: S3Access) -> S3Client:
        with self._lock:
            client = self._clients.get(access)
            if client is not None:
                return client
        try:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config
        except ImportError:
            raise PackageError(
                "PackageUnreachable",
                "cannot read packages from S3: boto3 is not installed"
                " (pip install 'kubelambda[control-plane]')",
            ) from None
        unsigned = access.access_key is None and not access.default_chain
        config = Config(
            s3={"addressing_style": "path"} if access.endpoint else {},
            retries={"max_attempts": 3},
            connect_timeout=5,
            read_timeout=self._read_timeout,
            signature_version=UNSIGNED if unsigned else None,
        )
        client = boto3.client(
            "s3",
            endpoint_url=access.endpoint,
            region_name=access.region,
            aws_access_key_id=access.access_key,
            aws_secret_access_key=access.secret_key,
            config=config,
        )
        with self._lock:
            self._clients[access] = client
        return client

    def _call(self, what: str, call: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        try:
            return call(**kwargs)
        except NoCredentialsError:
            raise PackageError(
                "PackageAccessDenied",
                f"{what}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                " (or AWS_PROFILE), or name a credentialsSecret",
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code"))
            message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode"
            )
            if code in _NOT_FOUND:
                raise PackageError(
                    "PackageNotFound",
                    f"{what}: the object does not exist ({code}: {message})",
                    transient=True,  # it may be uploaded later
                ) from None
            if code in _DENIED:
                raise PackageError(
                    "PackageAccessDenied",
                    f"{what}: access denied ({code}: {message}): the credentials are missing,"
                    " wrong, or not allowed s3:GetObject on it",
                ) from None
            if code in ("412", "PreconditionFailed"):
                raise PackageError(
                    "PackageChanged",
                    f"{what}: the object changed while it was read; reading it again",
                    transient=True,
                ) from None
            raise PackageError(
                "PackageUnreachable", f"{what}: {code}: {message}", transient=True
            ) from None
        except (ConnectionError, ReadTimeoutError, BotoCoreError) as exc:
            raise PackageError("PackageUnreachable", f"{what}: {exc}", transient=True) from None

    def _head(self, source: S3Object, access: S3Access, what: str) -> tuple[int, str, str | None]:
        client = self._client(access)
        version = {"VersionId": source.version_id} if source.version_id else {}
        head = self._call(what, client.head_object, Bucket=source.bucket, Key=source.key, **version)
        size = int(head["ContentLength"])
        if size > UNZIPPED_LIMIT:
            raise PackageRefused(
                "PackageTooLarge",
                f"{what}: the zip is {size} bytes; unpacked it could not fit Lambda's"
                f" {UNZIPPED_LIMIT} bytes",
            )
        found = head.get("VersionId")
        return size, str(head["ETag"]), None if found in (None, "null") else str(found)

    def head(self, source: S3Object, access: S3Access, *, what: str) -> ObjectVersion:
        size, etag, version = self._head(source, access, what)
        return ObjectVersion(size, etag, version)

    def _get(
        self,
        source: S3Object,
        access: S3Access,
        what: str,
        etag: str,
        version: str | None,
        **extra: Any,
    ) -> Any:
        pinned = {"VersionId": version} if version else {}
        return self._call(
            what,
            self._client(access).get_object,
            Bucket=source.bucket,
            Key=source.key,
            IfMatch=etag,
            **pinned,
            **extra,
        )["Body"]

    def resolve(self, source: S3Object, access: S3Access, *, what: str) -> ResolvedPackage:
        size, etag, version = self._head(source, access, what)
        key = (access.endpoint, source.bucket, source.key, version, etag, size, source.sha256)
        with self._lock:
            if key in self._resolved:
                self._resolved.move_to_end(key)
                return self._resolved[key]

        def ranged(first: int, last: int) -> bytes:
            body = self._get(source, access, what, etag, version, Range=f"bytes={first}-{last}")
            data: bytes = body.read()
            return data

        try:
            with zipfile.ZipFile(_Ranged(ranged, size, what=what)) as archive:
                unzipped = inspect(archive.infolist(), what=what).declared_bytes
        except (zipfile.BadZipFile, EOFError) as exc:
            raise PackageRefused("PackageNotZip", f"{what}: is not a zip file ({exc})") from None
        digest = hashlib.sha256()
        body = self._get(source, access, what, etag, version)
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            digest.update(chunk)
        resolved = self._checked(source, digest.hexdigest(), size, version, etag, unzipped, what)
        with self._lock:
            self._resolved[key] = resolved
            while len(self._resolved) > _CACHED:
                self._resolved.popitem(last=False)
        return resolved

    def fetch(
        self, source: S3Object, access: S3Access, into: BinaryIO, *, what: str
    ) -> ResolvedPackage:
        size, etag, version = self._head(source, access, what)
        digest = hashlib.sha256()
        written = 0
        body = self._get(source, access, what, etag, version)
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            written += len(chunk)
            if written > size:  # the HEAD said how much; more is not the object it described
                raise PackageError(
                    "PackageChanged", f"{what}: the object grew while it was read", transient=True
                )
            digest.update(chunk)
            into.write(chunk)
        return self._checked(source, digest.hexdigest(), size, version, etag, -1, what)

    @staticmethod
    def _checked(
        source: S3Object,
        sha256: str,
        size: int,
        version: str | None,
        etag: str,
        unzipped: int,
        what: str,
    ) -> ResolvedPackage:
        if source.sha256 is not None and sha256 != source.sha256:
            raise refuse_changed(what, sha256, source.sha256)
        return ResolvedPackage(
            source=source,
            sha256=sha256,
            size=size,
            version_id=version,
            etag=etag,
            unzipped=unzipped,
        )
