"""A Function's code as a ConfigMap: the ConfigMap of inline files, the volume that mounts it at
the task root, and the code hash that rolls the pods when the code changes. Small inline code
skips the ConfigMap: its texts go into the pods' environment (deployment.code_env).

The Function reconciler calls these; a ``configMapRef`` Function gets only the volume and hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubelambda.controller.resources.meta import Owner, code_config_map_name, object_meta

__all__ = [
    "CODE_SIZE_LIMIT",
    "CodeMount",
    "CodeTooLarge",
    "code_config_map",
    "code_hash",
    "config_map_hash",
    "config_map_keys",
    "inline_code_mount",
]

# An object in etcd may be at most 1.5 MiB; ConfigMaps are refused above 1 MiB of data.
CODE_SIZE_LIMIT: Final = 1024 * 1024
_KEY_LIMIT: Final = 253


class CodeTooLarge(ValueError):
    """The inline files do not fit in one ConfigMap."""


@dataclass(frozen=True)
class CodeMount:
    """A ConfigMap to mount at the task root; ``items`` maps keys to file paths (None: as is).
    ``texts``: inline files' contents, in the order of ``items`` (None: a user's ConfigMap,
    whose contents are not known here)."""

    config_map: str
    items: tuple[tuple[str, str], ...] | None = None
    texts: tuple[str, ...] | None = None

    @property
    def size(self) -> int | None:
        """The bytes of inline files (None: a user's ConfigMap, of a size not known here)."""
        return None if self.texts is None else sum(len(text.encode()) for text in self.texts)


def code_hash(files: Mapping[str, str | bytes]) -> str:
    """sha256 over the file names and contents, independent of order; "sha256:<hex>"."""
    digest = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        data = content.encode() if isinstance(content, str) else content
        # Lengths make the encoding unambiguous: no two file sets hash the same bytes.
        digest.update(f"{len(name)}:{name}:{len(data)}:".encode())
        digest.update(data)
    return f"sha256:{digest.hexdigest()}"


def config_map_hash(config_map: Mapping[str, Any]) -> str:
    """The code hash of a user's ConfigMap (``spec.code.configMapRef``): its data and binaryData."""
    files: dict[str, str | bytes] = dict(config_map.get("data") or {})
    for key, value in (config_map.get("binaryData") or {}).items():
        files[key] = ("binary:" + value).encode()  # base64 text: hash it, marked as binary
    return code_hash(files)


def config_map_keys(file_names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """File name → ConfigMap key. Keys cannot hold '/', so nested files become
    'pkg.util.py' — or a hash-named key when that clashes or is too long. Deterministic."""
    keys: dict[str, str] = {name: name for name in file_names if "/" not in name}
    used = set(keys.values())
    for name in sorted(n for n in file_names if "/" in n):
        key = name.replace("/", ".")
        if key in used or len(key) > _KEY_LIMIT:
            key = "file-" + hashlib.sha256(name.encode()).hexdigest()[:40]
        keys[name] = key
        used.add(key)
    return keys


def code_config_map(files: Mapping[str, str], *, owner: Owner) -> dict[str, Any]:
    """The ConfigMap of a Function's inline files. Raises CodeTooLarge above 1 MiB."""
    size = sum(len(name.encode()) + len(content.encode()) for name, content in files.items())
    if size > CODE_SIZE_LIMIT:
        raise CodeTooLarge(
            f"spec.code.inline.files hold {size} bytes; a ConfigMap holds at most"
            f" {CODE_SIZE_LIMIT} (use spec.image for larger code)"
        )
    keys = config_map_keys(tuple(files))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(code_config_map_name(owner.name), owner),
        "data": {keys[name]: files[name] for name in sorted(files)},
    }


def inline_code_mount(files: Mapping[str, str], *, function_name: str) -> CodeMount:
    keys = config_map_keys(tuple(files))
    return CodeMount(
        config_map=code_config_map_name(function_name),
        items=tuple((keys[name], name) for name in sorted(files)),
        texts=tuple(files[name] for name in sorted(files)),
    )
