"""A real single-node Kubernetes cluster on this machine for the e2e tests: etcd, kube-apiserver,
controller-manager and scheduler (`apiserver`), containerd and runc, the kubelet and kube-proxy
(`node`), CNI bridge networking (`network`) and the project's images (`images`).

`cluster()` starts it all and yields once the node is Ready and the default ServiceAccount exists;
however it ends, it deletes the workloads, stops every process and removes links, mounts,
network namespaces, cgroups and firewall rules it made. One cluster per machine at a time.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import binaries, netpol, network, node
from harness.apiserver import ApiServer, _default_log_dir, api_server
from harness.builds import PartUnavailable
from harness.cache import subdir
from harness.containerd import Containerd, containerd, kill_shims, shim_pids
from harness.debian import ensure_node_packages
from harness.dns import cluster_dns
from harness.images import Images, ensure_images
from harness.kubeapi import KubeApi
from harness.procs import Server, ServerFailed, scratch_dir, wait_until

NODE_READY_TIMEOUT = 180.0
IMPORT_TIMEOUT = 600.0
LOCK_TIMEOUT = 1800.0  # another test run's cluster on this machine: wait for it this long
TEARDOWN_TIMEOUT = 60.0
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SCRATCH_KIND = "cluster"


@dataclass
class Cluster:
    """A running cluster; `kubectl`/`helm` run as admin, `images` are already in containerd."""

    api: ApiServer
    runtime: Containerd
    images: Images
    node_name: str
    node_ip: str
    pod_cidr: str
    workdir: Path
    log_dir: Path
    servers: dict[str, Server] = field(default_factory=dict)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.api.kubectl(*args, input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        return self.api.helm(*args, input=input, check=check, timeout=timeout)

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get … -o json`, parsed."""
        parsed: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return parsed

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]] | str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(_as_list(manifest))
        self.kubectl("apply", "-f", "-", input=text)

    def env(self) -> dict[str, str]:
        return self.api.env()

    def ready_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching `selector` that are Ready and not being deleted."""
        pods: list[dict[str, Any]] = self.get("pods", "-n", namespace, "-l", selector)["items"]
        return [
            pod
            for pod in pods
            if pod["metadata"].get("deletionTimestamp") is None
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions", [])
            )
        ]

    def wait_ready_pods(
        self, namespace: str, selector: str, *, timeout: float, count: int = 1
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` pods matching `selector` are Ready; fail at the deadline
        (or at once if a cluster process dies) with the pods' state and the node's logs."""
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            found[:] = self.ready_pods(namespace, selector)
            return len(found) >= count

        try:
            wait_until(
                enough,
                what=f"{count} Ready pod(s) {selector} in {namespace}",
                timeout=timeout,
                watch=[*self.servers.values(), *self.api.servers.values()],
                interval=0.05,
            )
        except ServerFailed as exc:
            state = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "wide")
            raise ServerFailed(f"{exc}\n{state.stdout}\n{self.log_tails(20)}") from None
        return found

    def resident_mib(self) -> dict[str, float]:
        """Resident memory of each cluster process (with its children, e.g. containerd's
        shims are counted apart under 'shims'), in MiB: the cluster's own footprint."""
        usage = {
            name: _group_rss(server.popen.pid) / 2**20
            for name, server in {**self.api.servers, **self.servers}.items()
        }
        usage["shims"] = sum(_rss(pid) for pid in shim_pids(self.runtime.socket)) / 2**20
        return usage

    def log_tails(self, lines: int = 40) -> str:
        own = "\n".join(server.log_tail(lines) for server in self.servers.values())
        return f"{self.api.log_tails(lines)}\n{own}"


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0  # the process ended meanwhile


