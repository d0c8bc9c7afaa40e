"""A function's inline code that comes in the environment instead of a volume: ``__main__.main``
takes it out of the environment (``take``) and writes it under the task root (``files``, then
``write``) before any worker starts, so the handler imports it and never sees the variables.
A pod that mounts no volume starts without the kubelet's ~300 ms wait to attach and mount one.

``KUBELAMBDA_CODE_FILES`` is a JSON array of paths relative to the task root; file i's text is
in ``KUBELAMBDA_CODE_<i>``. Cheap on purpose (os, and json when there is code): it runs on
every cold start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence

FILES = "KUBELAMBDA_CODE_FILES"
PREFIX = "KUBELAMBDA_CODE_"
# Read-only, as Lambda's /var/task is: a handler's stray write fails instead of changing the code
# the next execution environment imports (its owner could chmod it back: a guard, not a wall).
FILE_MODE = 0o444
FOLDER_MODE = 0o555


class CodeError(ValueError):
    """The code in the environment cannot be written as it says; the message names the
    variable, path or folder at fault (``__main__`` prints it and exits 1)."""


def take(env: MutableMapping[str, str]) -> dict[str, str]:
    """Take ``KUBELAMBDA_CODE_FILES`` and every ``KUBELAMBDA_CODE_<i>`` out of ``env`` and
    return them; nothing (and ``env`` as it was) when ``KUBELAMBDA_CODE_FILES`` is not set."""
    if FILES not in env:
        return {}
    names = [name for name in env if name == FILES or _is_content_name(name)]
    return {name: env.pop(name) for name in names}


def files(taken: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (path, text) pairs that ``take``'s variables describe, checked; CodeError naming
    the first problem, before anything is written."""
    # Here, not at the top: ``__main__`` imports this module before every pod's workers start,
    # and only a pod whose code comes in the environment needs json that early.
    import json

    raw = taken[FILES]
    try:
        paths = json.loads(raw)
    except ValueError as exc:
        raise CodeError(f"{FILES} is not valid JSON ({exc})") from None
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        raise CodeError(f"{FILES} must be a JSON array of file paths, got {raw[:80]!r}")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, path in enumerate(paths):
        _check(path)
        if path in seen:
            raise CodeError(f"{FILES} names {path!r} twice")
        seen.add(path)
        name = f"{PREFIX}{index}"
        if name not in taken:
            raise CodeError(f"{FILES} names {path!r} (file {index}), but {name} is not set")
        pairs.append((path, taken[name]))
    return pairs


def write(pairs: Sequence[tuple[str, str]], *, task_root: str) -> None:
    """Write each file under ``task_root``, creating the folders it needs; files end 0o444 and
    the folders this created 0o555. CodeError when a file exists already, would land outside
    the task root, or cannot be written (then the runtime exits and serves nothing)."""
    if not pairs:
        return
    root = os.path.realpath(task_root)
    if not os.path.isdir(root):
        raise CodeError(f"the task root {task_root} (LAMBDA_TASK_ROOT) is not a folder")
    if not os.access(root, os.W_OK | os.X_OK):
        # What an image that predates code in the environment gives a non-root runtime.
        raise CodeError(
            f"the task root {task_root} is not writable by uid {os.geteuid()}: the image must "
            "give the runtime's user its task root (chown 10001 /var/task)"
        )
    targets = []
    for path, text in pairs:
        target = os.path.join(root, path)
        if os.path.lexists(target):
            raise CodeError(f"{FILES} names {path!r}, which exists already in the task root")
        # Paths hold no '..' (checked); a symbolic link in the image could still lead out.
        if os.path.commonpath([root, os.path.realpath(target)]) != root:
            raise CodeError(f"{FILES} names {path!r}, which leads out of the task root {task_root}")
        targets.append((path, target, text))
    created: list[str] = []
    for path, target, text in targets:
        try:
            created += _make_folders(os.path.dirname(target), root=root)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
            with open(fd, "wb") as file:
                # The bytes the variable held: os.environ decoded them with fsdecode.
                file.write(os.fsencode(text))
                os.fchmod(fd, FILE_MODE)  # whatever the umask
        except OSError as exc:
            raise CodeError(
                f"cannot write {path!r} into the task root {task_root}: {exc.strerror or exc}"
            ) from None
    for folder in reversed(created):  # deepest first
        os.chmod(folder, FOLDER_MODE)


def _is_content_name(name: str) -> bool:
    index = name[len(PREFIX) :]
    return name.startswith(PREFIX) and index.isascii() and index.isdigit()


def _check(path: str) -> None:
    if path.startswith("/"):
        raise CodeError(
            f"{FILES} names {path!r}: an absolute path (paths are relative to the task root)"
        )
    if "\0" in path or any(part in {"", ".", ".."} for part in path.split("/")):
        raise CodeError(
            f"{FILES} names {path!r}: not a path inside the task root (no '..', '.' or empty parts)"
        )


def _make_folders(folder: str, *, root: str) -> list[str]:
    """Create ``folder`` and the folders above it, up to ``root``; those it created, outermost
    first."""
    missing = []
    while folder != root and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    missing.reverse()
    for each in missing:
        os.mkdir(each)
    return missing
