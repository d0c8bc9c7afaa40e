"""Container images without a registry: a debootstrap Debian root with python3, the project
installed on top with pip, committed with buildah, exported as docker-archives for `ctr import`;
the broker's image is the cached static nats-server alone on scratch.

`ensure_images()` is what the e2e cluster calls; everything lands in the cache's images/ folder.
The root is built once; the project layer is rebuilt only when the project's sources change, since
the images' tag is a hash of those sources (never `latest`, so the kubelet never tries to pull).
Each image built says on stderr what it does and how long it took (`progress`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import binaries, gomodules
from harness.buildah import Buildah, base_image, commit_project, export
from harness.builds import Measure, PartUnavailable, last_seconds, record, run_step
from harness.cache import exclusive, subdir
from harness.debian import ensure_node_packages
from harness.progress import REPORTER, Meter, home_relative

# The project the images carry: this checkout, or another copy of it (to try a change in the
# e2e tier without touching the checkout).
REPO = Path(
    os.environ.get("KUBELAMBDA_IMAGE_SOURCES") or Path(__file__).resolve().parents[2]
).resolve()
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# python3 only: the project layer is installed from the host's pip (same Python minor, same
# glibc), so the image needs neither pip nor a compiler.
BASE_PACKAGES = ("python3",)
SITE_PACKAGES = "/usr/local/lib/python3.11/dist-packages"  # on Debian python3's sys.path
RUNTIME_UID = 10001
# The images ship a current .pyc beside every module: their root is read-only to the runtime's
# user (and PYTHONDONTWRITEBYTECODE is set), so a module without one is compiled again on every
# start of every container, in the cold start. pip compiles what it installs (--compile); Debian's
# python3 compiles the standard library when debootstrap configures it. Both are checked.
BYTECODE = "pip --compile, checked"
# What `pip install .` reads besides the two source roots: the build config, setup.py (the
# gateway's modules it compiles) and its build backend.
BUILD_FILES = ("pyproject.toml", "README.md", "setup.py", "scripts/build_backend.py")
PYTHON_LIB = "usr/lib/python3.11"
PAUSE_SOURCE = "build/pause/linux/pause.c"
# As runtime/Dockerfile's: isolated (-I), so a function's files never replace the runtime's.
RUNTIME_ENTRYPOINT = '["python", "-I", "-u", "-m", "kubelambda_runtime"]'
CONTROL_ENTRYPOINT = '["kubelambda"]'
NATS_ENTRYPOINT = '["/nats-server"]'
# The chart's default nats.image tag is the server's version; the harness builds that name.
NATS_IMAGE = f"localhost/kubelambda-nats:{binaries.NATS_SERVER_VERSION.removeprefix('v')}"

# Seconds of each build on 2 shared cores (build-times.jsonl of 2026-12-04; the control plane's
# of 2026-12-06, as it compiles the gateway), for the estimate in its first line when this
# machine has no figure of its own yet.
COLD_SECONDS = {"root": 90.0, "pause": 5.0, "runtime": 30.0, "control-plane": 140.0, "nats": 5.0}
# The phases of each kind's build after the root, for the "[2/3]" in its progress lines.
PHASES = {"pause": 3, "runtime": 3, "control-plane": 3, "nats": 2}

HOW_TO_GET = (
    "The e2e images are built by `scripts/build-images` (as root: debootstrap, buildah; about "
    "2 min the first time, cached under ${KUBELAMBDA_CACHE:-~/.cache/kubelambda}/images). "
    "Build logs are in the cache's logs/ folder."
)


@dataclass(frozen=True)
class Image:
    """One image as containerd will know it, and the docker-archive that carries it."""

    name: str  # fully qualified, e.g. localhost/kubelambda-runtime:0123abcd4567
    archive: Path


@dataclass(frozen=True)
class Images:
    pause: Image
    runtime: Image
    control_plane: Image
    nats: Image

    def all(self) -> tuple[Image, ...]:
        return (self.pause, self.runtime, self.control_plane, self.nats)


def _digest(parts: Iterable[bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()[:12]


def _project_files() -> list[Path]:
    """What `pip install .` reads: the build config and both source roots (no caches); and
    buildah.py, which lays the project onto the base (its users, the task root's owner)."""
    files = [REPO / name for name in (*BUILD_FILES, "tests/harness/buildah.py")]
    for root in ("operator", "runtime"):
        files += sorted(
            p
            for p in (REPO / root).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
        )
    return files


def source_tag() -> str:
    """The images' tag: a hash of the project's sources and of the base root's recipe."""
    recipe = f"{SUITE} {' '.join(BASE_PACKAGES)} {SITE_PACKAGES} {RUNTIME_UID} {BYTECODE}"
    parts = [f"{recipe} {RUNTIME_ENTRYPOINT} {CONTROL_ENTRYPOINT}".encode()]
    for path in _project_files():
        parts += [str(path.relative_to(REPO)).encode(), path.read_bytes()]
    return _digest(parts)


def images_dir() -> Path:
    return subdir("images")


def _log(name: str) -> Path:
    return subdir("logs") / f"images-{name}.log"


def _run(
    argv: Sequence[str],
    *,
    what: str,
    log: Path,
    measure: Measure,
    cwd: Path,
    meter: Meter | None = None,
    env: Mapping[str, str] = os.environ,
) -> None:
    run_step(
        list(argv),
        what=what,
        log=log,
        cwd=cwd,
        env=env,
        measure=measure,
        how_to_get=HOW_TO_GET,
        timeout=1800,
        meter=meter,
    )


def ensure_base_root() -> Path:
    """A minbase Debian root with python3, made once by debootstrap (about a minute)."""
    key = _digest([SUITE.encode(), " ".join(BASE_PACKAGES).encode()])
    home = images_dir() / f"root-{SUITE}-{key}"
    rootfs = home / "rootfs"
    if (home / ".ready").exists():
        return rootfs
    ensure_node_packages()
    part = f"image root (debootstrap {SUITE} minbase + python3)"
    with exclusive("images-root"):
        if (home / ".ready").exists():
            return rootfs
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        measure = Measure()
        with REPORTER.step(
            f"image root {SUITE} + {' '.join(BASE_PACKAGES)}",
            doing=f"building with debootstrap from {MIRROR}",
            why=f"first run only, cached in {home_relative(home)}",
            expect=last_seconds(part) or COLD_SECONDS["root"],
        ):
            _debootstrap(rootfs, home=home, measure=measure)
        (home / ".ready").write_text(key)
        record(part, key, measure)
    return rootfs


def stale_bytecode(root: Path) -> list[Path]:
    """The modules under `root` that have no current .pyc for this interpreter's version (the
    images' Python minor): none, or one whose recorded source mtime or size differs. Symbolic
    links are left out (their target is checked where it lies)."""
    stale = []
    for source in sorted(root.rglob("*.py")):
        if source.is_symlink() or not source.is_file():
            continue
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            with cached.open("rb") as pyc:
                header = pyc.read(16)
        except OSError:
            stale.append(source)
            continue
        if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
            stale.append(source)
            continue
        if int.from_bytes(header[4:8], "little") & 1:
            continue  # hash-based: valid whatever the file times
        stat = source.stat()
        recorded = (int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little"))
        if recorded != (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF):
            stale.append(source)
    return stale


def _require_bytecode(root: Path, *, what: str) -> None:
    stale = stale_bytecode(root)
    if stale:
        listed = ", ".join(str(path.relative_to(root)) for path in stale[:10])
        raise PartUnavailable(
            f"{len(stale)} modules of {what} ({root}) have no current .pyc, so every container "
            f"would compile them at each start: {listed}{' ...' if len(stale) > 10 else ''}. "
            f"{HOW_TO_GET}"
        )


def _debootstrap(rootfs: Path, *, home: Path, measure: Measure) -> None:
    """The root from the Debian mirror, less apt's caches."""
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(rootfs),
            MIRROR,
        ],
        what=f"debootstrap {SUITE}",
        log=_log("root"),
        measure=measure,
        cwd=home,
        meter=lambda: _fetched(rootfs / "var/cache/apt/archives"),
    )
    # apt's lists and the downloaded .debs are no use in an image that never runs apt.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / junk).glob("*"):
            if entry.is_file():
                entry.unlink()


