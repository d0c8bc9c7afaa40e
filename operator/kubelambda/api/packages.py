"""Deployment packages and layers on an S3 server, the same on every platform: how a zip is read
(`PackageStore`, with `FakePackages` beside it), where and as whom (`S3Access`), and what a
read one is (`ResolvedPackage`).

The controller resolves a Function's zips before any pod starts and pins them in a fetch plan
(fetchplan.py); local mode fetches them into its cache. `kubelambda.platforms.packages` is the
real store (boto3).
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Final, Literal, Protocol

from kubelambda.api.function import Function, S3Object
from kubelambda.api.unpack import UNZIPPED_LIMIT, PackageRefused, inspect

__all__ = [
    "CODE_WHERE",
    "SECRET_KEYS",
    "FakePackages",
    "ObjectVersion",
    "PackageError",
    "PackageStore",
    "ResolvedPackage",
    "S3Access",
    "Target",
    "describe_zip",
    "function_zips",
    "lambda_sha256",
    "refuse_changed",
    "secret_access",
]

CODE_WHERE: Final = "spec.code.s3"
# The keys a credentials Secret may hold; the init container gets them as credential_variable.
SECRET_KEYS: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
Target = Literal["task", "opt"]


class PackageError(Exception):
    """A zip that cannot be read now: missing, denied, unreachable, or not the one the spec
    pins. ``reason`` is CamelCase, for a status condition; ``transient`` says whether trying
    again later may succeed without a change to the Function."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class S3Access:
    """Where and as whom to read: an endpoint (None: AWS S3), a region, and keys. Without
    keys, requests go unsigned, unless ``default_chain`` (local mode) lets boto3 find the
    environment's credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws)."""

    endpoint: str | None
    region: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    default_chain: bool = False


@dataclass(frozen=True)
class ObjectVersion:
    """What a HEAD says of an object: its size, ETag and version (None: unversioned). Together
    with where it is, it names one content without reading it."""

    size: int
    etag: str
    version_id: str | None


@dataclass(frozen=True, kw_only=True)
class ResolvedPackage:
    """A zip as read: its SHA-256 (hex), size, the version read (None in an unversioned
    bucket), its ETag, and the bytes its entries declare unpacked."""

    source: S3Object
    sha256: str
    size: int
    version_id: str | None
    etag: str
    unzipped: int

    @property
    def pinned(self) -> S3Object:
        """The source narrowed to exactly this object: its version and its SHA-256."""
        return replace(self.source, version_id=self.version_id or None, sha256=self.sha256)


def lambda_sha256(hex_digest: str) -> str:
    """A SHA-256 as Lambda's CodeSha256 writes it: base64 of the digest."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def refuse_changed(what: str, actual: str, expected: str) -> PackageError:
    """The error for a zip whose SHA-256 is not the one pinned (in the spec or by the
    controller): not transient, the Function must change to take another object."""
    return PackageError(
        "PackageChecksumMismatch",
        f"{what}: the object's SHA-256 is {actual}, not {expected} (the sha256 pinned for it)",
    )


class PackageStore(Protocol):
    """Reads zips from S3 servers. Blocking calls: asynchronous callers use a thread."""

    def head(self, source: S3Object, access: S3Access, *, what: str) -> ObjectVersion:
        """The object's size, ETag and version, without its content. Raises PackageError or
        PackageRefused (a zip larger than the unpacked limit)."""
        ...

    def resolve(self, source: S3Object, access: S3Access, *, what: str) -> ResolvedPackage:
        """Look at the zip without storing it: its central directory (``inspect``) and its
        SHA-256. Raises PackageError or PackageRefused."""
        ...

    def fetch(
        self, source: S3Object, access: S3Access, into: BinaryIO, *, what: str
    ) -> ResolvedPackage:
        """Write the zip into ``into`` (a file opened for writing), checking its size while it
        streams and its SHA-256 against ``source.sha256`` when set. Raises PackageError or
        PackageRefused."""
        ...


def function_zips(function: Function) -> list[tuple[Target, str, S3Object]]:
    """Each zip a Function's pods need, in unpacking order: (target, what, source)."""
    zips: list[tuple[Target, str, S3Object]] = []
    if isinstance(function.code, S3Object):
        zips.append(("task", f"{CODE_WHERE} ({function.code.uri})", function.code))
    for index, layer in enumerate(function.layers):
        zips.append(("opt", f"spec.layers[{index}].s3 ({layer.uri})", layer))
    return zips


