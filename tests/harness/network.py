"""The e2e node's network, all of it on this machine: a bridge holding the node's address, the CNI
bridge for pods (configured here, created by the CNI bridge plugin) and firewall rules that keep
pod traffic between those two bridges. `node_network()` sets it up and removes it again.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.apiserver import SERVICE_CIDR

NODE_BRIDGE = "kl-node0"
POD_BRIDGE = "kl-cni0"
NODE_IP = "10.245.0.1"
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
CHAIN = "KUBELAMBDA-E2E"
NETWORK_NAME = "kubelambda-e2e"


@dataclass(frozen=True)
class NodeNetwork:
    node_ip: str
    pod_cidr: str
    cni_conf_dir: Path


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def link_exists(name: str) -> bool:
    return run("ip", "link", "show", name, check=False).returncode == 0


def _remove_firewall() -> None:
    while run("iptables", "-D", "FORWARD", "-j", CHAIN, check=False).returncode == 0:
        pass
    run("iptables", "-F", CHAIN, check=False)
    run("iptables", "-X", CHAIN, check=False)


def _add_firewall() -> None:
    """Pods may talk to each other and to this host (the node address, Services rewritten to
    it), but nothing is forwarded between the pod bridge and any other interface."""
    _remove_firewall()
    run("iptables", "-N", CHAIN)
    run("iptables", "-A", CHAIN, "-i", POD_BRIDGE, "!", "-o", POD_BRIDGE, "-j", "DROP")
    run("iptables", "-A", CHAIN, "!", "-i", POD_BRIDGE, "-o", POD_BRIDGE, "-j", "DROP")
    run("iptables", "-I", "FORWARD", "1", "-j", CHAIN)


def remove_links() -> None:
    for name in (POD_BRIDGE, NODE_BRIDGE):
        if link_exists(name):
            run("ip", "link", "delete", name, check=False)


def cni_config(*, ipam_dir: Path) -> dict[str, object]:
    """bridge + host-local + portmap. No default route in pods and no masquerading: the only
    routes lead to the node's address and the Service range, both on this machine."""
    return {
        "cniVersion": "0.4.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": POD_BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": f"{NODE_IP}/32"}, {"dst": SERVICE_CIDR}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
        ],
    }


@contextmanager
def node_network(workdir: Path) -> Iterator[NodeNetwork]:
    """Create the node bridge with the node's address and write the CNI config; undo both, and
    the pod bridge the CNI plugin made, however the body ends."""
    conf_dir = workdir / "cni" / "net.d"
    conf_dir.mkdir(parents=True)
    ipaddress.ip_network(POD_CIDR)  # a typo here would otherwise surface deep in the CNI plugin
    with ExitStack() as cleanup:
        remove_links()  # a previous run killed before its cleanup
        cleanup.callback(remove_links)
        # A bridge rather than a dummy link (that link type does not exist here): it needs no
        # ports to hold an address that this host answers on.
        run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_BRIDGE)
        run("ip", "link", "set", NODE_BRIDGE, "up")
        cleanup.callback(_remove_firewall)
        _add_firewall()
        (conf_dir / "10-kubelambda.conflist").write_text(
            json.dumps(cni_config(ipam_dir=workdir / "cni" / "ipam"), indent=2)
        )
        yield NodeNetwork(node_ip=NODE_IP, pod_cidr=POD_CIDR, cni_conf_dir=conf_dir)
