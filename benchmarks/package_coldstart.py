"""Benchmark: cold start of a Function whose code is a 20 MB deployment package on S3 (a real
MinIO), next to the same handler as inline code (the reference), in local mode and on a real
single-node cluster.

The package is the handler, a vendored module (six) and random bytes, so it is 20 MB zipped
and unzipped. Local mode fetches and unpacks it when it starts (then from its cache, by
SHA-256): its cold starts are the runtime's, and its start-up is measured with an empty and a
warm cache. On a cluster each new pod's init container (the control-plane image) fetches and
unpacks it before the runtime starts: that is part of every cold start.

    python benchmarks/package_coldstart.py [--where local|cluster|both] [--trials 10]

(with the project's venv: ~/.cache/kubelambda/venv/bin/python, PYTHONPATH=operator:runtime;
the cluster needs root, as benchmarks/e2e_coldstart.py)
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from e2e.kit import apply_ready
from harness.minio import Minio, minio_server
from loadgen import free_port
from support.zips import module_files

BUCKET = "packages"
HANDLER = (
    "import six\n\n\ndef handler(event, context):\n"
    "    return {'statusCode': 200, 'body': 'ok' if six.PY3 else 'py2'}\n"
)
TIMEOUT = 120.0


def package(size_mb: int) -> bytes:
    """The handler, six, and ``size_mb`` MiB of random bytes (deflate cannot shrink them)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", HANDLER)
        for name, data in module_files("six").items():
            archive.writestr(name, data)
        archive.writestr("data.bin", os.urandom(size_mb * 1024 * 1024))
    return buffer.getvalue()


def manifests(names: list[str], code: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for name in names:
        objects += [
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Function",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "runtime": "python3.12",
                    "handler": "app.handler",
                    "code": code(name),
                    # Gone soon after its trial: the trials after it find an idle node.
                    "scaling": {"scaleToZeroAfterSeconds": 10},
                },
            },
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Trigger",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"function": name, "http": {"path": f"/{name}", "methods": ["GET"]}},
            },
        ]
    return objects


def inline(_: str) -> dict[str, Any]:
    return {
        "inline": {"files": {"app.py": HANDLER, "six.py": module_files("six")["six.py"].decode()}}
    }


def cold_start(base: str, name: str) -> tuple[float, float | None]:
    """One request to a Function at zero: client-observed ms and the gateway's hold (ms)."""
    started = time.perf_counter()
    with urllib.request.urlopen(f"{base}/{name}", timeout=TIMEOUT) as answer:
        body, timing = answer.read(), answer.headers.get("server-timing") or ""
    elapsed = (time.perf_counter() - started) * 1000
    if body != b"ok":
        raise SystemExit(f"/{name} answered {body!r}")
    held = re.search(r"coldstart;dur=([0-9.]+)", timing)
    if held is None:
        raise SystemExit(f"/{name} was not a cold start: {timing!r}")
    return elapsed, float(held.group(1))


def alternating(
    base: str, names: list[str], references: list[str], *, show: bool = False
) -> tuple[list[float], list[float]]:
    """A cold start of each, package and inline in turns (which goes first alternates, so
    neither always follows the other's instance)."""
    package_ms: list[float] = []
    inline_ms: list[float] = []
    for index, (name, reference) in enumerate(zip(names, references, strict=True)):
        order = [(name, package_ms), (reference, inline_ms)]
        for target, into in order if index % 2 == 0 else reversed(order):
            into.append(cold_start(base, target)[0])
        if show:
            print(
                f"trial {index + 1:2}: package {package_ms[-1]:.0f} ms,"
                f" inline {inline_ms[-1]:.0f} ms",
                flush=True,
            )
    return package_ms, inline_ms


def summary(label: str, package_ms: list[float], inline_ms: list[float]) -> None:
    p50, reference = statistics.median(package_ms), statistics.median(inline_ms)
    print(
        f"{label}: 20 MB package p50 {p50:.0f} ms (max {max(package_ms):.0f}),"
        f" inline code p50 {reference:.0f} ms (max {max(inline_ms):.0f}):"
        f" {p50 / reference:.2f}x, +{p50 - reference:.0f} ms"
    )