def describe_zip(data: BinaryIO, *, what: str) -> int:
    """The bytes a zip's central directory declares unpacked; PackageRefused if it is unsafe."""
    try:
        with zipfile.ZipFile(data) as archive:
            return inspect(archive.infolist(), what=what).declared_bytes
    except (zipfile.BadZipFile, EOFError) as exc:
        raise PackageRefused("PackageNotZip", f"{what}: is not a zip file ({exc})") from None


@dataclass
class FakePackages:
    """An in-memory S3 server for tests: ``objects[(bucket, key)]`` are bytes; ``versions``
    name a version of one; ``denied`` keys answer AccessDenied. Records every call."""

    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    denied: set[tuple[str, str]] = field(default_factory=set)
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def put(self, bucket: str, key: str, data: bytes, *, version: str | None = None) -> str:
        """Store ``data``; returns its SHA-256 (hex)."""
        self.objects[(bucket, key)] = data
        if version is not None:
            self.versions[(bucket, key)] = version
        return hashlib.sha256(data).hexdigest()

    def _read(
        self, call: str, source: S3Object, what: str, *, check: bool = True
    ) -> tuple[bytes, str | None]:
        self.calls.append((call, source.bucket, source.key))
        where = (source.bucket, source.key)
        if where in self.denied:
            raise PackageError("PackageAccessDenied", f"{what}: AccessDenied: Access Denied")
        data = self.objects.get(where)
        version = self.versions.get(where)
        if data is None or (source.version_id is not None and source.version_id != version):
            raise PackageError(
                "PackageNotFound", f"{what}: NoSuchKey: the object does not exist", transient=True
            )
        if len(data) > UNZIPPED_LIMIT:
            raise PackageRefused("PackageTooLarge", f"{what}: the zip is {len(data)} bytes")
        actual = hashlib.sha256(data).hexdigest()
        if check and source.sha256 is not None and source.sha256 != actual:
            raise refuse_changed(what, actual, source.sha256)
        return data, version

    def _resolved(
        self, source: S3Object, data: bytes, version: str | None, what: str
    ) -> ResolvedPackage:
        return ResolvedPackage(
            source=source,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            version_id=version,
            etag=self._etag(data),
            unzipped=describe_zip(io.BytesIO(data), what=what),
        )

    def head(self, source: S3Object, access: S3Access, *, what: str) -> ObjectVersion:
        data, version = self._read("head", source, what, check=False)  # a HEAD cannot
        return ObjectVersion(len(data), self._etag(data), version)

    @staticmethod
    def _etag(data: bytes) -> str:
        return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'

    def resolve(self, source: S3Object, access: S3Access, *, what: str) -> ResolvedPackage:
        data, version = self._read("resolve", source, what)
        return self._resolved(source, data, version, what)

    def fetch(
        self, source: S3Object, access: S3Access, into: BinaryIO, *, what: str
    ) -> ResolvedPackage:
        data, version = self._read("fetch", source, what)
        into.write(data)
        return self._resolved(source, data, version, what)


def secret_access(
    source: S3Object, secret: Mapping[str, str] | None, *, default_region: str
) -> S3Access:
    """The access for ``source`` with a Secret's decoded keys (None: unsigned): the region is
    the spec's, else the Secret's AWS_REGION, else ``default_region``."""
    values = secret or {}
    region = source.region or values.get("AWS_REGION") or default_region
    return S3Access(
        endpoint=source.endpoint,
        region=region,
        access_key=values.get("AWS_ACCESS_KEY_ID"),
        secret_key=values.get("AWS_SECRET_ACCESS_KEY"),
    )
