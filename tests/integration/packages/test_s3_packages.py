"""platforms/packages.py's S3Packages on a real MinIO: resolve pins a zip (SHA-256, version) from
its central directory and one streaming read, fetch writes it checking the pin, and what the
server refuses (missing, denied, unsigned) becomes a PackageError naming the source."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace

import pytest

from integration.packages.conftest import CODE_BUCKET, Storage
from kubelambda.api.function import S3Object
from kubelambda.api.packages import PackageError, S3Access
from kubelambda.api.unpack import PackageRefused
from kubelambda.platforms.packages import S3Packages
from support.zips import make_zip, module_files, symlink

WHAT = "spec.code.s3 (test)"
APP = make_zip({"app.py": "import six\n", **module_files("six")})


def obj(key: str, **extra: object) -> S3Object:
    return S3Object(bucket=CODE_BUCKET, key=key, **extra)  # type: ignore[arg-type]


def test_resolve_pins_the_sha256_without_storing_the_zip(storage: Storage) -> None:
    storage.put("resolve/app.zip", APP)

    resolved = S3Packages().resolve(obj("resolve/app.zip"), storage.access, what=WHAT)

    assert resolved.sha256 == hashlib.sha256(APP).hexdigest()
    assert resolved.size == len(APP)
    with zipfile.ZipFile(io.BytesIO(APP)) as archive:
        assert resolved.unzipped == sum(i.file_size for i in archive.infolist())
    assert resolved.version_id is None  # an unversioned bucket
    assert resolved.pinned.sha256 == resolved.sha256


def test_a_central_directory_beyond_the_tail_is_read_by_range(storage: Storage) -> None:
    """2,000 entries with long names: the central directory is larger than the 64 KiB tail."""
    many = make_zip({f"pkg/{'long_module_name_' * 4}{i}.py": f"X = {i}\n" for i in range(2000)})
    storage.put("resolve/many.zip", many)

    resolved = S3Packages().resolve(obj("resolve/many.zip"), storage.access, what=WHAT)

    assert resolved.sha256 == hashlib.sha256(many).hexdigest()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (make_zip({"../../etc/evil": "x"}), "PackageUnsafePath"),
        (make_zip([(symlink("lib"), "/")]), "PackageSymlink"),
        (b"PK\x05\x06 nothing here", "PackageNotZip"),
    ],
    ids=["zip slip", "symlink", "not a zip"],
)
def test_resolve_refuses_an_unsafe_zip_from_its_central_directory(
    storage: Storage, data: bytes, reason: str
) -> None:
    key = f"resolve/unsafe-{reason}.zip"
    storage.put(key, data)

    with pytest.raises(PackageRefused) as caught:
        S3Packages().resolve(obj(key), storage.access, what=WHAT)

    assert caught.value.reason == reason and str(caught.value).startswith(f"{WHAT}: ")


def test_a_versioned_object_is_pinned_to_the_version_read(storage: Storage) -> None:
    client = storage.minio.client()
    client.create_bucket(Bucket="versioned")
    client.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    first = storage.put("app.zip", APP, bucket="versioned")
    store = S3Packages()
    resolved = store.resolve(S3Object(bucket="versioned", key="app.zip"), storage.access, what=WHAT)
    assert resolved.version_id == first["VersionId"]
    storage.put("app.zip", make_zip({"app.py": "changed"}), bucket="versioned")

    written = io.BytesIO()
    fetched = store.fetch(resolved.pinned, storage.access, written, what=WHAT)

    assert written.getvalue() == APP and fetched.sha256 == resolved.sha256


def test_fetch_refuses_an_object_that_is_not_the_pinned_one(storage: Storage) -> None:
    storage.put("fetch/app.zip", APP)
    pinned = obj("fetch/app.zip", sha256="0" * 64)

    with pytest.raises(PackageError) as caught:
        S3Packages().fetch(pinned, storage.access, io.BytesIO(), what=WHAT)

    assert caught.value.reason == "PackageChecksumMismatch" and not caught.value.transient
    assert hashlib.sha256(APP).hexdigest() in str(caught.value)


def test_what_the_server_refuses_is_named(storage: Storage) -> None:
    storage.put("refused/app.zip", APP)
    store = S3Packages()

    with pytest.raises(PackageError) as missing:
        store.resolve(obj("refused/absent.zip"), storage.access, what=WHAT)
    assert missing.value.reason == "PackageNotFound" and missing.value.transient

    wrong = replace(storage.access, secret_key="not-the-secret")
    with pytest.raises(PackageError) as denied:
        store.resolve(obj("refused/app.zip"), wrong, what=WHAT)
    assert denied.value.reason == "PackageAccessDenied" and not denied.value.transient

    unsigned = S3Access(endpoint=storage.minio.endpoint, region=storage.minio.region)
    with pytest.raises(PackageError) as anonymous:
        store.resolve(obj("refused/app.zip"), unsigned, what=WHAT)
    assert anonymous.value.reason == "PackageAccessDenied"


def test_an_unreachable_server_is_transient() -> None:
    nowhere = S3Access(
        endpoint="http://127.0.0.1:9", region="us-east-1", access_key="a", secret_key="b"
    )

    with pytest.raises(PackageError) as caught:
        S3Packages(read_timeout=2).resolve(obj("app.zip"), nowhere, what=WHAT)

    assert caught.value.reason == "PackageUnreachable" and caught.value.transient
