"""Builds Go programs from the module proxy through generated wrapper modules, for `binaries`.

A wrapper is a tiny main module in the cache that requires the release and, where the release's
own go.mod points requirements at local folders (Kubernetes' staging modules), replaces them
with their published twins. It is generated from that go.mod, never typed by hand. Downloads
report the bytes they fetched, builds the packages they compiled (`progress`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.builds import Measure, PartUnavailable, run_step
from harness.cache import subdir
from harness.progress import REPORTER, Meter

# A line `go build -v` prints for each package it compiles: an import path, nothing else.
PACKAGE_LINE = re.compile(rb"[A-Za-z0-9_.~+/-]+")

GO_HOW = (
    "Go comes with the machine (`go version`); these builds need the Go module proxy and "
    "`go` on PATH. Build every part ahead of time with scripts/build-parts."
)


@dataclass(frozen=True)
class Wrapper:
    """One release to build from, and the main packages wanted from it."""

    family: str
    module: str
    version: str
    packages: tuple[str, ...]
    # Version of the published twins of requirements the release replaces with local folders
    # (k8s.io/kubernetes v1.34.x requires k8s.io/api v0.0.0 => ./staging/...; twin v0.34.x).
    twin_version: str | None = None

    @property
    def directory(self) -> Path:
        return subdir("build") / f"{self.family}-{self.version}"


def go_env() -> dict[str, str]:
    """The environment of every Go command: module and build caches in the harness cache."""
    env = dict(os.environ)
    env.update(
        GOPATH=str(subdir("gopath")),
        GOMODCACHE=str(subdir("gopath") / "pkg" / "mod"),
        GOCACHE=str(subdir("gocache")),
        CGO_ENABLED="0",
        GOWORK="off",
        GO111MODULE="on",
        # Writable module cache, so the cache folder can be removed with plain rm -rf.
        GOFLAGS="-modcacherw -buildvcs=false",
    )
    return env


def go_command() -> str:
    # /usr/local/go is where the machine image installs Go; a CI shell may not have it on PATH.
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise PartUnavailable(f"`go` is not on PATH. {GO_HOW}")
    return go


def _go_json(argv: list[str], *, what: str) -> Any:
    try:
        done = subprocess.run(
            [go_command(), *argv],
            env=go_env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PartUnavailable(f"{what}: `go {' '.join(argv)}` timed out. {GO_HOW}") from exc
    if done.returncode != 0:
        raise PartUnavailable(
            f"{what}: `go {' '.join(argv)}` failed:\n{done.stdout}{done.stderr}\n{GO_HOW}"
        )
    return json.loads(done.stdout)


def tree_bytes(root: Path) -> int:
    """The summed size of the files under `root` (0 if it is missing)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # replaced or removed by the go command meanwhile
    return total


def download_meter(downloads: Path | None = None, *, every: float = 10.0) -> Meter:
    """Progress of a download into the module cache: the bytes its download folder gained. The
    folder is walked at most once per `every` seconds, however often the line is redrawn."""
    root = downloads or Path(go_env()["GOMODCACHE"]) / "cache" / "download"
    before = tree_bytes(root)
    last: list[tuple[float, str]] = []

    def reading() -> str:
        now = time.monotonic()
        if not last or now - last[0][0] >= every:
            last[:] = [(now, f"{(tree_bytes(root) - before) / 2**20:.0f} MiB downloaded")]
        return last[0][1]

    return reading


def package_meter(log: Path, *, total: Callable[[], int | None]) -> Meter:
    """Progress of a `go build -v` logging to `log`: the packages compiled since now, out of
    at most `total()` (asked once, on the first reading; the build cache may hold the rest)."""
    offset = log.stat().st_size if log.exists() else 0
    known: list[int | None] = []

    def reading() -> str:
        if not known:
            known.append(total())
        with log.open("rb") as output:
            output.seek(offset)
            done = sum(1 for line in output.read().splitlines() if PACKAGE_LINE.fullmatch(line))
        return f"{done} of up to {known[0]} packages compiled" if known[0] else f"{done} compiled"

    return reading


def count_packages(directory: Path, package: str, *, tags: str) -> int | None:
    """How many packages `package` is built from (itself and every dependency, standard library
    included); None if `go list` cannot say. Runs at the lowest priority, beside the build."""
    try:
        done = subprocess.run(
            ["nice", "-n", "19", go_command(), "list", "-deps", f"-tags={tags}", package],
            cwd=directory,
            env=go_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, PartUnavailable):
        return None
    return len(done.stdout.split()) if done.returncode == 0 else None


