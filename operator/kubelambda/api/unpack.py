"""Unpacks a deployment package or layer zip as Lambda's limits allow, refusing what could write
outside the target or fill the disk: paths that leave it, symlinks and special files, archives
whose entries overlap or decompress past their headers, more than 250 MiB in all.

`kubelambda fetch-code` (a function pod's init container) and local mode call ``unpack``; the
controller calls ``inspect`` on a package's central directory before any pod starts. Every
refusal is a ``PackageRefused`` with a reason for the Function's condition and a message that
names the entry.
"""

from __future__ import annotations

import itertools
import os
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

__all__ = [
    "CHUNK_BYTES",
    "MAX_ENTRIES",
    "MAX_RATIO",
    "UNZIPPED_LIMIT",
    "Budget",
    "Contents",
    "PackageRefused",
    "inspect",
    "unpack",
]

# Lambda's CodeSizeUnzipped (GetAccountSettings): the package and all its layers, unpacked.
UNZIPPED_LIMIT: Final = 262_144_000
# No Lambda figure; bounds the files (inodes) one archive can create. Large layers (numpy,
# pandas and scipy together) hold about 15,000.
MAX_ENTRIES: Final = 50_000
# Deflate cannot exceed about 1,032:1; real code and data compress far less. An entry beyond
# this ratio (once above RATIO_FLOOR) is a bomb, not a package.
MAX_RATIO: Final = 1_000
RATIO_FLOOR: Final = 1024 * 1024
CHUNK_BYTES: Final = 1024 * 1024
# What zip tools write. bzip2 and lzma are refused: CPython decompresses them without an
# output bound per read, so one small block could take all memory before any check runs.
_METHODS: Final = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


class PackageRefused(ValueError):
    """A package or layer that will not be unpacked. ``reason`` is CamelCase, for a status
    condition; the message names the archive (``what``) and the entry."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Budget:
    """Bytes left for a function's code and layers together: one Budget spans them all."""

    limit: int = UNZIPPED_LIMIT
    used: int = 0

    def spend(self, size: int, *, what: str, doing: str) -> None:
        """Count ``size`` more bytes; ``doing`` says what took them, for the refusal."""
        self.used += size
        if self.used > self.limit:
            raise PackageRefused(
                "PackageTooLarge",
                f"{what}: {doing} takes the code and its layers past {self.limit} bytes"
                " (Lambda's 250 MB unzipped limit)",
            )


@dataclass(frozen=True)
class Contents:
    """What an archive's central directory declares: entries and their total size."""

    entries: int
    declared_bytes: int


def _refuse(reason: str, what: str, message: str) -> PackageRefused:
    return PackageRefused(reason, f"{what}: {message}")


def _segments(name: str, what: str) -> list[str]:
    """The path segments of an entry name, or a refusal when it could leave the target."""
    if not name or "\x00" in name:
        raise _refuse("PackageUnsafePath", what, f"entry {name!r} has an empty or NUL name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise _refuse(
            "PackageUnsafePath", what, f"entry {name!r} is an absolute path (zip slip refused)"
        )
    if "\\" in name:
        raise _refuse(
            "PackageUnsafePath",
            what,
            f"entry {name!r} holds a '\\' (a zip made on Windows with backslashes?): names"
            " must use '/'",
        )
    segments = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in segments:
        raise _refuse(
            "PackageUnsafePath",
            what,
            f"entry {name!r} climbs out of the target with '..' (zip slip refused)",
        )
    return segments


def _kind(info: zipfile.ZipInfo, what: str) -> str:
    """ "dir" or "file"; symlinks and special files are refused."""
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type == stat.S_IFLNK:
        raise _refuse(
            "PackageSymlink",
            what,
            f"entry {info.filename!r} is a symbolic link; packages may hold only files and"
            " folders (zip without -y, or copy the target in)",
        )
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(
            "PackageUnsafePath",
            what,
            f"entry {info.filename!r} is a special file (mode {oct(mode)}); packages may"
            " hold only files and folders",
        )
    return "dir" if info.is_dir() or file_type == stat.S_IFDIR else "file"


