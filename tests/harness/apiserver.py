"""A real Kubernetes API server for tests: etcd and kube-apiserver on loopback, like envtest.

`api_server()` is a context manager; `api_server_for_pytest()` wraps it for a yield-fixture.
kube-controller-manager (garbage collection, service accounts) and kube-scheduler join on request.
`ApiServer.restart()` kills etcd or kube-apiserver and starts it again (the chaos scenario).
Data and certificates live in a temp dir removed at the end; logs stay in `log_dir`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness import binaries
from harness.cache import subdir
from harness.pki import CertificateAuthority, KeyPair, service_account_keys
from harness.procs import Server, free_port, scratch_dir, start, wait_until

# Virtual: without kube-proxy nothing routes to it, so it never sends traffic anywhere.
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service, first address of SERVICE_CIDR
CLUSTER_NAME = "kubelambda-test"
READY_TIMEOUT = 120.0  # seconds; the apiserver takes ~10 s idle, more on a busy 2-core machine


@dataclass(frozen=True)
class ApiServer:
    """A running API server and how to reach it as admin (system:masters)."""

    url: str
    kubeconfig: Path
    authority: CertificateAuthority
    admin: KeyPair
    service_account_key: KeyPair
    workdir: Path
    log_dir: Path
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def ca_cert(self) -> Path:
        return self.authority.pair.cert

    def env(self) -> dict[str, str]:
        """The environment for a client process (kubectl, helm, the operator) to use this server;
        kubectl's discovery cache and helm's files stay in the temp dir, away from the user's."""
        helm = self.workdir / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.workdir / "kube-cache"),
            "HELM_CONFIG_HOME": str(helm / "config"),
            "HELM_CACHE_HOME": str(helm / "cache"),
            "HELM_DATA_HOME": str(helm / "data"),
        }

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the harness's kubectl against this server; on failure the error has its output."""
        return self._run(binaries.ensure_kubectl(), args, input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the harness's helm against this server; on failure the error has its output."""
        return self._run(binaries.ensure_helm(), args, input=input, check=check, timeout=timeout)

    def _run(
        self,
        tool: Path,
        args: Sequence[str],
        *,
        input: str | None,
        check: bool,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(tool), *args],
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{tool.name} {' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\n"
                f"stderr:\n{done.stderr}"
            )
        return done

    def write_kubeconfig(self, path: Path, *, user: str, pair: KeyPair) -> Path:
        """A kubeconfig for another identity (a certificate issued by `authority`)."""
        return write_kubeconfig(path, server=self.url, ca=self.ca_cert, user=user, pair=pair)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(server.log_tail(lines) for server in self.servers.values())

    def restart(self, name: str) -> None:
        """Kill `name` ("etcd" or "kube-apiserver") with SIGKILL, as a crash would, start it
        again with the same arguments, data dir and log, and return once it is healthy and the
        API server answers /readyz again (it reconnects to a restarted etcd by itself).

        Call it from the thread that started the cluster: a server dies with the thread that
        started it (procs.die_with_parent)."""
        if name not in RESTARTABLE:
            raise ValueError(f"restart() knows {', '.join(RESTARTABLE)}, not {name}")
        old = self.servers[name]
        argv = [str(arg) for arg in old.popen.args]  # type: ignore[union-attr]
        with contextlib.suppress(ProcessLookupError):  # it had died already
            os.killpg(old.popen.pid, signal.SIGKILL)
        old.popen.wait(timeout=30)
        self.servers[name] = start(name, argv, log=old.log)
        if name == "etcd":
            client_url = _flag(argv, "--advertise-client-urls")
            wait_until(
                lambda: _etcd_healthy(client_url),
                what=f"etcd healthy again at {client_url}",
                timeout=READY_TIMEOUT,
                watch=[self.servers[name]],
            )
        _wait_ready(
            self.url, _admin_context(self.authority, self.admin), watch=list(self.servers.values())
        )


RESTARTABLE = ("etcd", "kube-apiserver")


def _admin_context(authority: CertificateAuthority, admin: KeyPair) -> ssl.SSLContext:
    """TLS that trusts the API server and presents the admin's certificate."""
    context = ssl.create_default_context(cafile=str(authority.pair.cert))
    context.load_cert_chain(str(admin.cert), str(admin.key))
    return context


def _flag(argv: Sequence[str], name: str) -> str:
    """The value of `--name=value` in a command line."""
    for arg in argv:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise ValueError(f"no {name}= in {argv}")


def _wait_ready(url: str, trusted: ssl.SSLContext, *, watch: Sequence[Server]) -> None:
    wait_until(
        lambda: _https_ok(f"{url}/readyz", trusted),
        what=f"kube-apiserver /readyz at {url}",
        timeout=READY_TIMEOUT,
        watch=watch,
    )


class TempPathFactory(Protocol):
    def mktemp(self, basename: str, numbered: bool = True) -> Path: ...


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, ca: Path, user: str, pair: KeyPair) -> Path:
    # JSON is YAML, so kubectl, helm and the Python client all read it; data inline keeps it
    # self-contained.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pair.cert),
                    "client-key-data": _b64(pair.key),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return bool(response.status == 200)


