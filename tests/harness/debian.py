"""The Debian packages a real node needs (containerd, runc, CNI plugins, buildah, debootstrap, …),
installed once with apt-get by `ensure_node_packages()`; the e2e harness calls it before anything.
The install reports on stderr how many of the packages are in place (`progress`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.builds import PartUnavailable
from harness.cache import exclusive
from harness.progress import REPORTER, Meter

# Debian package -> a file it installs, to tell whether it is there without asking dpkg.
NODE_PACKAGES: dict[str, str] = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "buildah": "/usr/bin/buildah",
    "debootstrap": "/usr/sbin/debootstrap",
    "iptables": "/usr/sbin/iptables",
    "iproute2": "/usr/sbin/ip",
    "conntrack": "/usr/sbin/conntrack",  # kube-proxy clears stale UDP entries with it
    "gcc": "/usr/bin/gcc",  # the pause binary
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",  # gcc -static needs the static libc
}
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")


def missing_packages() -> list[str]:
    return [name for name, path in NODE_PACKAGES.items() if not Path(path).exists()]


def installed_meter(wanted: list[str]) -> Meter:
    """Progress of an install of `wanted`: how many of them are in place by now."""

    def reading() -> str:
        still = set(missing_packages())
        return f"{sum(name not in still for name in wanted)} of {len(wanted)} packages installed"

    return reading


def ensure_node_packages() -> None:
    """Install the missing packages (apt-get update once, then install); as root only, since a
    node's containerd, kubelet and network all need root anyway."""
    missing = missing_packages()
    if not missing:
        return
    how = f"apt-get update && apt-get install --no-install-recommends {' '.join(missing)}"
    if os.geteuid() != 0:
        raise PartUnavailable(
            f"the e2e cluster needs root (containerd, kubelet, bridges, mounts) and the Debian "
            f"packages {', '.join(missing)}; as root run: {how}"
        )
    if shutil.which("apt-get") is None:
        raise PartUnavailable(f"no apt-get on this machine; install by hand: {', '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with exclusive("apt"):
        missing = missing_packages()
        if not missing:
            return
        with REPORTER.step(
            f"Debian packages {' '.join(missing)}",
            doing="installing with apt-get",
            why="first run only",
            expect=30.0 * len(missing),  # a rough figure: downloads and dpkg triggers vary
            phases=2,
        ):
            for argv, meter in (
                (["apt-get", "update", "-qq"], None),
                (
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                    installed_meter(missing),
                ),
            ):
                with REPORTER.phase(" ".join(argv[:2]), meter=meter):
                    done = subprocess.run(
                        argv, env=env, capture_output=True, text=True, check=False
                    )
                if done.returncode != 0:
                    raise PartUnavailable(
                        f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}\n"
                        f"Install by hand: {how}"
                    )
    still = missing_packages()
    if still:
        raise PartUnavailable(f"apt-get installed, yet these are still missing: {still}")
