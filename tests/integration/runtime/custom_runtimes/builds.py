"""Builds the custom runtimes the tests run, once, into the harness cache (outside the checkout):
the Go function of go/ against aws-lambda-go (from the Go module proxy, CGO off: a static
binary, as Lambda's provided.al2023 wants), AWS's Python runtime interface client
awslambdaric from PyPI into a target folder, and AWS's Node.js runtime interface client
aws-lambda-ric from the npm registry (it compiles aws-lambda-cpp and curl: minutes). A build
that fails raises PartUnavailable saying what failed; tests fail with it rather than skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.builds import PartUnavailable
from harness.cache import binary_path, exclusive, subdir
from harness.gomodules import go_command, go_env

HERE = Path(__file__).resolve().parent
GO_SOURCES = HERE / "go"
AWSLAMBDARIC_FOLDER = HERE / "awslambdaric"
AWSLAMBDARIC = "awslambdaric==4.2.2"
NODE_RIC_FOLDER = HERE / "node_ric"
NODE_RIC = "aws-lambda-ric@4.0.2"


def go_bootstrap() -> Path:
    """The Go function, built once per version of its sources."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update(name.encode() + b"\0" + (GO_SOURCES / name).read_bytes())
    target = binary_path("custom-runtime-go", digest.hexdigest()[:16])
    if target.exists():
        return target
    with exclusive("custom-runtime-go"):
        if target.exists():
            return target
        build = subdir("build") / f"custom-runtime-go-{digest.hexdigest()[:16]}"
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(GO_SOURCES, build)
        env = go_env()
        env["GOFLAGS"] = env["GOFLAGS"] + " -mod=readonly"
        partial = target.with_name(target.name + ".partial")
        done = subprocess.run(
            [go_command(), "build", "-trimpath", "-o", str(partial), "."],
            cwd=build,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise PartUnavailable(
                f"building the aws-lambda-go test function failed (go build in {build}, needs"
                f" the Go module proxy):\n{done.stdout}{done.stderr}"
            )
        partial.rename(target)
    return target


def awslambdaric_dir(python: str | None = None) -> Path:
    """awslambdaric installed (pip install --target), once: for this interpreter, or with
    ``python`` ("3.12") for another one's wheels (manylinux, x86-64), as a package for a pod."""
    version = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    tag = "cp" + version.replace(".", "")
    target = subdir("build") / f"{AWSLAMBDARIC.replace('==', '-')}-{tag}"
    if (target / ".complete").exists():
        return target
    platform = []
    if python is not None:
        platform = [
            "--python-version",
            version,
            "--platform",
            "manylinux2014_x86_64",
            "--only-binary=:all:",
        ]
    with exclusive("awslambdaric"):
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                *platform,
                "--target",
                str(target),
                AWSLAMBDARIC,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise PartUnavailable(
                f"pip install {AWSLAMBDARIC} failed (needs PyPI):\n{done.stdout}{done.stderr}"
            )
        (target / ".complete").touch()
    return target


def code_folder(directory: Path, bootstrap: Path, **files: str) -> Path:
    """A function's code folder holding ``bootstrap`` (executable) and ``files``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bootstrap, directory / "bootstrap")
    os.chmod(directory / "bootstrap", 0o755)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def awslambdaric_environment() -> dict[str, str]:
    """What the awslambdaric bootstrap script reads: the interpreter and where the client is."""
    return {
        "KUBELAMBDA_TEST_PYTHON": sys.executable,
        "KUBELAMBDA_TEST_RIC": str(awslambdaric_dir()),
    }


def node_ric_dir() -> Path:
    """A folder whose node_modules holds aws-lambda-ric, installed once with npm."""
    target = subdir("build") / NODE_RIC.replace("@", "-")
    if (target / ".complete").exists():
        return target
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise PartUnavailable(f"{NODE_RIC} needs node and npm on PATH")
    with exclusive("aws-lambda-ric"):
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        (target / "package.json").write_text('{"name": "kubelambda-node-ric", "private": true}\n')
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", NODE_RIC],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=1800,  # its install script compiles aws-lambda-cpp and curl
            check=False,
        )
        if done.returncode != 0:
            raise PartUnavailable(
                f"npm install {NODE_RIC} failed in {target} (needs the npm registry and a C++"
                f" toolchain):\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
            )
        (target / ".complete").touch()
    return target


def node_ric_environment() -> dict[str, str]:
    """What the aws-lambda-ric bootstrap script reads: where the client is installed."""
    return {"KUBELAMBDA_TEST_NODE_RIC": str(node_ric_dir())}
