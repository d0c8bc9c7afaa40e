"""Local mode's function logs as files: each line a function's runtime prints, which local mode
shows as ``[NAME] line``, also goes to ``FOLDER/NAME.log``, where ``kubelambda logs NAME`` reads
and follows it.

``kubelambda local`` opens a `LogFiles` and hands it to its output, whose writer thread calls
it (platforms/local/output.py); `read_lines` and `follow` are the reader's side. The folder is
--log-dir's, kept at stop, or by default one per gateway port under the temporary folder
(`default_folder`), removed at stop. A file over MAX_FILE_BYTES becomes NAME.log.1 (one kept).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final, TypeVar

__all__ = [
    "MAX_FILE_BYTES",
    "FolderInUse",
    "LogFiles",
    "NoLogs",
    "default_folder",
    "follow",
    "log_file",
    "read_lines",
    "writer_alive",
]

T = TypeVar("T")

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
OWNER_FILE: Final = "owner"  # the pid of the local mode writing the folder
# How local mode's output shows a function's line (platforms/local/instances.py); the name is a
# Function's, a DNS label, so it is a safe file name.
_FUNCTION_LINE: Final = re.compile(r"^\[([a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)\] ")


class FolderInUse(OSError):
    """Another running local mode writes this folder."""


class NoLogs(Exception):
    """There is nothing to read: no local mode writes the folder, or the function wrote nothing
    yet. The message says which and what to do."""


def default_folder(port: int) -> Path:
    """The log folder of the local mode serving ``port`` when it was given no --log-dir."""
    return Path(tempfile.gettempdir()) / f"kubelambda-{os.getuid()}" / f"local-{port}"


def log_file(folder: Path, function: str) -> Path:
    return folder / f"{function}.log"


def _rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def _owner(folder: Path) -> int | None:
    try:
        return int((folder / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def writer_alive(folder: Path) -> bool:
    """Whether a running local mode writes ``folder``."""
    pid = _owner(folder)
    return pid is not None and _alive(pid)


def _private_parent(folder: Path) -> None:
    """The default folders' parent in the shared temporary folder: made 0700, and refused when
    it is not this user's own directory (another user could read the logs, or plant a link)."""
    parent = folder.parent
    parent.mkdir(mode=0o700, exist_ok=True)
    info = parent.lstat()
    if not parent.is_dir() or parent.is_symlink() or info.st_uid != os.getuid():
        raise OSError(f"{parent} is not a directory of this user's own")


class LogFiles:
    """Each function's lines into its file; used by one thread (local mode's output writer)."""

    def __init__(self, folder: Path, *, temporary: bool, max_bytes: int = MAX_FILE_BYTES):
        self.folder = folder
        self._temporary = temporary
        self._max_bytes = max_bytes
        self._files: dict[str, tuple[BinaryIO, int]] = {}  # name → (file, its size)

    @classmethod
    def open(cls, folder: Path, *, temporary: bool, max_bytes: int = MAX_FILE_BYTES) -> LogFiles:
        """Take ``folder`` for this process: refused (FolderInUse) while another running local
        mode writes it; the files of one that stopped are removed. ``temporary``: the default
        folder, removed at close. OSError when the folder cannot be made."""
        if temporary:
            _private_parent(folder)
        folder.mkdir(parents=True, exist_ok=True)
        pid = _owner(folder)
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise FolderInUse(f"{folder} is written by the local mode of process {pid}")
        for stale in (*folder.glob("*.log"), *folder.glob("*.log.1")):
            stale.unlink(missing_ok=True)
        (folder / OWNER_FILE).write_text(f"{os.getpid()}\n")
        return cls(folder, temporary=temporary, max_bytes=max_bytes)

    def write(self, line: str) -> None:
        """Append ``line`` to its function's file if it is a function's line; others (local
        mode's own) are not any function's."""
        found = _FUNCTION_LINE.match(line)
        if found is None:
            return
        name = found[1]
        data = f"{line[found.end() :]}\n".encode("utf-8", "replace")
        file, size = self._files.get(name) or self._open(name)
        if size + len(data) > self._max_bytes and size > 0:
            file.close()
            path = log_file(self.folder, name)
            os.replace(path, _rotated(path))
            file, size = self._open(name)
        file.write(data)
        self._files[name] = (file, size + len(data))

    def _open(self, name: str) -> tuple[BinaryIO, int]:
        file = log_file(self.folder, name).open("ab")
        return file, file.tell()

    def flush(self) -> None:
        """Make what was written visible to readers (called when the output is idle)."""
        for file, _ in self._files.values():
            file.flush()

    def close(self) -> None:
        for file, _ in self._files.values():
            with contextlib.suppress(OSError):
                file.close()
        self._files.clear()
        if self._temporary:
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            (self.folder / OWNER_FILE).unlink(missing_ok=True)


