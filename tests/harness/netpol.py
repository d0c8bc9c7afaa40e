"""The e2e node's NetworkPolicy engine: sigs.k8s.io/kube-network-policies, built from its Go module
(`gomodules`) and run as a host process beside kube-proxy. It judges the packets sent to its
NFQUEUE against the cluster's NetworkPolicies. This machine's kernel lacks nftables' `queue`
expression (CONFIG_NFT_QUEUE), so the engine cannot divert packets itself: the harness does, with
iptables' NFQUEUE target, for each new connection between pods on the CNI bridge.
`start_engine()` starts both, `remove_engine_rules()` removes the rules.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

# Nothing that imports `binaries` (apiserver, network): binaries.ALL_PARTS lists this part.
from harness import gomodules
from harness.builds import Measure, PartUnavailable, last_seconds, record
from harness.cache import binary_path, exclusive, subdir
from harness.procs import Server, free_port, start, wait_until
from harness.progress import REPORTER, home_relative

if TYPE_CHECKING:
    from harness.apiserver import ApiServer

# The newest release the module proxy serves. It programs nftables through netlink
# (github.com/google/nftables, no `nft` binary) and gives its verdicts through NFQUEUE.
VERSION = "v0.8.0"
NAME = "kube-network-policies"
ENGINE = gomodules.Wrapper(
    family=NAME,
    module="sigs.k8s.io/kube-network-policies",
    version=VERSION,
    packages=("sigs.k8s.io/kube-network-policies/cmd",),
)
# The table the engine programs where the kernel allows (its name is not a flag in this release).
TABLE = ("inet", "kube-network-policies")
QUEUE = 100  # the engine's --nfqueue-id
# The harness's own diversion into the queue: mangle FORWARD runs after kube-proxy's DNAT and
# before the filter table, whose rules (kube-proxy's, `network`'s) still see what is accepted.
CHAIN = ("mangle", "KUBELAMBDA-NETPOL")
QUEUES = Path("/proc/net/netfilter/nfnetlink_queue")
POD_BRIDGE = "kl-cni0"  # harness.network.POD_BRIDGE (a test holds the two together)
NAMESPACE = "kube-system"
# Where rest.InClusterConfig() reads its credentials: the release has no --kubeconfig flag.
SERVICE_ACCOUNT_DIR = Path("/run/secrets/kubernetes.io/serviceaccount")
READY_TIMEOUT = 120.0
COLD_SECONDS = 600.0  # modules and build (914 packages); 970 s on 2 busy cores, 2026-12-04
# Set to 1 to run the cluster without the engine (showing the isolation tests fail then).
DISABLE_ENV = "KUBELAMBDA_E2E_NO_NETPOL"

HOW_TO_GET = (
    f"{NAME} is built from the Go module proxy (`go` on PATH); `nft`, which removes a table the "
    "engine left, comes with Debian's nftables package. Build logs are in the cache's logs/ folder."
)


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def ensure_kube_network_policies() -> Path:
    """The engine's binary, built once into the cache's bin/ (KUBELAMBDA_NO_BUILD=1: fail)."""
    output = binary_path(NAME, VERSION)
    if output.is_file() and os.access(output, os.X_OK):
        return output
    if os.environ.get("KUBELAMBDA_NO_BUILD"):
        raise PartUnavailable(f"{NAME} is missing at {output} and KUBELAMBDA_NO_BUILD is set")
    with exclusive("go-build"):
        if output.is_file():
            return output
        log = subdir("logs") / f"{NAME}-{VERSION}.log"
        with REPORTER.step(
            f"{NAME} {VERSION}",
            doing="building from its Go module",
            why=f"first run only, cached in {home_relative(output.parent)}; log "
            f"{home_relative(log)}",
            expect=last_seconds(NAME) or COLD_SECONDS,
            phases=3,
        ):
            measure = Measure()
            gomodules.prepare(ENGINE, measure=measure, log=log, how_to_get=HOW_TO_GET)
            gomodules.build(
                ENGINE,
                ENGINE.packages[0],
                output=output,
                tags="",
                ldflags="-s -w",
                measure=measure,
                log=log,
                how_to_get=HOW_TO_GET,
            )
            record(NAME, VERSION, measure)
    return output


def _rbac(account: str) -> str:
    """What the engine reads (pods, namespaces, policies) and writes (events), for `account`."""
    return f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {account}, namespace: {NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {account}}}
rules:
  - apiGroups: [""]
    resources: [pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [list, watch]
  - apiGroups: ["", events.k8s.io]
    resources: [events]
    verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {account}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {account}}}
subjects: [{{kind: ServiceAccount, name: {account}, namespace: {NAMESPACE}}}]
"""


