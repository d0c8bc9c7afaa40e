"""containerd (Debian's, with Debian's runc) for the e2e node: private config, root, state and
socket under the cluster's temp dir, the CRI plugin set for this machine (cgroupfs, no
CAP_SYS_RESOURCE, no hugetlb on cgroup v1), images imported from docker-archives into `k8s.io`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.debian import CNI_BIN_DIR, RUNC
from harness.procs import Server, start, wait_until

NAMESPACE = "k8s.io"  # the CRI only sees images in this namespace
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Containerd:
    socket: Path
    root: Path
    state: Path
    server: Server

    def ctr(self, *args: str, timeout: float = 300.0) -> str:
        done = subprocess.run(
            ["ctr", f"--address={self.socket}", f"--namespace={NAMESPACE}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"ctr {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def import_images(self, archives: Sequence[Path]) -> None:
        for archive in archives:
            self.ctr("images", "import", "--no-unpack=false", str(archive))

    def image_names(self) -> set[str]:
        return {line.split()[0] for line in self.ctr("images", "list", "-q").splitlines() if line}


def _toml(value: object) -> str:
    # JSON strings, numbers and booleans are valid TOML values.
    return json.dumps(value)


def config_text(
    *, root: Path, state: Path, socket: Path, sandbox_image: str, cni_conf_dir: Path
) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = {_toml(str(root))}
state = {_toml(str(state))}
# The node runs only what the harness imports: no optional snapshotters or the /opt installer.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]

[grpc]
  address = {_toml(str(socket))}

[ttrpc]
  address = {_toml(str(socket) + ".ttrpc")}

[{cri}]
  sandbox_image = {_toml(sandbox_image)}
  # Without CAP_SYS_RESOURCE a container's oom_score_adj may not go below containerd's own.
  restrict_oom_score_adj = true
  # cgroup v1 here has no hugetlb hierarchy (it is on the cgroup2 mount).
  tolerate_missing_hugepages_controller = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = {_toml(str(RUNC))}

[{cri}.cni]
  bin_dir = {_toml(str(CNI_BIN_DIR))}
  conf_dir = {_toml(str(cni_conf_dir))}
  max_conf_num = 1
"""


def shim_pids(socket: Path) -> list[int]:
    """The runc shims this containerd started (they outlive it): their command line names its
    socket, which is private to this run."""
    pids = []
    marker = str(socket).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and marker in cmdline:
            pids.append(int(entry.name))
    return pids


def kill_shims(socket: Path) -> None:
    for pid in shim_pids(socket):
        try:
            # The shim's group holds the containers it runs.
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue
        except PermissionError:
            os.kill(pid, signal.SIGKILL)


@contextmanager
def containerd(
    workdir: Path, *, log_dir: Path, sandbox_image: str, cni_conf_dir: Path
) -> Iterator[Containerd]:
    """Start containerd on a private socket; on exit stop it and kill the shims it left."""
    home = workdir / "containerd"
    root, state = home / "root", home / "state"
    socket = home / "containerd.sock"
    for folder in (root, state):
        folder.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    config.write_text(
        config_text(
            root=root,
            state=state,
            socket=socket,
            sandbox_image=sandbox_image,
            cni_conf_dir=cni_conf_dir,
        )
    )
    with ExitStack() as cleanup:
        server = start(
            "containerd",
            ["containerd", f"--config={config}", "--log-level=info"],
            log=log_dir / "containerd.log",
        )
        cleanup.callback(kill_shims, socket)
        cleanup.callback(server.stop)
        running = Containerd(socket=socket, root=root, state=state, server=server)
        wait_until(
            lambda: bool(running.ctr("version", timeout=10)),
            what=f"containerd answering on {socket}",
            timeout=READY_TIMEOUT,
            watch=[server],
        )
        yield running