def inspect(
    infos: Sequence[zipfile.ZipInfo], *, what: str, limit: int = UNZIPPED_LIMIT
) -> Contents:
    """Check an archive's central directory without reading any entry: names, kinds,
    compression, declared sizes and ratios, overlaps. Raises PackageRefused."""
    if len(infos) > MAX_ENTRIES:
        raise _refuse(
            "PackageTooManyEntries",
            what,
            f"{len(infos)} entries; at most {MAX_ENTRIES} are unpacked",
        )
    seen: set[tuple[str, ...]] = set()
    declared = 0
    for info in infos:
        segments = _segments(info.filename, what)
        kind = _kind(info, what)
        key = tuple(segments)
        if key in seen and kind == "file":
            raise _refuse("PackageUnsafePath", what, f"entry {info.filename!r} appears twice")
        seen.add(key)
        if kind == "dir":
            continue
        if info.flag_bits & 0x1:
            raise _refuse(
                "PackageNotZip", what, f"entry {info.filename!r} is encrypted; it cannot be read"
            )
        if info.compress_type not in _METHODS:
            raise _refuse(
                "PackageNotZip",
                what,
                f"entry {info.filename!r} uses compression method {info.compress_type};"
                " packages use deflate or none (what zip tools write)",
            )
        _check_ratio(info.filename, info.file_size, info.compress_size, what)
        declared += info.file_size
        if declared > limit:
            raise _refuse(
                "PackageTooLarge",
                what,
                f"its entries declare more than {limit} bytes unpacked (Lambda's 250 MB"
                " unzipped limit)",
            )
    _check_overlaps(infos, what)
    return Contents(entries=len(infos), declared_bytes=declared)


def _check_ratio(name: str, size: int, compressed: int, what: str) -> None:
    if size > RATIO_FLOOR and size > MAX_RATIO * max(compressed, 1):
        raise _refuse(
            "PackageZipBomb",
            what,
            f"entry {name!r} expands {size} bytes from {compressed}, more than {MAX_RATIO}"
            " times: refused as a zip bomb",
        )


def _check_overlaps(infos: Sequence[zipfile.ZipInfo], what: str) -> None:
    """Entries whose data overlap (one block read again and again, a known bomb) are refused.
    The local header's own length is not in the central directory: only data are compared."""
    spans = sorted(
        (info.header_offset, info.header_offset + info.compress_size, info.filename)
        for info in infos
        if not info.is_dir()
    )
    for (_, end, before), (start, _, after) in itertools.pairwise(spans):
        if start < end:
            raise _refuse(
                "PackageZipBomb",
                what,
                f"entries {before!r} and {after!r} overlap in the archive: refused as a zip bomb",
            )


def unpack(
    source: str | os.PathLike[str] | BinaryIO, target: Path, *, what: str, budget: Budget
) -> int:
    """Unpack the zip ``source`` into ``target`` (created; files already there, from an earlier
    layer, are overwritten as Lambda's layer order does). Returns the bytes written; spends
    them from ``budget`` as they are written, whatever the headers say. Raises PackageRefused;
    on a refusal, part of the archive may have been written."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _refuse("PackageNotZip", what, f"is not a zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        inspect(infos, what=what, limit=budget.limit - budget.used)
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        written = 0
        for info in infos:
            destination = root.joinpath(*_segments(info.filename, what))
            if destination != root and root not in destination.parents:
                raise _refuse(
                    "PackageUnsafePath", what, f"entry {info.filename!r} leaves the target"
                )
            if _kind(info, what) == "dir":
                _make_dirs(destination, root, what, info.filename)
                continue
            _make_dirs(destination.parent, root, what, info.filename)
            written += _write(archive, info, destination, what=what, budget=budget)
        return written


def _make_dirs(path: Path, root: Path, what: str, entry: str) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise _refuse(
            "PackageUnsafePath",
            what,
            f"entry {entry!r} needs folder {path.relative_to(root)}, which is a file",
        )
    path.mkdir(parents=True, exist_ok=True)


def _write(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, *, what: str, budget: Budget
) -> int:
    name = info.filename
    executable = (info.external_attr >> 16) & 0o111
    if destination.is_dir() and not destination.is_symlink():
        raise _refuse("PackageUnsafePath", what, f"entry {name!r} would replace a folder")
    # O_NOFOLLOW: never write through a link, should one have appeared in the target.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    if destination.is_symlink():
        destination.unlink()
    # Lambda requires code readable by its runtime user; executables (bin/) stay executable.
    fd = os.open(destination, flags, 0o755 if executable else 0o644)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as entry:
            while chunk := entry.read(CHUNK_BYTES):
                written += len(chunk)
                if written > info.file_size:
                    raise _refuse(
                        "PackageZipBomb",
                        what,
                        f"entry {name!r} unpacks past the {info.file_size} bytes its header"
                        " declares: refused as a zip bomb",
                    )
                _check_ratio(name, written, info.compress_size, what)
                budget.spend(len(chunk), what=what, doing=f"unpacking {name!r}")
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise _refuse("PackageNotZip", what, f"entry {name!r} is damaged ({exc})") from None
    os.chmod(destination, 0o755 if executable else 0o644)  # the umask may have taken bits
    return written
