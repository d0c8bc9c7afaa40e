"""`kubelambda local` with third-party dependencies, as Lambda packages them: a deployment package
and a layer on a real MinIO (each vendoring a module copied from this Python's site-packages),
and a code folder's requirements.txt installed once into a cached environment (pip with a wheel
built in the test, no network). Unsafe zips and failed installs stop local mode, saying why."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.packages.conftest import Storage
from support.local import LocalMode, start_local
from support.zips import entry, make_zip, module_files, wheel

HANDLER = """\
import shutil
import subprocess

import idna
import six


def handler(event, context):
    tool = shutil.which("layer-tool")
    return {
        "six": six.__file__,
        "idna": idna.__file__,
        "encoded": idna.encode("bücher.example").decode(),
        "tool": subprocess.run([tool], capture_output=True, text=True).stdout.strip(),
    }
"""
LAYER = make_zip(
    [
        *module_files("idna", under="python/lib/python3.12/site-packages").items(),
        (entry("bin/layer-tool", mode=stat.S_IFREG | 0o755), "#!/bin/sh\necho from the layer\n"),
    ]
)


@pytest.fixture
def local_with(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., LocalMode]]:
    """`local_with(manifest)`: local mode with MinIO's keys in its environment and a cache of
    the test's own; stopped after the test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", storage.minio.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage.minio.secret_key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    started: list[LocalMode] = []

    def start(manifest: str) -> LocalMode:
        path = tmp_path / f"manifest{len(started)}.yaml"
        path.write_text(textwrap.dedent(manifest))
        local = start_local(path)
        started.append(local)
        return local

    yield start
    for local in started:
        local.stop()


def invoke(local: LocalMode, name: str, event: dict[str, Any] | None = None) -> Any:
    answer = local.client.post(
        f"/2015-03-31/functions/{name}/invocations", content=json.dumps(event or {})
    )
    assert answer.status_code == 200, answer.text
    assert "X-Amz-Function-Error" not in answer.headers, answer.text
    return answer.json()


def refused(manifest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubelambda.cli", "local", str(manifest), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_package_and_a_layer_bring_their_dependencies(
    storage: Storage, local_with: Callable[..., LocalMode], tmp_path: Path
) -> None:
    storage.put("local/app.zip", make_zip({"app.py": HANDLER, **module_files("six")}))
    storage.put("local/layer.zip", LAYER)
    code, layer = storage.source("local/app.zip"), storage.source("local/layer.zip")

    local = local_with(
        f"""
        apiVersion: kubelambda.dev/v1alpha1
        kind: Function
        metadata: {{name: deps}}
        spec:
          runtime: python3.12
          handler: app.handler
          code: {{s3: {json.dumps(code)}}}
          layers: [{{s3: {json.dumps(layer)}}}]
        """
    )
    answer = invoke(local, "deps")

    cache = tmp_path / "cache" / "kubelambda"
    assert Path(answer["six"]).parent.parent == cache / "packages"  # the package's, not ours
    assert Path(answer["idna"]).is_relative_to(cache / "layers")
    assert "/python/lib/python3.12/site-packages/idna/" in answer["idna"]
    assert answer["encoded"] == "xn--bcher-kva.example"
    assert answer["tool"] == "from the layer"  # /opt/bin is on PATH


def test_a_zip_slip_package_stops_local_mode_naming_the_function(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", storage.minio.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage.minio.secret_key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    storage.put("local/slip.zip", make_zip({"app.py": HANDLER, "../../../../slipped.py": "x"}))
    manifest = tmp_path / "slip.yaml"
    manifest.write_text(
        "apiVersion: kubelambda.dev/v1alpha1\nkind: Function\nmetadata: {name: slip}\n"
        "spec: {runtime: python3.12, handler: app.handler, code: {s3: "
        f"{json.dumps(storage.source('local/slip.zip'))}}}}}\n"
    )

    done = refused(manifest)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Function default/slip: spec.code.s3 (s3://packages/local/slip.zip): " in done.stderr
    assert "zip slip refused" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.rglob("slipped.py"))


REQUIRING = """\
import kl_testdep


def handler(event, context):
    return {"answer": kl_testdep.ANSWER, "from": kl_testdep.__file__}
"""


def code_folder(tmp_path: Path, requirements: str) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text(REQUIRING)
    (folder / "requirements.txt").write_text(requirements)
    (tmp_path / "function.yaml").write_text(
        "apiVersion: kubelambda.dev/v1alpha1\nkind: Function\nmetadata: {name: reqs}\n"
        "spec: {runtime: python3.12, handler: app.handler, code: {path: src}}\n"
    )
    return tmp_path / "function.yaml"


def test_requirements_txt_installs_once_into_a_cached_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheel("kl-testdep", "1.0", {"kl_testdep/__init__.py": "ANSWER = 42\n"}, wheels)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no network: the test's wheel only
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    manifest = code_folder(tmp_path, "kl-testdep==1.0\n")

    first = start_local(manifest)
    try:
        answer = invoke(first, "reqs")
    finally:
        first.stop()
    envs = tmp_path / "cache" / "kubelambda" / "envs"
    assert answer["answer"] == 42 and Path(answer["from"]).is_relative_to(envs)

    # The wheel is gone: only the cached environment can serve a second start.
    (wheels / "kl_testdep-1.0-py3-none-any.whl").unlink()
    second = start_local(manifest)
    try:
        assert invoke(second, "reqs")["from"] == answer["from"]
    finally:
        second.stop()


def test_a_requirement_pip_cannot_install_stops_local_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    manifest = code_folder(tmp_path, "kl-not-there==9.9\n")

    done = refused(manifest)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Function default/reqs: pip install -r " in done.stderr
    assert "requirements.txt failed (exit 1)" in done.stderr
    assert "kl-not-there" in done.stderr  # pip's own words, quoted
    assert not list((tmp_path / "cache" / "kubelambda" / "envs").glob("[!.]*"))
