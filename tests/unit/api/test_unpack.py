"""kubelambda.api.unpack on crafted zips: good packages unpack as zip tools made them, and every
unsafe one (zip slip, symlinks, bombs, too large, too many entries) is refused, naming why."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kubelambda.api import unpack as unpack_module
from kubelambda.api.unpack import (
    UNZIPPED_LIMIT,
    Budget,
    PackageRefused,
    inspect,
    unpack,
)
from support import zips
from support.zips import CSIZE, HEADER_OFFSET, USIZE, central_records, patch_central

WHAT = "spec.code.s3 (s3://code/app.zip)"


def make_zip(
    *entries: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    return zips.make_zip(list(entries), method=method)


def info(name: str, *, mode: int = 0) -> zipfile.ZipInfo:
    return zips.entry(name, mode=mode)


def refusal(data: bytes, tmp_path: Path, budget: Budget | None = None) -> PackageRefused:
    with pytest.raises(PackageRefused) as caught:
        unpack(io.BytesIO(data), tmp_path / "out", what=WHAT, budget=budget or Budget())
    assert str(caught.value).startswith(WHAT + ": ")
    return caught.value


def test_the_limit_is_lambdas_250_mb_unzipped() -> None:
    assert UNZIPPED_LIMIT == 250 * 1024 * 1024 == Budget().limit


def test_a_package_unpacks_with_folders_and_executables(tmp_path: Path) -> None:
    data = make_zip(
        ("app.py", b"import six\n"),
        (info("vendor/", mode=stat.S_IFDIR | 0o755), b""),
        ("vendor/six.py", b"# six\n"),
        (info("bin/tool", mode=stat.S_IFREG | 0o755), b"#!/bin/sh\necho hi\n"),
        ("./pkg//mod.py", b"x = 1\n"),  # '.' and empty segments are dropped, as unzip does
    )
    budget = Budget()

    written = unpack(io.BytesIO(data), tmp_path / "task", what=WHAT, budget=budget)

    root = tmp_path / "task"
    assert (root / "app.py").read_bytes() == b"import six\n"
    assert (root / "vendor" / "six.py").read_text() == "# six\n"
    assert (root / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert stat.S_IMODE((root / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "app.py").stat().st_mode) == 0o644
    assert written == budget.used == len(b"import six\n# six\n#!/bin/sh\necho hi\nx = 1\n")


def test_layers_unpack_in_order_and_later_files_win(tmp_path: Path) -> None:
    budget = Budget()
    first = make_zip(("python/shared.py", b"first"), ("python/a.py", b"a"))
    second = make_zip(("python/shared.py", b"second"))

    unpack(io.BytesIO(first), tmp_path / "opt", what="spec.layers[0]", budget=budget)
    unpack(io.BytesIO(second), tmp_path / "opt", what="spec.layers[1]", budget=budget)

    assert (tmp_path / "opt/python/shared.py").read_text() == "second"
    assert (tmp_path / "opt/python/a.py").read_text() == "a"


BAD_NAMES = [
    ("../evil.py", "PackageUnsafePath", "climbs out of the target with '..' (zip slip"),
    ("lib/../../evil.py", "PackageUnsafePath", "zip slip refused"),
    ("/etc/cron.d/evil", "PackageUnsafePath", "is an absolute path"),
    ("C:/Windows/evil.dll", "PackageUnsafePath", "is an absolute path"),
    ("lib\\evil.py", "PackageUnsafePath", "holds a '\\'"),
]


@pytest.mark.parametrize(("name", "reason", "message"), BAD_NAMES, ids=[n for n, *_ in BAD_NAMES])
def test_paths_that_leave_the_target_are_refused(
    name: str, reason: str, message: str, tmp_path: Path
) -> None:
    refused = refusal(make_zip(("ok.py", b""), (name, b"boom")), tmp_path)

    assert refused.reason == reason
    assert message in str(refused) and repr(name) in str(refused)
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "out").exists()


SPECIAL = [
    (stat.S_IFLNK | 0o777, "PackageSymlink", "is a symbolic link"),
    (stat.S_IFIFO | 0o644, "PackageUnsafePath", "is a special file"),
    (stat.S_IFCHR | 0o644, "PackageUnsafePath", "is a special file"),
]


@pytest.mark.parametrize(("mode", "reason", "message"), SPECIAL, ids=["symlink", "fifo", "device"])
def test_symlinks_and_special_files_are_refused(
    mode: int, reason: str, message: str, tmp_path: Path
) -> None:
    refused = refusal(make_zip((info("link", mode=mode), b"/etc/passwd")), tmp_path)

    assert refused.reason == reason and message in str(refused)
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    refused = refusal(b"PK\x03\x04 this is no zip at all", tmp_path)

    assert refused.reason == "PackageNotZip" and "is not a zip file" in str(refused)


def test_a_damaged_entry_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip(("app.py", b"x = 1\n" * 1000)))
    data[40] ^= 0xFF  # inside the first entry's compressed data

    refused = refusal(bytes(data), tmp_path)

    assert refused.reason == "PackageNotZip" and "'app.py' is damaged" in str(refused)


def test_an_entry_twice_is_refused(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = make_zip(("app.py", b"one"), ("app.py", b"two"))

    assert "entry 'app.py' appears twice" in str(refusal(data, tmp_path))


def test_bzip2_and_encrypted_entries_are_refused(tmp_path: Path) -> None:
    bz2 = make_zip(("app.py", b"x" * 100), method=zipfile.ZIP_BZIP2)
    assert "compression method 12" in str(refusal(bz2, tmp_path))

    encrypted = bytearray(make_zip(("app.py", b"x")))
    at = central_records(bytes(encrypted))[0] + 8
    encrypted[at] |= 0x1  # the central directory's "encrypted" flag
    refused = refusal(bytes(encrypted), tmp_path)
    assert refused.reason == "PackageNotZip" and "is encrypted" in str(refused)


def test_a_compression_ratio_bomb_is_refused_before_writing(tmp_path: Path) -> None:
    zeros = 16 * 1024 * 1024
    data = make_zip(("zeros.bin", bytes(zeros)))
    assert zeros > unpack_module.MAX_RATIO * len(data)  # deflate squeezed it past the ratio

    refused = refusal(data, tmp_path)

    assert refused.reason == "PackageZipBomb" and "more than 1000 times" in str(refused)
    assert not (tmp_path / "out").exists()


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    """The "better zip bomb": many central records pointing at one block of data."""
    data = make_zip(("a.bin", b"a" * 4096), ("b.bin", b"b" * 4096))
    overlapping = patch_central(data, 1, HEADER_OFFSET, 0)

    refused = refusal(overlapping, tmp_path)

    assert refused.reason == "PackageZipBomb" and "overlap" in str(refused)


def test_an_entry_that_unpacks_past_its_header_is_refused(tmp_path: Path) -> None:
    """Headers are not trusted: the central directory says 10 bytes, the data hold more."""
    data = make_zip(("app.py", b"print('hello')\n" * 100))
    lying = patch_central(data, 0, USIZE, 10)

    refused = refusal(lying, tmp_path)

    assert refused.reason in ("PackageZipBomb", "PackageNotZip")
    assert "'app.py'" in str(refused)
    assert len((tmp_path / "out" / "app.py").read_bytes()) <= 10


def test_more_than_250_mb_declared_is_refused_without_unpacking(tmp_path: Path) -> None:
    data = make_zip(("big.bin", b"x" * 1000), method=zipfile.ZIP_STORED)
    huge = UNZIPPED_LIMIT + 1
    claimed = patch_central(patch_central(data, 0, USIZE, huge), 0, CSIZE, huge)

    refused = refusal(claimed, tmp_path)

    assert refused.reason == "PackageTooLarge"
    assert f"more than {UNZIPPED_LIMIT} bytes unpacked" in str(refused)
    assert not (tmp_path / "out").exists()


def test_the_budget_spans_the_package_and_its_layers(tmp_path: Path) -> None:
    budget = Budget(limit=1500)
    unpack(
        io.BytesIO(make_zip(("app.py", b"x" * 1000))), tmp_path / "task", what=WHAT, budget=budget
    )

    refused = refusal(make_zip(("python/lib.py", b"y" * 1000)), tmp_path, budget=budget)

    assert refused.reason == "PackageTooLarge" and "more than 500 bytes" in str(refused)


def test_the_budget_counts_bytes_as_they_are_written(tmp_path: Path) -> None:
    """Spent per chunk while streaming: a budget used up meanwhile stops the entry."""
    budget = Budget(limit=3 * unpack_module.CHUNK_BYTES)
    data = make_zip(("big.bin", bytes(range(256)) * (8 * 1024)))  # 2 MiB, barely compressible
    budget.used = 2 * unpack_module.CHUNK_BYTES  # another archive's share, spent after inspect

    original: Callable[..., object] = unpack_module.inspect

    def lenient(*args: object, **kwargs: object) -> object:
        kwargs["limit"] = UNZIPPED_LIMIT
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(unpack_module, "inspect", lenient)
        refused = refusal(data, tmp_path, budget=budget)

    assert refused.reason == "PackageTooLarge" and "'big.bin'" in str(refused)
    assert (tmp_path / "out" / "big.bin").stat().st_size <= unpack_module.CHUNK_BYTES


def test_too_many_entries_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(unpack_module, "MAX_ENTRIES", 10)
    data = make_zip(*((f"f{i}.py", b"") for i in range(11)))

    refused = refusal(data, tmp_path)

    assert refused.reason == "PackageTooManyEntries" and "11 entries; at most 10" in str(refused)


def test_inspect_reads_only_the_central_directory() -> None:
    data = make_zip(("app.py", b"x" * 100), ("lib/", b""), ("lib/a.py", b"y" * 50))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        contents = inspect(archive.infolist(), what=WHAT)

    assert (contents.entries, contents.declared_bytes) == (3, 150)
