"""Local mode's deployment packages, layers and requirements.txt environments, cached by
content: a package unpacked once per SHA-256, a Function's layers once per sequence of
SHA-256s, a requirements.txt installed (``pip install --target``) once per hash, as
``sam build`` would install it.

`functions.prepare` calls ``LocalPackages`` once per Function; zips are read with this
machine's AWS credentials and unpacked by the same rules as in a pod (`kubelambda.api.unpack`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kubelambda.api.function import Function, S3Object
from kubelambda.api.packages import (
    PackageError,
    PackageStore,
    ResolvedPackage,
    S3Access,
    function_zips,
)
from kubelambda.api.unpack import Budget, PackageRefused, unpack

__all__ = ["PIP_TIMEOUT_SECONDS", "CodeUnavailable", "LocalPackages", "default_cache_dir"]

PIP_TIMEOUT_SECONDS: Final = 900
# The lines of pip's output a failure quotes.
_PIP_TAIL: Final = 15


class CodeUnavailable(ValueError):
    """A Function's code cannot be prepared here: a zip missing, refused or unreadable, or a
    requirements.txt that pip could not install. The message names the Function and why."""


def default_cache_dir() -> Path:
    """~/.cache/kubelambda (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubelambda"


@dataclass
class LocalPackages:
    """One Function's zips and dependencies; ``budget`` spans its package and its layers."""

    store: PackageStore | None
    cache_dir: Path
    scratch: Path
    region: str
    budget: Budget = field(default_factory=Budget)

    def _where(self, function: Function) -> str:
        return f"Function {function.namespace}/{function.name}"

    def _store(self, function: Function, what: str) -> PackageStore:
        if self.store is None:
            raise CodeUnavailable(f"{self._where(function)}: {what}: no S3 reader")
        return self.store

    def _access(self, source: S3Object) -> S3Access:
        return S3Access(
            endpoint=source.endpoint, region=source.region or self.region, default_chain=True
        )

    def _known(self, function: Function, source: S3Object, what: str) -> tuple[Path, str | None]:
        """Where this object's SHA-256 is noted (by endpoint, bucket, key, version, ETag and
        size, from a HEAD), and the SHA-256 noted there, if any: an object seen before is not
        downloaded again."""
        try:
            seen = self._store(function, what).head(source, self._access(source), what=what)
        except (PackageError, PackageRefused) as exc:
            raise CodeUnavailable(f"{self._where(function)}: {exc}") from None
        identity = json.dumps(
            [source.endpoint, source.bucket, source.key, seen.version_id, seen.etag, seen.size]
        )
        note = self.cache_dir / "objects" / hashlib.sha256(identity.encode()).hexdigest()
        sha256 = note.read_text().strip() if note.is_file() else None
        if sha256 is not None and source.sha256 not in (None, sha256):
            sha256 = None  # the spec pins another content: fetch, which says so
        return note, sha256

    def _download(
        self, function: Function, source: S3Object, what: str, note: Path
    ) -> tuple[ResolvedPackage, Path]:
        """The zip in a file under ``scratch``; its SHA-256 noted at ``note``."""
        store = self._store(function, what)
        self.scratch.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.scratch, prefix="package-", suffix=".zip")
        try:
            with os.fdopen(handle, "wb") as file:
                resolved = store.fetch(source, self._access(source), file, what=what)
        except (PackageError, PackageRefused) as exc:
            os.unlink(name)
            raise CodeUnavailable(f"{self._where(function)}: {exc}") from None
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(resolved.sha256)
        return resolved, Path(name)

    def _cached(self, kind: str, key: str, what: str) -> Path | None:
        """The cache entry ``kind/key`` if complete, its bytes spent from the budget."""
        folder = self.cache_dir / kind
        final, marker = folder / key, folder / f"{key}.json"
        if not (final.is_dir() and marker.is_file()):
            return None
        size = int(json.loads(marker.read_text())["unpacked"])
        self.budget.spend(size, what=what, doing=f"its {size} bytes (cached)")
        return final

    def _unpacked(
        self, function: Function, kind: str, key: str, zips: Sequence[tuple[str, Path]]
    ) -> Path:
        """``zips`` (what, file) unpacked in order into the cache entry ``kind/key``."""
        folder = self.cache_dir / kind
        final, marker = folder / key, folder / f"{key}.json"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(dir=folder, prefix=f".{key[:16]}-"))
            try:
                before = self.budget.used
                for what, file in zips:
                    unpack(file, partial, what=what, budget=self.budget)
                if final.exists():  # an entry left without its marker: not trusted
                    shutil.rmtree(final)
                partial.rename(final)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            marker.write_text(json.dumps({"unpacked": self.budget.used - before}))
            return final
        except PackageRefused as exc:
            raise CodeUnavailable(f"{self._where(function)}: {exc}") from None
        finally:
            for _, file in zips:
                file.unlink(missing_ok=True)

    def code(self, function: Function) -> Path:
        """The unpacked ``spec.code.s3`` package."""
        [(_, what, source)] = [z for z in function_zips(function) if z[0] == "task"]
        note, sha256 = self._known(function, source, what)
        try:
            found = self._cached("packages", sha256, what) if sha256 else None
        except PackageRefused as exc:
            raise CodeUnavailable(f"{self._where(function)}: {exc}") from None
        if found is not None:
            return found
        package, file = self._download(function, source, what, note)
        return self._unpacked(function, "packages", package.sha256, [(what, file)])

    def layers(self, function: Function) -> Path | None:
        """The Function's layers unpacked in order into one folder (its /opt), or None."""
        zips = [
            (what, source) for target, what, source in function_zips(function) if target == "opt"
        ]
        if not zips:
            return None
        known = [(what, source, *self._known(function, source, what)) for what, source in zips]
        if all(sha256 for *_, sha256 in known):
            key = _layers_key([sha256 for *_, sha256 in known if sha256])
            try:
                found = self._cached("layers", key, zips[0][0])
            except PackageRefused as exc:
                raise CodeUnavailable(f"{self._where(function)}: {exc}") from None
            if found is not None:
                return found
        files: list[tuple[str, Path]] = []
        shas = []
        try:
            for what, source, note, _ in known:
                package, file = self._download(function, source, what, note)
                files.append((what, file))
                shas.append(package.sha256)
        except BaseException:
            for _, file in files:
                file.unlink(missing_ok=True)
            raise
        return self._unpacked(function, "layers", _layers_key(shas), files)

    def requirements(self, function: Function, requirements: Path) -> Path | None:
        """The folder where ``requirements`` is installed (once per hash of the file, this
        Python and this platform), or None when the code has no requirements.txt."""
        if not requirements.is_file():
            return None
        digest = hashlib.sha256(requirements.read_bytes())
        digest.update(f"{sys.implementation.cache_tag} {platform.machine()}".encode())
        envs = self.cache_dir / "envs"
        final = envs / digest.hexdigest()[:32]
        if (final / ".kubelambda-complete").is_file():
            return final
        envs.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=envs, prefix=".installing-"))
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
            str(partial),
            "-r",
            str(requirements),
        ]
        try:
            done = subprocess.run(
                command,
                cwd=requirements.parent,
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            raise CodeUnavailable(
                f"{self._where(function)}: pip install -r {requirements} took more than"
                f" {PIP_TIMEOUT_SECONDS} s"
            ) from None
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-_PIP_TAIL:])
            raise CodeUnavailable(
                f"{self._where(function)}: pip install -r {requirements} failed"
                f" (exit {done.returncode}):\n{tail}"
            )
        (partial / ".kubelambda-complete").write_text(requirements.read_text())
        if final.exists():  # another local mode finished first, or a stale attempt
            shutil.rmtree(final, ignore_errors=True)
        try:
            partial.rename(final)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)  # the other one's is as good
        return final


def _layers_key(sha256s: Sequence[str]) -> str:
    """The cache key of layers, in order, by their SHA-256s."""
    return hashlib.sha256("\n".join(sha256s).encode()).hexdigest()
