"""A specialise request, checked (``parse``), and the fresh task folder written from its files
(``write_task_root``). ``process`` calls both for each ``POST /_kubelambda/specialize``; a
request they refuse changes nothing, and the pool pod stays waiting."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from kubelambda_runtime.warmpool.settings import OWN_PREFIX
from kubelambda_runtime.wire import config

MAX_FILES = 10_000
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255  # a file name's limit on Linux file systems
# Where and how the specialised runtime serves is the pool pod's (its container ports, its
# probe): the request may repeat these, not change them.
SERVING_VARIABLES = ("KUBELAMBDA_HOST", "KUBELAMBDA_PORT", "KUBELAMBDA_METRICS_PORT")
TASK_ROOT_VARIABLE = "LAMBDA_TASK_ROOT"
PLATFORM_PREFIX = "KUBELAMBDA_"  # the pool's container's own settings, not its image's
MAX_ENV_BYTES = 256 * 1024  # Lambda's is 4 KB; a Kubernetes env has room for more
TASK_NAME_ATTEMPTS = 100


class Refused(Exception):
    """The request cannot be served: the answer is ``status`` with ``{"error": message}`` and
    ``fields``."""

    def __init__(self, status: int, message: str, **fields: str) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields

    def document(self) -> dict[str, str]:
        return {"error": str(self), **self.fields}


class Specialization(NamedTuple):
    function: str  # namespace/name
    env: dict[str, str]  # the runtime's environment, but LAMBDA_TASK_ROOT
    files: dict[str, str]  # path relative to the task root → UTF-8 text
    settings: config.Settings  # what the runtime will read from env (its timeout: its stop)


def parse(body: bytes | bytearray, *, own: Mapping[str, str]) -> Specialization:
    """The request in ``body``, checked; ``own`` is the pool's environment (its serving
    variables are added to env where the request leaves them out). Refused(400) otherwise."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Refused(400, 'the body must be an object {"function", "env", "files"}')
    unknown = sorted(set(document) - {"function", "env", "files"})
    if unknown:
        raise Refused(400, f"unknown fields: {', '.join(unknown)}")
    function = document.get("function")
    if not isinstance(function, str) or not _is_function_name(function):
        raise Refused(400, f'"function" must be "namespace/name", got {function!r}')
    env = _environment(document.get("env"), own=own)
    files = _files(document.get("files"))
    try:
        settings = config.from_environment({**env, TASK_ROOT_VARIABLE: "/"})
    except config.ConfigError as exc:
        raise Refused(400, f'"env": {exc}') from None
    return Specialization(function, env, files, settings)


def _is_function_name(value: str) -> bool:
    namespace, slash, name = value.partition("/")
    return bool(slash and namespace and name and "/" not in name and len(value) <= 317)


def _strings(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Refused(400, f'"{field}" must be an object whose values are strings')
    return value


def _environment(value: Any, *, own: Mapping[str, str]) -> dict[str, str]:
    """The runtime's environment: the request's, over what the pool's container has from its
    image (PATH, LANG, what Python's start set: a function pod's container has the same), but
    never a KUBELAMBDA_ variable of the pool's, except where it serves."""
    requested = _strings(value, "env")
    size = sum(len(name) + len(text) + 2 for name, text in requested.items())
    if size > MAX_ENV_BYTES:
        raise Refused(400, f'"env": {size} bytes, over the limit of {MAX_ENV_BYTES}')
    for name, text in requested.items():
        if not name or "=" in name or "\0" in name or "\0" in text:
            raise Refused(400, f'"env": {name!r} is not a valid variable (or its value has NUL)')
        if name.startswith(OWN_PREFIX):
            raise Refused(400, f"\"env\": {name} is the pool's own variable, never a function's")
    if TASK_ROOT_VARIABLE in requested:
        raise Refused(
            400,
            f'"env": leave {TASK_ROOT_VARIABLE} out: the pool sets it to the folder it '
            'writes "files" to',
        )
    image = {name: text for name, text in own.items() if not name.startswith(PLATFORM_PREFIX)}
    image.pop(TASK_ROOT_VARIABLE, None)  # the image's /var/task: not this function's folder
    env = {**image, **requested}
    for name in SERVING_VARIABLES:
        if name in own and env.setdefault(name, own[name]) != own[name]:
            raise Refused(
                400, f'"env": {name} is {env[name]!r}, but this pool pod serves {own[name]!r}'
            )
    return env


def _files(value: Any) -> dict[str, str]:
    files = _strings(value, "files")
    if len(files) > MAX_FILES:
        raise Refused(400, f'"files": at most {MAX_FILES} files, got {len(files)}')
    folders: set[str] = set()
    for path, text in files.items():
        parts = check_path(path)
        try:
            text.encode()
        except UnicodeEncodeError:
            raise Refused(400, f'"files": {path!r} is not valid UTF-8 text') from None
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
    clashing = sorted(folders & set(files))
    if clashing:
        raise Refused(400, f'"files": {clashing[0]!r} is both a file and a folder')
    return files


def check_path(path: str) -> list[str]:
    """The parts of a path relative to the task root; Refused(400) for one that could reach
    outside it or that no file system would take."""
    problem = None
    if not path:
        problem = "is empty"
    elif path.startswith("/"):
        problem = "is absolute"
    elif "\0" in path:
        problem = "holds NUL"
    elif len(path.encode()) > MAX_PATH_BYTES:
        problem = f"is over {MAX_PATH_BYTES} bytes"
    else:
        parts = path.split("/")
        if any(part in ("", ".", "..") for part in parts):
            problem = "has an empty, '.' or '..' part (it must stay inside the task folder)"
        elif any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
            problem = f"has a part over {MAX_NAME_BYTES} bytes"
        else:
            return parts
    raise Refused(400, f'"files": the path {path!r} {problem}')


def new_task_folder(parent: str) -> str:
    """A folder of a new, unguessable name under ``parent``, 0755 (as a mounted /var/task:
    readable by the function, like its files). Not tempfile.mkdtemp, whose first call in a
    process took about a millisecond of the specialisation (setting up its name generator)."""
    for _ in range(TASK_NAME_ATTEMPTS):
        root = os.path.join(parent, f"task-{os.urandom(8).hex()}")
        try:
            os.mkdir(root, 0o700)
        except FileExistsError:
            continue
        os.chmod(root, 0o755)  # whatever the umask
        return root
    raise FileExistsError(f"no new folder name found under {parent}")


def write_task_root(files: Mapping[str, str], *, parent: str) -> str:
    """A new folder under ``parent`` holding ``files`` (each checked by ``check_path``); its
    path. Everything is created here, never followed: no symlink can lead a file out of it."""
    root = new_task_folder(parent)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    for path, text in files.items():
        parts = check_path(path)
        folder = os.open(root, flags)
        try:
            for part in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=folder)
                inner = os.open(part, flags, dir_fd=folder)
                os.close(folder)
                folder = inner
            out = os.open(
                parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=folder,
            )
            with open(out, "wb") as stream:
                stream.write(text.encode())
        finally:
            os.close(folder)
    return root