# --- local mode --------------------------------------------------------------------------------


@contextmanager
def local_mode(manifest: Path, env: dict[str, str]) -> Iterator[tuple[str, float]]:
    """`kubelambda local` serving ``manifest``: its base URL and seconds until it served."""
    port, admin = free_port(), free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "local",
            str(manifest),
            "--port",
            str(port),
            "--admin-port",
            str(admin),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "kubelambda local: gateway" in line:
                break
        else:
            raise SystemExit("local mode did not start:\n" + "".join(lines[-20:]))
        yield f"http://127.0.0.1:{port}", time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(30)


def run_local(minio: Minio, trials: int, work: Path) -> None:
    names = [f"pkg{i}" for i in range(trials + 1)]
    references = [f"inline{i}" for i in range(trials + 1)]

    def s3(_: str) -> dict[str, Any]:
        return {"s3": {"endpoint": minio.endpoint, "bucket": BUCKET, "key": "app.zip"}}

    manifest = work / "functions.yaml"
    manifest.write_text(yaml.safe_dump_all(manifests(names, s3) + manifests(references, inline)))
    inline_only = work / "inline.yaml"
    inline_only.write_text(yaml.safe_dump_all(manifests(references, inline)))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "XDG_CACHE_HOME": str(work / "cache"),
    }
    with local_mode(manifest, env) as (base, startup):
        print(f"local mode serving {len(names) * 2} Functions after {startup:.2f} s (empty cache)")
        cold_start(base, names[0]), cold_start(base, references[0])  # the page cache, warm
        package_ms, inline_ms = alternating(base, names[1:], references[1:])
        summary("local mode cold start", package_ms, inline_ms)
    with local_mode(manifest, env) as (_, startup):
        print(f"local mode serving them again after {startup:.2f} s (the package cached)")
    with local_mode(inline_only, env) as (_, startup):
        print(f"local mode serving the inline Functions alone after {startup:.2f} s (reference)")


# --- a real cluster ----------------------------------------------------------------------------


def run_cluster(minio: Minio, trials: int, work: Path) -> None:
    from harness.cluster import cluster
    from harness.relay import relay
    from harness.release import release

    names = [f"pkg{i}" for i in range(trials + 1)]
    references = [f"inline{i}" for i in range(trials + 1)]
    with ExitStack() as stack:
        running = stack.enter_context(cluster())
        installed = stack.enter_context(release(running, workdir=work))
        to_minio = stack.enter_context(relay(running.node_ip))
        host, port = minio.endpoint.removeprefix("http://").split(":")
        to_minio.target = (host, int(port))

        def s3(_: str) -> dict[str, Any]:
            return {
                "s3": {
                    "endpoint": to_minio.url,
                    "bucket": BUCKET,
                    "key": "app.zip",
                    "credentialsSecret": {"name": "minio"},
                }
            }

        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "minio", "namespace": "default"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": minio.access_key,
                "AWS_SECRET_ACCESS_KEY": minio.secret_key,
            },
        }
        objects = [secret, *manifests(names, s3), *manifests(references, inline)]
        apply_ready(running, objects, namespace="default", timeout=300)
        base = installed.gateway_url
        cold_start(base, names[0]), cold_start(base, references[0])  # images into the page cache
        package_ms, inline_ms = alternating(base, names[1:], references[1:], show=True)
        summary("cluster cold start", package_ms, inline_ms)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--where", choices=("local", "cluster", "both"), default="local")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=20)
    args = parser.parse_args()
    data = package(args.size_mb)
    print(f"package: {len(data) / 1e6:.1f} MB zipped ({len(data)} bytes)")
    with minio_server() as minio, tempfile.TemporaryDirectory() as scratch:
        client = minio.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="app.zip", Body=data)
        if args.where in ("local", "both"):
            (Path(scratch) / "local").mkdir()
            run_local(minio, args.trials, Path(scratch) / "local")
        if args.where in ("cluster", "both"):
            (Path(scratch) / "cluster").mkdir()
            run_cluster(minio, args.trials, Path(scratch) / "cluster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