def _group_rss(pgid: int) -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                total += _rss(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return total


def _as_list(manifest: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    items = manifest if isinstance(manifest, list) else [manifest]
    return {"apiVersion": "v1", "kind": "List", "items": items}


# --- cleanup of what a node leaves on the host -------------------------------------------------


def _mounts_under(prefix: str) -> list[str]:
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
            points.append(point)
    return points


def unmount_all(prefix: str) -> None:
    """Lazily unmount everything below `prefix`, deepest first (pod volumes, container root
    filesystems, shm, the netns bind mounts), so removing the folder cannot reach through."""
    for _ in range(3):  # lazy unmounts can reveal mounts stacked beneath
        points = sorted(_mounts_under(prefix), key=lambda p: p.count("/"), reverse=True)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _netns_names() -> set[str]:
    return {p.name for p in NETNS_DIR.glob("cni-*")} if NETNS_DIR.exists() else set()


def _remove_netns(names: set[str]) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def _kill_pod_processes() -> None:
    """SIGKILL whatever still runs in the kubelet's pod cgroups: containers outlive a kubelet and
    containerd that were killed, since their shims keep them."""
    procs = CGROUP_ROOT / "pids" / "kubepods"

    def remaining() -> list[int]:
        pids = []
        for listing in procs.rglob("cgroup.procs") if procs.is_dir() else ():
            try:
                pids += [int(line) for line in listing.read_text().split()]
            except (OSError, ValueError):
                continue
        return pids

    deadline = time.monotonic() + 10
    while (pids := remaining()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        # Dying takes a moment; their network namespaces can go only once they are gone.
        time.sleep(0.1)


def _remove_idle_netns() -> None:
    """Network namespaces the CRI made (cni-*) that no process uses any more."""
    for name in _netns_names():
        done = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        )
        if done.returncode == 0 and not done.stdout.strip():
            _remove_netns({name})


def _remove_cgroups() -> None:
    """The kubelet's pod cgroups (`kubepods` in each v1 hierarchy), children first, once the
    processes in them are gone."""
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for folder in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            try:
                folder.rmdir()
            except OSError:
                continue
        try:
            top.rmdir()
        except OSError:
            continue


def _host_leftovers(workdir: Path, netns_before: set[str]) -> None:
    _kill_pod_processes()
    unmount_all(str(workdir))
    _remove_netns(_netns_names() - netns_before)
    _remove_cgroups()
    network.remove_links()
    node.remove_kube_proxy_rules()
    node.remove_kubelet_rules()
    netpol.remove_engine_rules()


def _sweep_stale_runs() -> None:
    """A run killed before its cleanup (SIGKILL, a lost machine) leaves mounts, links and shims:
    clear them before its temp dir is swept, or the sweep would reach into mounted folders."""
    tmp = Path(tempfile.gettempdir())
    found = False
    for stale in tmp.glob(f"kubelambda-{SCRATCH_KIND}-*-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        found = True
        kill_shims(stale / "containerd" / "containerd.sock")
        unmount_all(str(stale))
    if not found:
        return
    _kill_pod_processes()
    _remove_idle_netns()
    _remove_cgroups()
    network.remove_links()
    node.remove_kube_proxy_rules()
    node.remove_kubelet_rules()
    netpol.remove_engine_rules()


def _delete_workloads(cluster: Cluster) -> None:
    """Delete what runs pods, then the pods, so the kubelet tears down each sandbox (and its CNI
    network) itself; whatever is left is removed by force afterwards."""
    kinds = "deployments,replicasets,statefulsets,daemonsets,jobs"
    cluster.kubectl("delete", kinds, "--all", "--all-namespaces", "--wait=false", check=False)
    cluster.kubectl(
        "delete",
        "pods",
        "--all",
        "--all-namespaces",
        "--grace-period=1",
        f"--timeout={TEARDOWN_TIMEOUT:.0f}s",
        check=False,
        timeout=TEARDOWN_TIMEOUT + 10,
    )


# --- starting -------------------------------------------------------------------------------


def _phase(logs: Path, what: str, began: float) -> None:
    """Append how long the start took so far to timings.txt in the log folder."""
    with (logs / "timings.txt").open("a") as out:
        out.write(f"{time.monotonic() - began:6.1f} s  {what}\n")


@contextmanager
def _machine_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """One cluster per machine (its bridges and addresses are fixed): wait for another run's
    cluster to end, up to `timeout` seconds, then fail naming the process that holds it."""
    path = subdir("locks") / "e2e-cluster.lock"
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                if time.monotonic() > deadline:
                    raise PartUnavailable(
                        f"another e2e cluster runs on this machine (pid {holder}, lock {path}) "
                        f"and did not end within {timeout:.0f} s"
                    ) from None
                if not announced:
                    print(
                        f"harness: waiting for the e2e cluster of pid {holder} to end", flush=True
                    )
                    announced = True
                time.sleep(1)
        handle.seek(0)
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _node_ready(cluster: Cluster) -> bool:
    found = cluster.get("node", cluster.node_name)
    conditions = {c["type"]: c["status"] for c in found["status"].get("conditions", [])}
    return conditions.get("Ready") == "True"


def _default_service_account(cluster: Cluster) -> bool:
    done = cluster.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
    return done.returncode == 0


def prepare() -> Images:
    """Everything a cluster needs that takes a while the first time: packages, binaries, images."""
    ensure_node_packages()
    for ensure in (
        binaries.ensure_etcd,
        binaries.ensure_kube_apiserver,
        binaries.ensure_kube_controller_manager,
        binaries.ensure_kube_scheduler,
        binaries.ensure_kubelet,
        binaries.ensure_kube_proxy,
        binaries.ensure_kubectl,
        binaries.ensure_helm,
    ):
        ensure()
    if not netpol.disabled():
        netpol.ensure_kube_network_policies()
    return ensure_images()


@contextmanager
def cluster(*, log_dir: Path | None = None, kube_proxy: bool = True) -> Iterator[Cluster]:
    """Start a single-node cluster; yield it once the node is Ready. kube-proxy runs by default,
    since pods reach the API server through the `kubernetes` Service, and with it the
    NetworkPolicy engine (`netpol`) unless KUBELAMBDA_E2E_NO_NETPOL is set."""
    if os.geteuid() != 0:
        raise PartUnavailable(
            "the e2e cluster needs root: containerd, the kubelet, bridges and mounts"
        )
    began = time.monotonic()
    images = prepare()
    logs = log_dir if log_dir is not None else _default_log_dir("cluster")
    logs.mkdir(parents=True, exist_ok=True)
    _phase(logs, "packages, binaries and images ready", began)
    with _machine_lock(), ExitStack() as stack:
        _sweep_stale_runs()
        workdir = scratch_dir(SCRATCH_KIND)
        netns_before = _netns_names()
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack.callback(_host_leftovers, workdir, netns_before)
        previous = node.apply_sysctls(node.KUBELET_SYSCTLS)
        stack.callback(node.restore_sysctls, previous)
        # The kubelet and containerd need mounts made in containers to propagate back.
        subprocess.run(["mount", "--make-rshared", "/"], check=True)

        net = stack.enter_context(network.node_network(workdir))
        runtime = stack.enter_context(
            containerd(
                workdir,
                log_dir=logs,
                sandbox_image=images.pause.name,
                cni_conf_dir=net.cni_conf_dir,
            )
        )
        # Importing (~20 s for the three images) needs only containerd: it overlaps the control
        # plane's start.
        importer = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        imported = importer.submit(runtime.import_images, [image.archive for image in images.all()])
        api = stack.enter_context(
            api_server(
                controller_manager=True,
                scheduler=True,
                log_dir=logs,
                advertise_address=net.node_ip,
                bind_address=net.node_ip,
                # There is no DNS for the node's name: logs and exec go to its address.
                extra_apiserver_args=("--kubelet-preferred-address-types=InternalIP",),
            )
        )
        # Before the kubelet, which hands its address to pods as their nameserver.
        stack.enter_context(cluster_dns(KubeApi(api), net.node_ip))
        _phase(logs, "control plane up", began)
        imported.result(timeout=IMPORT_TIMEOUT)
        _phase(logs, "images imported", began)
        servers: dict[str, Server] = {"containerd": runtime.server}
        made = Cluster(
            api=api,
            runtime=runtime,
            images=images,
            node_name=node.NODE_NAME,
            node_ip=net.node_ip,
            pod_cidr=net.pod_cidr,
            workdir=workdir,
            log_dir=logs,
            servers=servers,
        )
        servers["kubelet"] = node.start_kubelet(
            api=api,
            workdir=workdir,
            log_dir=logs,
            node_ip=net.node_ip,
            socket=runtime.socket,
            cluster_dns=net.node_ip,
        )
        stack.callback(servers["kubelet"].stop)
        # Runs first at exit: while the kubelet still runs, so it tears pods down itself.
        stack.callback(_delete_workloads, made)
        watch = [*servers.values(), *api.servers.values()]
        try:
            wait_until(
                lambda: _node_ready(made),
                what=f"node {made.node_name} Ready",
                timeout=NODE_READY_TIMEOUT,
                watch=watch,
            )
            wait_until(
                lambda: _default_service_account(made),
                what="ServiceAccount default/default",
                timeout=NODE_READY_TIMEOUT,
                watch=watch,
            )
            if kube_proxy:
                # After the node exists: kube-proxy reports unhealthy until it finds it.
                servers["kube-proxy"] = node.start_kube_proxy(
                    api=api,
                    workdir=workdir,
                    log_dir=logs,
                    node_ip=net.node_ip,
                    pod_cidr=net.pod_cidr,
                )
                stack.callback(servers["kube-proxy"].stop)
            if not netpol.disabled():
                # NetworkPolicies enforced, as a network plugin would (KUBELAMBDA_E2E_NO_NETPOL=1:
                # not); its rules match only new connections between pods on the CNI bridge.
                servers[netpol.NAME] = netpol.start_engine(
                    api=api, workdir=workdir, log_dir=logs, node_name=made.node_name
                )
                stack.callback(netpol.stop_engine, servers[netpol.NAME])
        except ServerFailed as exc:
            raise ServerFailed(f"{exc}\n{made.log_tails()}") from None
        _phase(logs, "node Ready, default ServiceAccount there, kube-proxy and policies up", began)
        yield made