def _credentials(api: ApiServer, folder: Path) -> Path:
    """A ServiceAccount token and the cluster's CA in the layout InClusterConfig reads."""
    folder.mkdir(parents=True)
    api.kubectl("apply", "-f", "-", input=_rbac(NAME))
    # Long enough for any test run; the cluster and its signing key go with the run.
    token = api.kubectl("create", "token", NAME, "-n", NAMESPACE, "--duration=24h").stdout
    (folder / "token").write_text(token.strip())
    (folder / "ca.crt").write_bytes(api.ca_cert.read_bytes())
    (folder / "namespace").write_text(NAMESPACE)
    return folder


def table_exists() -> bool:
    """Whether the engine's own table is in the kernel (not on this machine's kernel; where
    `nft` is missing nothing can be said, and nothing removed)."""
    if shutil.which("nft") is None:
        return False
    done = subprocess.run(
        ["nft", "list", "table", *TABLE], capture_output=True, timeout=30, check=False
    )
    return done.returncode == 0


def with_service_account(secrets: Path, *argv: str | Path) -> list[str]:
    """`argv` run in a mount namespace of its own where a tmpfs over /run holds `secrets` at
    SERVICE_ACCOUNT_DIR; the host's /run is left alone."""
    script = (
        'mount -t tmpfs -o size=1m,mode=0755 kl-netpol /run && mkdir -p "$1" && '
        'mount --bind "$2" "$1" && shift 2 && exec "$@"'
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        str(SERVICE_ACCOUNT_DIR),
        str(secrets),
        *map(str, argv),
    ]


def start_engine(*, api: ApiServer, workdir: Path, log_dir: Path, node_name: str) -> Server:
    """Start the engine for node `node_name`; once it listens on its queue (its informers have
    synced), divert pod traffic to it. It reads a ServiceAccount's token where a pod would
    (`with_service_account`): this release has no --kubeconfig flag."""
    binary = ensure_kube_network_policies()
    home = workdir / NAME
    secrets = _credentials(api, home / "serviceaccount")
    url = urlsplit(api.url)
    server = start(
        NAME,
        with_service_account(
            secrets,
            binary,
            f"--hostname-override={node_name}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--nfqueue-id={QUEUE}",
            # Pod IPs come from the API. (This release's main does not pass the flag on: its NRI
            # plugin finds no socket in the harness's containerd and stops, harmlessly.)
            "--disable-nri",
            "--v=2",
        ),
        log=log_dir / f"{NAME}.log",
        env={
            **os.environ,
            "KUBERNETES_SERVICE_HOST": url.hostname or "",
            "KUBERNETES_SERVICE_PORT": str(url.port or 443),
        },
    )
    # Bound once its informers have synced: from then on it judges what is queued.
    wait_until(
        queue_bound,
        what=f"{NAME} listening on NFQUEUE {QUEUE}",
        timeout=READY_TIMEOUT,
        watch=[server],
    )
    divert_pod_traffic()
    return server


def queue_bound() -> bool:
    """Whether a process listens on QUEUE (a line per bound queue, its number first)."""
    lines = QUEUES.read_text().splitlines() if QUEUES.exists() else []
    return any(line.split()[:1] == [str(QUEUE)] for line in lines)


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=30, check=False
    )


def divert_pod_traffic() -> None:
    """Queue every packet between pods on the CNI bridge that is not part of a connection the
    engine already let through. Without `--queue-bypass`: with the engine gone, pods cannot open
    connections to each other, rather than policies silently not holding."""
    remove_diversion()
    table, chain = CHAIN
    steps = (
        ("-N", chain),
        ("-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"),
        ("-A", chain, "-j", "NFQUEUE", "--queue-num", str(QUEUE)),
        ("-I", "FORWARD", "1", "-i", POD_BRIDGE, "-o", POD_BRIDGE, "-j", chain),
    )
    for step in steps:
        done = _iptables("-t", table, *step)
        if done.returncode != 0:
            raise PartUnavailable(
                f"iptables -t {table} {' '.join(step)} failed: {done.stderr.strip()}"
            )


def remove_diversion() -> None:
    table, chain = CHAIN
    jump = ("-i", POD_BRIDGE, "-o", POD_BRIDGE, "-j", chain)
    while _iptables("-t", table, "-D", "FORWARD", *jump).returncode == 0:
        pass
    _iptables("-t", table, "-F", chain)
    _iptables("-t", table, "-X", chain)


def stop_engine(server: Server, *, grace: float = 15.0) -> None:
    """Remove the diversion, then SIGINT the engine, on which it deletes its own table (SIGTERM
    would leave that behind)."""
    remove_diversion()
    if server.alive():
        try:
            os.killpg(server.popen.pid, signal.SIGINT)
            server.popen.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    server.stop()
    remove_engine_rules()


def remove_engine_rules() -> None:
    """Delete the diversion and the engine's table, if a killed run left them (nothing else)."""
    remove_diversion()
    if table_exists():
        subprocess.run(
            ["nft", "delete", "table", *TABLE], capture_output=True, timeout=30, check=False
        )