def _fetched(archives: Path) -> str:
    """debootstrap's progress: the packages it has fetched into the root so far."""
    debs = [p.stat().st_size for p in archives.glob("*.deb")] if archives.is_dir() else []
    return f"{len(debs)} packages fetched ({sum(debs) / 2**20:.0f} MiB)" if debs else ""


def _pause_source() -> Path:
    module = (
        Path(gomodules.go_env()["GOMODCACHE"]) / f"k8s.io/kubernetes@{binaries.KUBERNETES_VERSION}"
    )
    source = module / PAUSE_SOURCE
    if not source.exists():
        raise PartUnavailable(
            f"{source} is missing: it comes with the k8s.io/kubernetes module download that "
            f"`scripts/build-parts kube-apiserver` makes. {binaries.HOW_TO_GET}"
        )
    return source


def install_project(
    staging: Path,
    *,
    extra: str,
    compiled: bool,
    measure: Measure,
    log: Path,
    dependencies: bool = True,
) -> None:
    """pip-install the project (from a copy, so no build/ or egg-info lands in the checkout)
    into `staging`, with the host's interpreter: same Python minor and glibc as the image;
    `compiled`, with the gateway's request path compiled by mypyc (setup.py); without its
    `dependencies` where the interpreter has them (the benchmarks' compiled gateway)."""
    source = staging.parent / "source"
    (source / "scripts").mkdir(parents=True)
    for name in BUILD_FILES:
        shutil.copy2(REPO / name, source / name)
    for root in ("operator", "runtime"):
        shutil.copytree(
            REPO / root, source / root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    requirement = f"{source}{extra}"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--quiet",
            "--compile",
            f"--target={staging}",
            requirement,
            *(["boto3>=1.34"] if dependencies else ["--no-deps"]),
        ],
        what=f"pip install {requirement}",
        log=log,
        measure=measure,
        cwd=staging.parent,
        env={**os.environ, "KUBELAMBDA_COMPILE": "1" if compiled else "0"},
    )


