"""Container images without a registry: a debootstrap Debian root with python3, the project
installed on top with pip, committed with buildah, exported as docker-archives for `ctr import`;
the broker's image is the cached static nats-server alone on scratch.

`ensure_images()` is what the e2e cluster calls; everything lands in the cache's images/ folder.
The root is built once; the project layer is rebuilt only when the project's sources change, since
the images' tag is a hash of those sources (never `latest`, so the kubelet never tries to pull).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import binaries, gomodules
from harness.builds import Measure, PartUnavailable, record, run_step
from harness.cache import exclusive, subdir
from harness.debian import ensure_node_packages

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
PAUSE_SOURCE = "build/pause/linux/pause.c"
# As runtime/Dockerfile's: isolated (-I), so a function's files never replace the runtime's.
RUNTIME_ENTRYPOINT = '["python", "-I", "-u", "-m", "kubelambda_runtime"]'
CONTROL_ENTRYPOINT = '["kubelambda"]'
NATS_ENTRYPOINT = '["/nats-server"]'
# The chart's default nats.image tag is the server's version; the harness builds that name.
NATS_IMAGE = f"localhost/kubelambda-nats:{binaries.NATS_SERVER_VERSION.removeprefix('v')}"

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
    """What `pip install .` reads: the build config and both source roots (no caches)."""
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    for root in ("operator", "runtime"):
        files += sorted(
            p
            for p in (REPO / root).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
        )
    return files


def source_tag() -> str:
    """The images' tag: a hash of the project's sources and of the base root's recipe."""
    recipe = f"{SUITE} {' '.join(BASE_PACKAGES)} {SITE_PACKAGES} {RUNTIME_UID}"
    parts = [f"{recipe} {RUNTIME_ENTRYPOINT} {CONTROL_ENTRYPOINT}".encode()]
    for path in _project_files():
        parts += [str(path.relative_to(REPO)).encode(), path.read_bytes()]
    return _digest(parts)


def images_dir() -> Path:
    return subdir("images")


def _log(name: str) -> Path:
    return subdir("logs") / f"images-{name}.log"


def _run(argv: Sequence[str], *, what: str, log: Path, measure: Measure, cwd: Path) -> None:
    run_step(
        list(argv),
        what=what,
        log=log,
        cwd=cwd,
        env=os.environ,
        measure=measure,
        how_to_get=HOW_TO_GET,
        timeout=1800,
    )


def ensure_base_root() -> Path:
    """A minbase Debian root with python3, made once by debootstrap (about a minute)."""
    key = _digest([SUITE.encode(), " ".join(BASE_PACKAGES).encode()])
    home = images_dir() / f"root-{SUITE}-{key}"
    rootfs = home / "rootfs"
    if (home / ".ready").exists():
        return rootfs
    ensure_node_packages()
    with exclusive("images-root"):
        if (home / ".ready").exists():
            return rootfs
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        measure = Measure()
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
        )
        # apt's lists and the downloaded .debs are no use in an image that never runs apt.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        (home / ".ready").write_text(key)
        record(f"image root (debootstrap {SUITE} minbase + python3)", key, measure)
    return rootfs


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


class Buildah:
    """buildah with a private store under the cache, so nothing touches /var/lib/containers."""

    def __init__(self, *, log: Path, measure: Measure) -> None:
        store = images_dir() / "buildah"
        # vfs: plain copies, which work everywhere; overlay needs a kernel and a backing
        # filesystem that allow it, and the images are small enough for copies.
        self.globals = [
            "buildah",
            f"--root={store / 'root'}",
            f"--runroot={store / 'run'}",
            "--storage-driver=vfs",
        ]
        self.log = log
        self.measure = measure

    def output(self, *args: str) -> str:
        done = subprocess.run(
            [*self.globals, *args], capture_output=True, text=True, check=False, timeout=600
        )
        with self.log.open("a") as out:
            out.write(f"$ {' '.join([*self.globals, *args])}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise PartUnavailable(
                f"buildah {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
                f"\n{HOW_TO_GET}"
            )
        return done.stdout.strip()

    def has_image(self, name: str) -> bool:
        done = subprocess.run(
            [*self.globals, "images", "--quiet", name], capture_output=True, text=True, check=False
        )
        return done.returncode == 0 and bool(done.stdout.strip())


def _base_image(buildah: Buildah, rootfs: Path) -> str:
    """The root as an image in buildah's store, once: every project image starts from it."""
    name = f"localhost/kubelambda-base:{(rootfs.parent / '.ready').read_text().strip()}"
    if buildah.has_image(name):
        return name
    container = buildah.output("from", "--pull=never", "scratch")
    try:
        mount = Path(buildah.output("mount", container))
        subprocess.run(["cp", "-a", f"{rootfs}/.", str(mount)], check=True)
        buildah.output("umount", container)
        buildah.output("commit", "--rm", container, name)
    except BaseException:
        subprocess.run([*buildah.globals, "rm", container], capture_output=True, check=False)
        raise
    return name


