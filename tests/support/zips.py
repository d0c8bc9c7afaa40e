"""Zip files built in tests: packages and layers (with vendored modules copied from this
Python's own site-packages, no network), and crafted bad ones (central directory fields
overwritten, for zip slip, bomb and size tests)."""

from __future__ import annotations

import importlib
import io
import stat
import struct
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

# Offsets of central directory record fields (APPNOTE 4.3.12).
CSIZE, USIZE, HEADER_OFFSET = 20, 24, 42


def make_zip(
    files: Mapping[str, bytes | str] | Iterable[tuple[str | zipfile.ZipInfo, bytes | str]],
    *,
    method: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A zip of ``files`` (name or ZipInfo → content), in order."""
    entries = files.items() if isinstance(files, Mapping) else files
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, content in entries:
            data = content.encode() if isinstance(content, str) else content
            archive.writestr(name, data)
    return buffer.getvalue()


def entry(name: str, *, mode: int) -> zipfile.ZipInfo:
    """A ZipInfo with Unix ``mode`` (file type and permissions) in its external attributes."""
    made = zipfile.ZipInfo(name)
    made.external_attr = mode << 16
    made.compress_type = zipfile.ZIP_DEFLATED
    return made


def symlink(name: str) -> zipfile.ZipInfo:
    return entry(name, mode=stat.S_IFLNK | 0o777)


def module_files(module_name: str, *, under: str = "") -> dict[str, bytes]:
    """The .py files of an installed pure-Python module or package, as zip entries under
    ``under``: a third-party dependency vendored without the network."""
    module = importlib.import_module(module_name)
    path = Path(str(module.__file__))
    prefix = f"{under.rstrip('/')}/" if under else ""
    if path.name != "__init__.py":
        return {f"{prefix}{path.name}": path.read_bytes()}
    root = path.parent
    return {
        f"{prefix}{root.name}/{file.relative_to(root).as_posix()}": file.read_bytes()
        for file in sorted(root.rglob("*.py"))
    }


def central_records(data: bytes) -> list[int]:
    offsets, start = [], 0
    while (found := data.find(b"PK\x01\x02", start)) != -1:
        offsets.append(found)
        start = found + 4
    return offsets


def patch_central(data: bytes, index: int, field_offset: int, value: int) -> bytes:
    """Overwrite one 4-byte field of the index-th central directory record."""
    at = central_records(data)[index] + field_offset
    return data[:at] + struct.pack("<I", value) + data[at + 4 :]


def declaring(size: int) -> bytes:
    """A stored zip whose one entry claims ``size`` bytes (compressed and not): it passes the
    ratio check and counts ``size`` against the unpacked limit."""
    data = make_zip({"big.bin": b"x" * 100}, method=zipfile.ZIP_STORED)
    return patch_central(patch_central(data, 0, USIZE, size), 0, CSIZE, size)


def wheel(name: str, version: str, files: Mapping[str, str], into: Path) -> Path:
    """A pure-Python wheel built by hand (no build backend, no network) in ``into``."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: kubelambda-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in contents) + f"{info}/RECORD,,\n"
    contents[f"{info}/RECORD"] = record
    path = into / f"{dist}-py3-none-any.whl"
    into.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_zip(contents))
    return path