def require_compiled(site: Path, *, log: Path) -> None:
    """Every module setup.py compiles is an extension module in `site`, not its source alone."""
    modules = runpy.run_path(str(REPO / "setup.py"), run_name="setup")["COMPILED"]
    missing = [
        module
        for module in modules
        if not any(
            (site / Path(module).parent.relative_to("operator")).glob(
                f"{Path(module).stem}.cpython-*.so"
            )
        )
    ]
    if missing:
        raise PartUnavailable(
            f"the build did not compile {', '.join(missing)} (see {home_relative(log)}); it "
            "needs gcc and the Python headers (scripts/setup installs gcc) and mypy (PyPI)"
        )


def _project_image(
    buildah: Buildah,
    *,
    base: str,
    name: str,
    extra: str,
    compiled: bool,
    entrypoint: str,
    user: int,
    measure: Measure,
) -> None:
    with tempfile.TemporaryDirectory(dir=subdir("build")) as scratch:
        staging = Path(scratch) / "site-packages"
        install_project(staging, extra=extra, compiled=compiled, measure=measure, log=buildah.log)
        _require_bytecode(staging, what=f"{name}'s pip-installed packages")
        if compiled:
            require_compiled(staging, log=buildah.log)
        # Scripts pip made point at the host's interpreter; the image uses `python -m` instead.
        shutil.rmtree(staging / "bin", ignore_errors=True)
        with REPORTER.phase(f"buildah commit {name}"):
            commit_project(
                buildah,
                staging,
                base=base,
                name=name,
                entrypoint=entrypoint,
                user=user,
                site_packages=SITE_PACKAGES,
            )


def _pause_image(buildah: Buildah, name: str, measure: Measure) -> None:
    with tempfile.TemporaryDirectory(dir=subdir("build")) as scratch:
        binary = Path(scratch) / "pause"
        _run(
            [
                "gcc",
                "-Os",
                "-static",
                "-Wall",
                f"-DVERSION={binaries.KUBERNETES_VERSION}",
                "-o",
                str(binary),
                str(_pause_source()),
            ],
            what="gcc -static pause.c",
            log=buildah.log,
            measure=measure,
            cwd=Path(scratch),
        )
        subprocess.run(["strip", str(binary)], check=False)
        with REPORTER.phase(f"buildah commit {name}"):
            container = buildah.output("from", "--pull=never", "scratch")
            try:
                buildah.output("copy", container, str(binary), "/pause")
                buildah.output("config", "--user=65535:65535", '--entrypoint=["/pause"]', container)
                buildah.output("commit", "--rm", container, name)
            except BaseException:
                subprocess.run(
                    [*buildah.globals, "rm", container], capture_output=True, check=False
                )
                raise


def _nats_image(buildah: Buildah, name: str) -> None:
    """The cached nats-server (static, CGO off) alone on scratch, entrypoint nats-server as in
    the official nats:2.x image, so the chart's `--config FILE` works with either."""
    binary = binaries.ensure_nats_server()
    with REPORTER.phase(f"buildah commit {name}"):
        _commit_nats(buildah, binary, name)