def release_gomod(module: str, version: str) -> dict[str, Any]:
    """The release's own go.mod as `go mod edit -json` sees it (downloaded through the proxy)."""
    info = _go_json(["mod", "download", "-json", f"{module}@{version}"], what=f"{module}@{version}")
    if info.get("Error"):
        raise PartUnavailable(f"{module}@{version}: {info['Error']}\n{GO_HOW}")
    gomod: dict[str, Any] = _go_json(
        ["mod", "edit", "-json", info["GoMod"]], what=f"{module}@{version} go.mod"
    )
    return gomod


def local_replacements(gomod: dict[str, Any]) -> list[str]:
    """Requirements at v0.0.0 that the release replaces with a folder of its own tree."""
    local = {
        r["Old"]["Path"]
        for r in gomod.get("Replace") or []
        if r["New"]["Path"].startswith(("./", "../")) and "Version" not in r["New"]
    }
    return sorted(
        r["Path"]
        for r in gomod.get("Require") or []
        if r["Version"] == "v0.0.0" and r["Path"] in local
    )


def wrapper_gomod(wrapper: Wrapper, release: dict[str, Any]) -> str:
    lines = [
        f"// Generated by tests/harness/gomodules.py from {wrapper.module}@{wrapper.version}'s",
        "// own go.mod; regenerated when missing, never edited by hand.",
        f"module kubelambda.test/parts/{wrapper.family}",
        "",
        f"go {release['Go']}",
    ]
    # The main module decides the GODEBUG defaults, so carry the release's over.
    lines += [f"godebug {d['Key']}={d['Value']}" for d in release.get("GoDebug") or []]
    lines += ["", f"require {wrapper.module} {wrapper.version}", ""]
    staging = local_replacements(release)
    if staging:
        if wrapper.twin_version is None:
            raise PartUnavailable(
                f"{wrapper.module}@{wrapper.version} replaces {len(staging)} requirements with "
                "local folders, and no published twin version is pinned for them"
            )
        lines.append("replace (")
        lines += [f"\t{path} => {path} {wrapper.twin_version}" for path in staging]
        lines.append(")")
    return "\n".join(lines) + "\n"


def tools_go(wrapper: Wrapper) -> str:
    # The usual tools.go: it is never compiled (build tag), but `go mod tidy` sees the imports
    # and records every module the main packages need.
    imports = "\n".join(f'\t_ "{package}"' for package in wrapper.packages)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def prepare(wrapper: Wrapper, *, measure: Measure, log: Path, how_to_get: str) -> Path:
    """Generate the wrapper module and resolve its dependencies, once per version."""
    directory = wrapper.directory
    ready = directory / ".ready"
    if ready.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    downloaded = download_meter()  # one count across both phases: both fetch modules
    with REPORTER.phase(f"go mod download {wrapper.module}@{wrapper.version}", meter=downloaded):
        release = release_gomod(wrapper.module, wrapper.version)
    (directory / "go.mod").write_text(wrapper_gomod(wrapper, release))
    (directory / "go.sum").unlink(missing_ok=True)
    (directory / "tools.go").write_text(tools_go(wrapper))
    run_step(
        [go_command(), "mod", "tidy"],
        what=f"go mod tidy for {wrapper.module}@{wrapper.version}",
        log=log,
        cwd=directory,
        env=go_env(),
        measure=measure,
        how_to_get=how_to_get,
        meter=downloaded,
    )
    ready.write_text("")
    return directory


def build(
    wrapper: Wrapper,
    package: str,
    *,
    output: Path,
    tags: str,
    ldflags: str,
    measure: Measure,
    log: Path,
    how_to_get: str,
) -> None:
    """`go build` one main package of a prepared wrapper into `output` (atomically)."""
    partial = output.with_name(output.name + ".partial")
    directory = wrapper.directory
    run_step(
        [
            go_command(),
            "build",
            "-v",  # names each package as it is compiled, for the progress line (and the log)
            "-trimpath",
            f"-tags={tags}",
            f"-ldflags={ldflags}",
            "-o",
            str(partial),
            package,
        ],
        what=f"go build {package}@{wrapper.version}",
        log=log,
        cwd=directory,
        env=go_env(),
        measure=measure,
        how_to_get=how_to_get,
        meter=package_meter(log, total=lambda: count_packages(directory, package, tags=tags)),
    )
    os.replace(partial, output)