def _default_log_dir(kind: str) -> Path:
    root = subdir("logs") / "servers"
    root.mkdir(parents=True, exist_ok=True)
    # Keep the last 20 runs' logs; older ones are only clutter.
    for old in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)[:-20]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=root))


def start_etcd(workdir: Path, log_dir: Path) -> tuple[Server, str]:
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    server = start(
        "etcd",
        [
            binaries.ensure_etcd(),
            "--name=default",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",  # test data: durability across power loss does not matter
            "--log-level=warn",
        ],
        log=log_dir / "etcd.log",
    )

    wait_until(
        lambda: _etcd_healthy(client_url),
        what=f"etcd healthy at {client_url}",
        timeout=60,
        watch=[server],
    )
    return server, client_url


def _etcd_healthy(client_url: str) -> bool:
    with urllib.request.urlopen(f"{client_url}/health", timeout=5) as response:
        return bool(json.load(response).get("health") == "true")


def _stop_all(servers: dict[str, Server]) -> None:
    for server in reversed(list(servers.values())):
        server.stop()


def _component_args(kubeconfig: Path, port: int, cert_dir: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        "--leader-elect=false",
    ]


def _wait_healthz(server: Server, port: int) -> None:
    # The component serves /healthz with a self-signed certificate it made at start and lets
    # anyone read it (its default --authorization-always-allow-paths).
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    wait_until(
        lambda: _https_ok(f"https://127.0.0.1:{port}/healthz", insecure),
        what=f"{server.name} /healthz",
        timeout=READY_TIMEOUT,
        watch=[server],
    )


