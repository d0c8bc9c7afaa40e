"""buildah with a private store, and the steps `images` takes with it: the Debian root as a base
image, the project committed on top of it, and an image exported as a docker-archive."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.builds import PartUnavailable
from harness.progress import REPORTER, home_relative


class Buildah:
    """buildah with a private store under the cache, so nothing touches /var/lib/containers."""

    def __init__(self, *, store: Path, log: Path, how_to_get: str) -> None:
        # vfs: plain copies, which work everywhere; overlay needs a kernel and a backing
        # filesystem that allow it, and the images are small enough for copies.
        self.globals = [
            "buildah",
            f"--root={store / 'root'}",
            f"--runroot={store / 'run'}",
            "--storage-driver=vfs",
        ]
        self.log = log
        self.how_to_get = how_to_get

    def output(self, *args: str) -> str:
        done = subprocess.run(
            [*self.globals, *args], capture_output=True, text=True, check=False, timeout=600
        )
        with self.log.open("a") as out:
            out.write(f"$ {' '.join([*self.globals, *args])}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise PartUnavailable(
                f"buildah {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
                f"\n{self.how_to_get}"
            )
        return done.stdout.strip()

    def has_image(self, name: str) -> bool:
        done = subprocess.run(
            [*self.globals, "images", "--quiet", name], capture_output=True, text=True, check=False
        )
        return done.returncode == 0 and bool(done.stdout.strip())


def base_image(buildah: Buildah, rootfs: Path) -> str:
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


def commit_project(
    buildah: Buildah,
    staging: Path,
    *,
    base: str,
    name: str,
    entrypoint: str,
    user: int,
    site_packages: str,
) -> None:
    """The installed project copied onto the base image, configured and committed as `name`."""
    container = buildah.output("from", "--pull=never", base)
    try:
        mount = Path(buildah.output("mount", container))
        subprocess.run(
            ["cp", "-a", f"{staging}/.", str(mount / site_packages.lstrip("/"))], check=True
        )
        (mount / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        (mount / "usr/local/bin/kubelambda").write_text(
            "#!/usr/bin/python3\nimport sys\nfrom kubelambda.cli import main\nsys.exit(main())\n"
        )
        (mount / "usr/local/bin/kubelambda").chmod(0o755)
        task = mount / "var/task"
        task.mkdir(parents=True, exist_ok=True)
        # The runtime writes a function's code there when it comes in the environment.
        os.chown(task, user, user)
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


def export(buildah: Buildah, name: str, archive: Path) -> None:
    """Write image `name` to `archive` (whole or not at all) and drop it from the store."""
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    # docker-archive keeps the fully qualified name in the tarball; oci-archive would carry a
    # bare tag that the CRI cannot match to the pod's image.
    with REPORTER.phase(f"buildah push docker-archive:{home_relative(archive)}"):
        buildah.output("push", name, f"docker-archive:{partial}:{name}")
    partial.rename(archive)
    # The tarball is the cache from now on; the copy in the store only costs disk.
    subprocess.run([*buildah.globals, "rmi", name], capture_output=True, check=False)