def _check_folder(folder: Path, function: str, *, where: str) -> Path:
    if not folder.is_dir():
        raise NoLogs(
            f"no local mode writes logs to {folder}: start `kubelambda local` ({where}),"
            " or name its folder with --log-dir"
        )
    return log_file(folder, function)


def _written(folder: Path) -> str:
    names = sorted(path.stem for path in folder.glob("*.log"))
    return ", ".join(names) if names else "none yet"


def read_lines(folder: Path, function: str, *, tail: int | None, where: str) -> list[str]:
    """The lines ``function`` wrote (the last ``tail`` of them, if given). NoLogs when no local
    mode wrote ``folder`` or the function has written nothing; ``where`` says which local mode
    ``folder`` belongs to, for that message."""
    path = _check_folder(folder, function, where=where)
    if not path.exists():
        raise NoLogs(
            f"{function} has written nothing in {folder} (functions that have: {_written(folder)})"
            "; a function writes once it runs, at its first invocation"
        )
    lines: list[str] = []
    for part in (_rotated(path), path):
        with contextlib.suppress(FileNotFoundError):
            lines += part.read_bytes().decode("utf-8", "replace").splitlines()
    return _last(lines, tail)


def follow(
    folder: Path,
    function: str,
    *,
    emit: Callable[[str], None],
    tail: int | None,
    where: str,
    interval: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Emit ``function``'s lines as it writes them (the last ``tail`` of those already written
    first), across rotations, until the local mode writing ``folder`` stops. Waits for a
    function that has written nothing yet. NoLogs when no local mode wrote ``folder``.
    (A file rotated twice between two looks, 32 MiB in ``interval``, loses the middle one.)"""
    path = _check_folder(folder, function, where=where)
    file = _open(path)
    earlier: list[bytes] = []
    with contextlib.suppress(FileNotFoundError):
        earlier += _rotated(path).read_bytes().splitlines()
    pending = b""
    if file is not None:
        *lines, pending = file.read().split(b"\n")
        earlier += lines
    for line in _last(earlier, tail):
        emit(line.decode("utf-8", "replace"))
    try:
        while True:
            # Liveness first, the file after: what the writer wrote before it stopped is read
            # before the loop ends.
            alive = writer_alive(folder)
            if file is None:
                file = _open(path)
            if file is not None:
                pending = _drain(file, pending, emit)
                if _replaced(file, path):
                    pending = _drain(file, pending, emit)  # the rest of the rotated file
                    file.close()
                    file = _open(path)
                    continue
            if not alive:
                break
            sleep(interval)
    finally:
        if file is not None:
            file.close()
    if pending:
        emit(pending.decode("utf-8", "replace"))


def _open(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _last(lines: list[T], tail: int | None) -> list[T]:
    if tail is None:
        return lines
    return lines[-tail:] if tail > 0 else []


def _drain(file: BinaryIO, pending: bytes, emit: Callable[[str], None]) -> bytes:
    """Emit the whole lines now in ``file``; return the unfinished one."""
    data = pending + file.read()
    *lines, rest = data.split(b"\n")
    for line in lines:
        emit(line.decode("utf-8", "replace"))
    return rest


def _replaced(file: BinaryIO, path: Path) -> bool:
    """Whether ``path`` is no longer ``file`` (rotated away, or the folder removed)."""
    try:
        return os.stat(path).st_ino != os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return True