@contextmanager
def api_server(
    *,
    controller_manager: bool = False,
    scheduler: bool = False,
    log_dir: Path | None = None,
    advertise_address: str = "127.0.0.1",
    extra_apiserver_args: Sequence[str] = (),
    bind_address: str = "127.0.0.1",
) -> Iterator[ApiServer]:
    """Start etcd and kube-apiserver (and optionally controller-manager and scheduler), yield
    once /readyz answers, and stop everything and remove the temp dir however the body ends.
    `bind_address` other than loopback serves pods too (the e2e node's address on its bridge)."""
    apiserver_bin = binaries.ensure_kube_apiserver()
    binaries.ensure_etcd()
    binaries.ensure_kubectl()
    controller_bin = binaries.ensure_kube_controller_manager() if controller_manager else None
    scheduler_bin = binaries.ensure_kube_scheduler() if scheduler else None
    logs = log_dir if log_dir is not None else _default_log_dir("apiserver")
    logs.mkdir(parents=True, exist_ok=True)
    workdir = scratch_dir("apiserver")
    servers: dict[str, Server] = {}
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        # Registered after rmtree, so it runs first: stop in reverse start order, then remove.
        cleanup.callback(_stop_all, servers)

        pki = workdir / "pki"
        authority = CertificateAuthority(pki)
        serving = authority.issue(
            "apiserver",
            common_name="kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=tuple(
                dict.fromkeys(("127.0.0.1", bind_address, advertise_address, SERVICE_IP))
            ),
            server=True,
        )
        admin = authority.issue(
            "admin", common_name="kubelambda-admin", organizations=("system:masters",), client=True
        )
        # The apiserver's identity towards kubelets (logs, exec), for the e2e tier.
        kubelet_client = authority.issue(
            "apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        )
        sa = service_account_keys(pki)

        servers["etcd"], etcd_url = start_etcd(workdir, logs)
        port = free_port()
        url = f"https://{bind_address}:{port}"
        args: list[str | os.PathLike[str]] = [
            apiserver_bin,
            f"--etcd-servers={etcd_url}",
            f"--bind-address={bind_address}",
            f"--advertise-address={advertise_address}",
            f"--secure-port={port}",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={authority.pair.cert}",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
        ]
        if not controller_manager:
            # As envtest does: nothing would create the `default` ServiceAccount the plugin
            # insists on, so pods could never be admitted.
            args.append("--disable-admission-plugins=ServiceAccount")
        args += extra_apiserver_args
        servers["kube-apiserver"] = start("kube-apiserver", args, log=logs / "kube-apiserver.log")

        _wait_ready(url, _admin_context(authority, admin), watch=list(servers.values()))
        kubeconfig = write_kubeconfig(
            workdir / "admin.kubeconfig",
            server=url,
            ca=authority.pair.cert,
            user="admin",
            pair=admin,
        )

        if controller_bin is not None:
            identity = authority.issue(
                "controller-manager", common_name="system:kube-controller-manager", client=True
            )
            config = write_kubeconfig(
                workdir / "controller-manager.kubeconfig",
                server=url,
                ca=authority.pair.cert,
                user="system:kube-controller-manager",
                pair=identity,
            )
            cm_port = free_port()
            servers["kube-controller-manager"] = start(
                "kube-controller-manager",
                [
                    controller_bin,
                    *_component_args(config, cm_port, workdir / "controller-manager-certs"),
                    # One service account per controller, each bound to its bootstrap role
                    # (as kubeadm does), instead of one all-powerful identity.
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={sa.key}",
                    f"--root-ca-file={authority.pair.cert}",
                    f"--cluster-signing-cert-file={authority.pair.cert}",
                    f"--cluster-signing-key-file={authority.pair.key}",
                    f"--cluster-name={CLUSTER_NAME}",
                ],
                log=logs / "kube-controller-manager.log",
            )
            _wait_healthz(servers["kube-controller-manager"], cm_port)

        if scheduler_bin is not None:
            identity = authority.issue(
                "scheduler", common_name="system:kube-scheduler", client=True
            )
            config = write_kubeconfig(
                workdir / "scheduler.kubeconfig",
                server=url,
                ca=authority.pair.cert,
                user="system:kube-scheduler",
                pair=identity,
            )
            sched_port = free_port()
            servers["kube-scheduler"] = start(
                "kube-scheduler",
                [scheduler_bin, *_component_args(config, sched_port, workdir / "scheduler-certs")],
                log=logs / "kube-scheduler.log",
            )
            _wait_healthz(servers["kube-scheduler"], sched_port)

        yield ApiServer(
            url=url,
            kubeconfig=kubeconfig,
            authority=authority,
            admin=admin,
            service_account_key=sa,
            workdir=workdir,
            log_dir=logs,
            servers=servers,
        )


def api_server_for_pytest(
    tmp_path_factory: TempPathFactory, *, controller_manager: bool = False, scheduler: bool = False
) -> Iterator[ApiServer]:
    """For a yield-fixture: `yield from api_server_for_pytest(tmp_path_factory, ...)`; logs go
    to pytest's temp dir, which keeps the last three runs."""
    log_dir = tmp_path_factory.mktemp("apiserver-logs")
    with api_server(
        controller_manager=controller_manager, scheduler=scheduler, log_dir=log_dir
    ) as server:
        yield server