def _commit_nats(buildah: Buildah, binary: Path, name: str) -> None:
    container = buildah.output("from", "--pull=never", "scratch")
    try:
        buildah.output("copy", "--chmod=0755", container, str(binary), "/nats-server")
        buildah.output(
            "config",
            f"--user={RUNTIME_UID}:{RUNTIME_UID}",
            "--port=4222",
            "--port=6222",
            "--port=8222",
            f"--entrypoint={NATS_ENTRYPOINT}",
            "--cmd=",
            container,
        )
        buildah.output("commit", "--rm", container, name)
    except BaseException:
        subprocess.run([*buildah.globals, "rm", container], capture_output=True, check=False)
        raise


def ensure_images() -> Images:
    """Build whatever images are missing for the current sources; return them all."""
    tag = source_tag()
    pause_tag = _digest([binaries.KUBERNETES_VERSION.encode(), b"gcc -Os -static"])
    nats_key = _digest(
        [binaries.NATS_SERVER_VERSION.encode(), NATS_ENTRYPOINT.encode(), str(RUNTIME_UID).encode()]
    )
    archives = images_dir() / "archives"
    archives.mkdir(exist_ok=True)
    wanted = {
        "pause": Image(
            f"localhost/kubelambda-pause:{pause_tag}", archives / f"pause-{pause_tag}.tar"
        ),
        "runtime": Image(f"localhost/kubelambda-runtime:{tag}", archives / f"runtime-{tag}.tar"),
        "control-plane": Image(
            f"localhost/kubelambda-control-plane:{tag}", archives / f"control-plane-{tag}.tar"
        ),
        "nats": Image(NATS_IMAGE, archives / f"nats-{nats_key}.tar"),
    }
    images = Images(
        pause=wanted["pause"],
        runtime=wanted["runtime"],
        control_plane=wanted["control-plane"],
        nats=wanted["nats"],
    )
    if all(image.archive.exists() for image in images.all()):
        REPORTER.cached(f"e2e images for sources {tag}", where=archives)
        return images
    ensure_node_packages()
    with exclusive("images"):
        for kind, image in wanted.items():
            if image.archive.exists():
                REPORTER.cached(f"image {image.name}", where=image.archive)
                continue
            with REPORTER.step(
                f"image {image.name}",
                doing="building with buildah",
                why=(
                    "first run only"
                    if kind in ("pause", "nats")
                    else "rebuilt when the project's sources change"
                )
                + f", cached in {home_relative(archives)}; log {home_relative(_log(kind))}",
                expect=last_seconds(f"image {kind}") or COLD_SECONDS[kind],
                phases=PHASES[kind],
            ):
                _build_image(kind, image)
        _prune(archives, keep={image.archive for image in images.all()})
    return images


def _build_image(kind: str, image: Image) -> None:
    measure = Measure()
    began = time.monotonic()
    buildah = Buildah(store=images_dir() / "buildah", log=_log(kind), how_to_get=HOW_TO_GET)
    if kind == "pause":
        _pause_image(buildah, image.name, measure)
    elif kind == "nats":
        _nats_image(buildah, image.name)
    else:
        rootfs = ensure_base_root()
        _require_bytecode(rootfs / PYTHON_LIB, what=f"{SUITE}'s python3 standard library")
        base = base_image(buildah, rootfs)
        _project_image(
            buildah,
            base=base,
            name=image.name,
            extra="" if kind == "runtime" else "[control-plane]",
            compiled=kind != "runtime",
            entrypoint=RUNTIME_ENTRYPOINT if kind == "runtime" else CONTROL_ENTRYPOINT,
            user=RUNTIME_UID,
            measure=measure,
        )
    export(buildah, image.name, image.archive)
    # The whole build, not only the steps run_step measured (pip, gcc).
    measure.seconds = time.monotonic() - began
    record(f"image {kind}", image.name.rsplit(":", 1)[1], measure)


def _prune(archives: Path, *, keep: set[Path]) -> None:
    """Keep the newest few archives per kind: every source change makes new ones."""
    for kind in ("runtime", "control-plane", "nats"):
        old = sorted(
            (p for p in archives.glob(f"{kind}-*.tar") if p not in keep),
            key=lambda p: p.stat().st_mtime,
        )
        for path in old[:-2]:
            path.unlink(missing_ok=True)
