"""What the part and image builds of the harness (binaries, images) say while they work, with
the builds themselves replaced by stand-ins and the cache in a temporary folder: a start line
with the reason and an estimate, a done line with the time, a cached line for what is there."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from harness import binaries, gomodules, images, progress
from harness.builds import Measure
from harness.progress import Reporter


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The cache in tmp_path, and what the builds report, captured."""
    monkeypatch.setenv("KUBELAMBDA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBELAMBDA_NO_BUILD", raising=False)
    stream = io.StringIO()
    reporter = Reporter(stream, ticking=False)
    for module in (binaries, gomodules, images, progress):
        monkeypatch.setattr(module, "REPORTER", reporter)
    return stream


def fake_go(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    def prepare(wrapper: gomodules.Wrapper, *, measure: Measure, **_: object) -> Path:
        calls.append("prepare")
        for phase in ("go mod download", "go mod tidy"):  # as the real one reports
            with progress.REPORTER.phase(phase):
                pass
        wrapper.directory.mkdir(parents=True, exist_ok=True)
        (wrapper.directory / ".ready").write_text("")
        return wrapper.directory

    def build(
        wrapper: gomodules.Wrapper, package: str, *, output: Path, measure: Measure, **_: object
    ) -> None:
        calls.append("build")
        with progress.REPORTER.phase(f"go build {package}"):
            output.write_text("#!/bin/sh\n")
            output.chmod(0o755)
        measure.add(what="go build", seconds=1.0, process_mib=300.0, group_mib=417.0)

    monkeypatch.setattr(gomodules, "prepare", prepare)
    monkeypatch.setattr(gomodules, "build", build)


def test_a_go_part_built_says_why_how_long_it_may_take_and_how_long_it_took(
    tmp_path: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    fake_go(monkeypatch, calls)
    binaries.ensure_etcd()
    lines = out.getvalue().splitlines()
    # No figures of this machine yet: the built-in cold build and module download (90 + 22 s).
    assert lines[0] == (
        f"harness: etcd {binaries.ETCD_VERSION}: building from its Go module (first run only, "
        f"cached in {tmp_path}/cache/bin; log {tmp_path}/cache/logs/etcd-"
        f"{binaries.ETCD_VERSION}.log; about 2 min)"
    )
    assert lines[1:] == [
        f"harness: etcd {binaries.ETCD_VERSION}: [1/3] go mod download",
        f"harness: etcd {binaries.ETCD_VERSION}: [2/3] go mod tidy",
        f"harness: etcd {binaries.ETCD_VERSION}: [3/3] go build go.etcd.io/etcd/server/v3",
        f"harness: etcd {binaries.ETCD_VERSION}: done in 0 s (peak 417 MiB)",
    ]
    assert calls == ["prepare", "build"]
    figures = (tmp_path / "cache" / "build-times.jsonl").read_text().splitlines()
    assert [json.loads(line)["part"] for line in figures] == [
        "etcd modules (download + tidy)",
        "etcd",
    ]


def test_the_estimate_is_this_machines_last_build_once_there_is_one(
    tmp_path: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_go(monkeypatch, [])
    (tmp_path / "cache").mkdir()
    entry = {"part": "minio", "version": "v0", "seconds": 601.0}
    (tmp_path / "cache" / "build-times.jsonl").write_text(json.dumps(entry) + "\n")
    binaries.MINIO.directory.mkdir(parents=True)
    (binaries.MINIO.directory / ".ready").write_text("")  # modules already resolved
    binaries.ensure_minio()
    first = out.getvalue().splitlines()[0]
    assert first.startswith(f"harness: minio {binaries.MINIO_VERSION}: building from its Go module")
    assert first.endswith("; about 10 min)")


def test_a_cached_part_is_not_built_again(
    tmp_path: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    fake_go(monkeypatch, calls)
    binaries.ensure_nats_server()
    out.truncate(0)
    out.seek(0)
    binaries.ensure_nats_server()
    assert calls == ["prepare", "build"]
    assert out.getvalue() == ""  # scripts/build-parts says "cached" for the parts


def test_images_say_cached_or_built_one_line_each(
    tmp_path: Path, out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []

    def build_image(kind: str, image: images.Image) -> None:
        built.append(kind)
        image.archive.write_bytes(b"docker-archive")

    monkeypatch.setattr(images, "_build_image", build_image)
    monkeypatch.setattr(images, "ensure_node_packages", lambda: None)
    monkeypatch.setattr(images, "source_tag", lambda: "0123abcd4567")
    archives = tmp_path / "cache" / "images" / "archives"
    archives.mkdir(parents=True)
    first = images.ensure_images()
    # Every kind built, each with its start and done line.
    assert built == ["pause", "runtime", "control-plane", "nats"]
    lines = out.getvalue().splitlines()
    assert len(lines) == 8
    assert lines[2] == (
        "harness: image localhost/kubelambda-runtime:0123abcd4567: building with buildah "
        f"(rebuilt when the project's sources change, cached in {archives}; "
        f"log {tmp_path}/cache/logs/images-runtime.log; about 30 s)"
    )
    assert lines[3] == "harness: image localhost/kubelambda-runtime:0123abcd4567: done in 0 s"
    out.truncate(0)
    out.seek(0)
    first.runtime.archive.unlink()
    images.ensure_images()
    assert built[4:] == ["runtime"]
    assert out.getvalue().splitlines()[0] == (
        f"harness: image {first.pause.name}: cached in {first.pause.archive}"
    )
    out.truncate(0)
    out.seek(0)
    images.ensure_images()
    assert out.getvalue() == f"harness: e2e images for sources 0123abcd4567: cached in {archives}\n"
