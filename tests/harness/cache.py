"""Where the harness keeps what it builds: one cache folder outside the checkout, keyed by version.

Layout under `${KUBELAMBDA_CACHE:-~/.cache/kubelambda}`: bin/<name>-<version> (binaries),
gopath/ (GOPATH and module cache), gocache/ (Go build cache), build/<family>-<version>/
(generated wrapper modules), logs/ (build logs), locks/, build-times.jsonl.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """The cache root, created if missing; read from the environment on every call."""
    root = Path(os.environ.get("KUBELAMBDA_CACHE") or "~/.cache/kubelambda").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(name: str) -> Path:
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def binary_path(name: str, version: str) -> Path:
    return subdir("bin") / f"{name}-{version}"


@contextmanager
def exclusive(lock_name: str) -> Iterator[None]:
    """Hold a file lock across processes, so two test sessions never build the same part at once
    (and never run two big Go builds side by side on a 2-core machine)."""
    path = subdir("locks") / f"{lock_name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
