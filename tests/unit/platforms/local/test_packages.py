"""Local mode's packages and layers (platforms/local/packages.py through functions.prepare) with
FakePackages: unpacked once per SHA-256 into the cache, layers in order under one folder with
Lambda's paths into it, the same refusals as in a pod, and the 250 MB shared by both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.api.packages import FakePackages
from kubelambda.api.unpack import UNZIPPED_LIMIT
from kubelambda.platforms.local import packages as local_packages
from kubelambda.platforms.local.functions import CodeUnavailable, UnsupportedLocally, prepare
from support.zips import declaring, make_zip

APP = make_zip({"app.py": "import six\ndef handler(e, c):\n    return 1\n", "six.py": "PY3 = 1\n"})


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "deps", "namespace": "team-a"},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {
                "s3": {"endpoint": "http://127.0.0.1:9000", "bucket": "code", "key": "app.zip"}
            },
            **spec,
        },
    }


def layer(key: str) -> dict[str, Any]:
    return {"s3": {"endpoint": "http://127.0.0.1:9000", "bucket": "layers", "key": key}}


def local(tmp_path: Path, store: FakePackages, **spec: Any) -> Any:
    return prepare(
        parse_function(manifest(**spec)),
        workdir=tmp_path / "work",
        region="eu-west-1",
        account_id="123456789012",
        packages=store,
        cache_dir=tmp_path / "cache",
    )


def test_the_package_is_unpacked_into_the_cache_by_sha256(tmp_path: Path) -> None:
    store = FakePackages()
    sha = store.put("code", "app.zip", APP)

    prepared = local(tmp_path, store)

    assert prepared.code_dir == tmp_path / "cache" / "packages" / sha
    assert (prepared.code_dir / "six.py").read_text() == "PY3 = 1\n"
    assert prepared.environment["LAMBDA_TASK_ROOT"] == str(prepared.code_dir)
    assert list((tmp_path / "work").iterdir()) == []  # the downloaded zip is gone


def test_a_cached_package_is_not_unpacked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FakePackages()
    store.put("code", "app.zip", APP)
    local(tmp_path, store)
    unpacked: list[Path] = []
    original = local_packages.unpack

    def counting(source: Any, target: Path, **kwargs: Any) -> int:
        unpacked.append(target)
        return original(source, target, **kwargs)

    monkeypatch.setattr(local_packages, "unpack", counting)
    store.calls.clear()
    again = local(tmp_path, store)

    assert unpacked == [] and (again.code_dir / "app.py").is_file()
    assert store.calls == [("head", "code", "app.zip")]  # a HEAD, no download


def test_a_replaced_object_is_downloaded_again(tmp_path: Path) -> None:
    store = FakePackages()
    store.put("code", "app.zip", APP)
    first = local(tmp_path, store)
    sha = store.put("code", "app.zip", make_zip({"app.py": "def handler(e, c):\n    return 2\n"}))

    second = local(tmp_path, store)

    assert second.code_dir.name == sha != first.code_dir.name
    assert "return 2" in (second.code_dir / "app.py").read_text()


def test_cached_layers_are_neither_downloaded_nor_unpacked_again(tmp_path: Path) -> None:
    store = FakePackages()
    store.put("code", "app.zip", APP)
    store.put("layers", "one.zip", make_zip({"python/one.py": "X = 1"}))
    first = local(tmp_path, store, layers=[layer("one.zip")])
    store.calls.clear()

    second = local(tmp_path, store, layers=[layer("one.zip")])

    assert second.environment["PYTHONPATH"] == first.environment["PYTHONPATH"]
    assert [call for call, *_ in store.calls] == ["head", "head"]


def test_layers_unpack_in_order_with_lambdas_paths(tmp_path: Path) -> None:
    store = FakePackages()
    store.put("code", "app.zip", APP)
    store.put("layers", "one.zip", make_zip({"python/shared.py": "one", "bin/tool": "#!/bin/sh"}))
    store.put("layers", "two.zip", make_zip({"python/shared.py": "two"}))

    prepared = local(tmp_path, store, layers=[layer("one.zip"), layer("two.zip")])

    opt = Path(prepared.environment["PYTHONPATH"].split(":")[-1]).parent
    assert (opt / "python" / "shared.py").read_text() == "two"
    assert prepared.environment["PYTHONPATH"] == (
        f"{opt}/python/lib/python3.12/site-packages:{opt}/python"
    )
    assert prepared.environment["PATH"].endswith(f":{opt}/bin")
    assert opt.parent == tmp_path / "cache" / "layers"


def test_an_unsafe_package_is_refused_naming_the_function(tmp_path: Path) -> None:
    store = FakePackages()
    store.put("code", "app.zip", make_zip({"../../escape.py": "x"}))

    with pytest.raises(CodeUnavailable) as caught:
        local(tmp_path, store)

    assert str(caught.value).startswith("Function team-a/deps: spec.code.s3 (s3://code/app.zip): ")
    assert "zip slip" in str(caught.value)
    assert not (tmp_path / "escape.py").exists()
    assert not any(tmp_path.rglob("escape.py"))


def test_code_and_layers_share_250_mb_even_from_the_cache(tmp_path: Path) -> None:
    store = FakePackages()
    store.put("code", "app.zip", APP)
    store.put("layers", "big.zip", make_zip({"python/ok.py": "x"}))
    local(tmp_path, store, layers=[layer("big.zip")])

    store.put("layers", "big.zip", declaring(UNZIPPED_LIMIT))

    with pytest.raises(CodeUnavailable) as caught:
        local(tmp_path, store, layers=[layer("big.zip")])

    assert "250 MB unzipped limit" in str(caught.value)


def test_a_missing_object_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(CodeUnavailable) as caught:
        local(tmp_path, FakePackages())

    assert "spec.code.s3 (s3://code/app.zip): NoSuchKey" in str(caught.value)


def test_without_an_s3_reader_the_fields_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedLocally) as caught:
        prepare(
            parse_function(manifest()),
            workdir=tmp_path,
            region="eu-west-1",
            account_id="123456789012",
        )

    assert "spec.code.s3 and spec.layers need an S3 reader" in str(caught.value)