def _install_project(staging: Path, *, extra: str, measure: Measure, log: Path) -> None:
    """pip-install the project (from a copy, so no build/ or egg-info lands in the checkout)
    into `staging`, with the host's interpreter: same Python minor and glibc as the image."""
    source = staging.parent / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
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
            f"--target={staging}",
            requirement,
            "boto3>=1.34",
        ],
        what=f"pip install {requirement}",
        log=log,
        measure=measure,
        cwd=staging.parent,
    )


def _project_image(
    buildah: Buildah,
    *,
    base: str,
    name: str,
    extra: str,
    entrypoint: str,
    user: int,
    measure: Measure,
) -> None:
    with tempfile.TemporaryDirectory(dir=subdir("build")) as scratch:
        staging = Path(scratch) / "site-packages"
        _install_project(staging, extra=extra, measure=measure, log=buildah.log)
        # Scripts pip made point at the host's interpreter; the image uses `python -m` instead.
        shutil.rmtree(staging / "bin", ignore_errors=True)
        container = buildah.output("from", "--pull=never", base)
        try:
            mount = Path(buildah.output("mount", container))
            subprocess.run(
                ["cp", "-a", f"{staging}/.", str(mount / SITE_PACKAGES.lstrip("/"))], check=True
            )
            (mount / "usr/local/bin/python").symlink_to("/usr/bin/python3")
            (mount / "usr/local/bin/kubelambda").write_text(
                "#!/usr/bin/python3\nimport sys\nfrom kubelambda.cli import main\n"
                "sys.exit(main())\n"
            )
            (mount / "usr/local/bin/kubelambda").chmod(0o755)
            task = mount / "var/task"
            task.mkdir(parents=True, exist_ok=True)
            with (mount / "etc/passwd").open("a") as passwd:
                passwd.write(f"sbx_user1051:x:{user}:{user}::/tmp:/usr/sbin/nologin\n")
            with (mount / "etc/group").open("a") as group:
                group.write(f"sbx_user1051:x:{user}:\n")
            buildah.output("umount", container)
            buildah.output(
                "config",
                f"--user={user}",
                "--workingdir=/var/task",
                "--port=8080",
                "--env=PYTHONDONTWRITEBYTECODE=1",
                "--env=PYTHONUNBUFFERED=1",
                "--env=LAMBDA_TASK_ROOT=/var/task",
                "--env=KUBELAMBDA_PORT=8080",
                f"--entrypoint={entrypoint}",
                "--cmd=",
                container,
            )
            buildah.output("commit", "--rm", container, name)
        except BaseException:
            subprocess.run([*buildah.globals, "rm", container], capture_output=True, check=False)
            raise


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
        container = buildah.output("from", "--pull=never", "scratch")
        try:
            buildah.output("copy", container, str(binary), "/pause")
            buildah.output("config", "--user=65535:65535", '--entrypoint=["/pause"]', container)
            buildah.output("commit", "--rm", container, name)
        except BaseException:
            subprocess.run([*buildah.globals, "rm", container], capture_output=True, check=False)
            raise


def _nats_image(buildah: Buildah, name: str) -> None:
    """The cached nats-server (static, CGO off) alone on scratch, entrypoint nats-server as in
    the official nats:2.x image, so the chart's `--config FILE` works with either."""
    binary = binaries.ensure_nats_server()
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


def _export(buildah: Buildah, name: str, archive: Path) -> None:
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    # docker-archive keeps the fully qualified name in the tarball; oci-archive would carry a
    # bare tag that the CRI cannot match to the pod's image.
    buildah.output("push", name, f"docker-archive:{partial}:{name}")
    partial.rename(archive)
    # The tarball is the cache from now on; the copy in the store only costs disk.
    subprocess.run([*buildah.globals, "rmi", name], capture_output=True, check=False)


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
        return images
    ensure_node_packages()
    with exclusive("images"):
        for kind, image in wanted.items():
            if image.archive.exists():
                continue
            measure = Measure()
            began = time.monotonic()
            buildah = Buildah(log=_log(kind), measure=measure)
            if kind == "pause":
                _pause_image(buildah, image.name, measure)
            elif kind == "nats":
                _nats_image(buildah, image.name)
            else:
                rootfs = ensure_base_root()
                base = _base_image(buildah, rootfs)
                _project_image(
                    buildah,
                    base=base,
                    name=image.name,
                    extra="" if kind == "runtime" else "[control-plane]",
                    entrypoint=RUNTIME_ENTRYPOINT if kind == "runtime" else CONTROL_ENTRYPOINT,
                    user=RUNTIME_UID,
                    measure=measure,
                )
            _export(buildah, image.name, image.archive)
            # The whole build, not only the steps run_step measured (pip, gcc).
            measure.seconds = time.monotonic() - began
            record(f"image {kind}", image.name.rsplit(":", 1)[1], measure)
        _prune(archives, keep={image.archive for image in images.all()})
    return images


def _prune(archives: Path, *, keep: set[Path]) -> None:
    """Keep the newest few archives per kind: every source change makes new ones."""
    for kind in ("runtime", "control-plane", "nats"):
        old = sorted(
            (p for p in archives.glob(f"{kind}-*.tar") if p not in keep),
            key=lambda p: p.stat().st_mtime,
        )
        for path in old[:-2]:
            path.unlink(missing_ok=True)
