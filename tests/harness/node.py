"""The e2e node's agents: kubelet (on the harness's containerd, cgroupfs, limits this machine
allows) and kube-proxy (iptables, NodePorts only on the node's address), each with a client
certificate from the harness CA; plus the kernel settings the kubelet insists on.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from harness import binaries
from harness.apiserver import ApiServer
from harness.procs import Server, free_port, start, wait_until

NODE_NAME = "kubelambda-node"
READY_TIMEOUT = 120.0

# The kubelet exits unless these hold (it would set them itself, but checks them first).
KUBELET_SYSCTLS = {
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
    # Service traffic from one pod to another is rewritten on this host and sent back out the
    # pod bridge; the firewall chain in `network` keeps it from going anywhere else.
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}
# No CAP_SYS_RESOURCE: no rlimit above the hard limit of open files.
MAX_OPEN_FILES = 20000


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def apply_sysctls(values: dict[str, str]) -> dict[str, str]:
    """Set the values; return the previous ones, to put back at the end."""
    previous = {}
    for name, value in values.items():
        path = _sysctl_path(name)
        previous[name] = path.read_text().strip()
        if previous[name] != value:
            path.write_text(value)
    return previous


def restore_sysctls(previous: dict[str, str]) -> None:
    for name, value in previous.items():
        try:
            _sysctl_path(name).write_text(value)
        except OSError:
            continue  # best effort: the run is over either way


def kubelet_config(
    *,
    api: ApiServer,
    node_ip: str,
    port: int,
    healthz_port: int,
    socket: Path,
    pod_logs: Path,
    cluster_dns: str | None = None,
) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(api.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "maxOpenFiles": MAX_OPEN_FILES,
        # The disk is often well filled: never collect the imported images (they cannot be
        # pulled back) and never evict or taint the node for disk pressure.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "0%",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        },
        # The host's resolver is of no use to pods on a closed network; the harness's cluster
        # DNS answers for Services.
        "resolvConf": "",
        "clusterDomain": "cluster.local",
        "clusterDNS": [cluster_dns] if cluster_dns else [],
        "registerNode": True,
        "serializeImagePulls": False,
        # Cold starts: report container and pod state changes promptly.
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "5s",
        "runtimeRequestTimeout": "2m",
        "protectKernelDefaults": False,
        # Containers' logs in the run's temp dir, not the host's /var/log/pods.
        "podLogsDir": str(pod_logs),
    }


def start_kubelet(
    *,
    api: ApiServer,
    workdir: Path,
    log_dir: Path,
    node_ip: str,
    socket: Path,
    cluster_dns: str | None = None,
) -> Server:
    home = workdir / "kubelet"
    home.mkdir()
    identity = api.authority.issue(
        "kubelet",
        common_name=f"system:node:{NODE_NAME}",
        organizations=("system:nodes",),
        client=True,
    )
    kubeconfig = api.write_kubeconfig(
        home / "kubeconfig", user=f"system:node:{NODE_NAME}", pair=identity
    )
    port, healthz_port = free_port(), free_port()
    config = home / "config.json"
    config.write_text(
        json.dumps(
            kubelet_config(
                api=api,
                node_ip=node_ip,
                port=port,
                healthz_port=healthz_port,
                socket=socket,
                pod_logs=home / "pod-logs",
                cluster_dns=cluster_dns,
            ),
            indent=2,
        )
    )
    server = start(
        "kubelet",
        [
            binaries.ensure_kubelet(),
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={home / 'root'}",
            f"--cert-dir={home / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={node_ip}",
            "--v=1",
        ],
        log=log_dir / "kubelet.log",
    )
    wait_until(
        lambda: _healthz(f"http://127.0.0.1:{healthz_port}/healthz"),
        what="kubelet /healthz",
        timeout=READY_TIMEOUT,
        watch=[server],
    )
    return server


def _healthz(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


def start_kube_proxy(
    *, api: ApiServer, workdir: Path, log_dir: Path, node_ip: str, pod_cidr: str
) -> Server:
    home = workdir / "kube-proxy"
    home.mkdir()
    identity = api.authority.issue("kube-proxy", common_name="system:kube-proxy", client=True)
    kubeconfig = api.write_kubeconfig(home / "kubeconfig", user="system:kube-proxy", pair=identity)
    healthz, metrics = free_port(), free_port()
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "bindAddress": node_ip,
        "clusterCIDR": pod_cidr,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        # NodePorts answer on the node's bridge address only, never on the machine's own.
        "nodePortAddresses": [f"{node_ip}/32"],
        # Leave the kernel's conntrack settings and our own oom score alone: changing them
        # needs privileges this machine does not grant (or is not ours to change).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "oomScoreAdj": 0,
        "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "0s"},
    }
    path = home / "config.json"
    path.write_text(json.dumps(config, indent=2))
    server = start(
        "kube-proxy",
        [binaries.ensure_kube_proxy(), f"--config={path}", "--v=1"],
        log=log_dir / "kube-proxy.log",
    )
    wait_until(
        lambda: _healthz(f"http://127.0.0.1:{healthz}/healthz"),
        what="kube-proxy /healthz",
        timeout=READY_TIMEOUT,
        watch=[server],
    )
    return server


def remove_kube_proxy_rules() -> None:
    """kube-proxy's --cleanup: its chains stay in the host's tables after it stops otherwise."""
    subprocess.run(
        [str(binaries.ensure_kube_proxy()), "--cleanup"],
        capture_output=True,
        timeout=60,
        check=False,
    )


# Chains the kubelet makes in the host's tables (its canaries, the localnet firewall); they
# outlive it, and kube-proxy's --cleanup does not know them.
KUBELET_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-KUBELET-CANARY",),
    "mangle": ("KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"),
}


def remove_kubelet_rules() -> None:
    for tool in ("iptables", "ip6tables"):
        for table, chains in KUBELET_CHAINS.items():
            for chain in chains:
                for hook in ("INPUT", "OUTPUT"):
                    while (
                        subprocess.run(
                            [tool, "-t", table, "-D", hook, "-j", chain],
                            capture_output=True,
                            check=False,
                        ).returncode
                        == 0
                    ):
                        pass
                for action in ("-F", "-X"):
                    subprocess.run(
                        [tool, "-t", table, action, chain], capture_output=True, check=False
                    )
