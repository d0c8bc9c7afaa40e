"""A specialise request's checks (warmpool/specialization.py): the environment the runtime gets,
the paths it refuses, and the task folder it writes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kubelambda_runtime.warmpool import specialization
from kubelambda_runtime.warmpool.specialization import (
    Refused,
    check_path,
    parse,
    write_task_root,
)

OWN = {
    "PATH": "/usr/bin",
    "LANG": "C.UTF-8",
    "LAMBDA_TASK_ROOT": "/var/task",  # the image's: never the function's
    "KUBELAMBDA_PORT": "8080",
    "KUBELAMBDA_METRICS_PORT": "9102",
    "KUBELAMBDA_POOL_PORT": "8079",
    "KUBELAMBDA_POOL_TASK_DIR": "/tmp",
    "KUBELAMBDA_NAMESPACE": "pool-ns",
}


def _body(**fields: Any) -> bytes:
    document = {"function": "ns/fn", "env": {"_HANDLER": "app.handler"}, "files": {}, **fields}
    return json.dumps(document).encode()


def test_the_environment_is_the_request_over_the_image_with_the_pods_ports() -> None:
    wanted = parse(_body(env={"_HANDLER": "app.handler", "LANG": "C", "A": "1"}), own=OWN)
    assert wanted.env == {
        "PATH": "/usr/bin",
        "LANG": "C",  # the request's wins
        "_HANDLER": "app.handler",
        "A": "1",
        "KUBELAMBDA_PORT": "8080",
        "KUBELAMBDA_METRICS_PORT": "9102",
    }
    assert wanted.settings.port == 8080
    assert wanted.function == "ns/fn"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"function": "ns/"}, "namespace/name"),
        ({"function": "a/b/c"}, "namespace/name"),
        ({"env": {"": "x"}}, "not a valid variable"),
        ({"env": {"A=B": "x"}}, "not a valid variable"),
        ({"env": {"A": "x\0y"}}, "NUL"),
        ({"env": {"_HANDLER": "a.b", "KUBELAMBDA_METRICS_PORT": "1"}}, "serves '9102'"),
        ({"env": {"_HANDLER": "a.b", "AWS_LAMBDA_FUNCTION_TIMEOUT": "x"}}, "must be a number"),
        ({"env": {"_HANDLER": "a.b", "BIG": "x" * 300_000}}, "over the limit"),
        ({"files": {"a.py": "\ud800"}}, "not valid UTF-8"),
        ({"files": {"a/b": "", "a/b/c": ""}}, "both a file and a folder"),
    ],
)
def test_a_bad_request_is_refused_naming_the_problem(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(Refused) as refused:
        parse(_body(**fields), own=OWN)
    assert refused.value.status == 400
    assert words in str(refused.value)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("", "is empty"),
        ("/etc/passwd", "is absolute"),
        ("..", "'..'"),
        ("a/../../b", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\0b", "NUL"),
        ("x" * 256, "over 255 bytes"),
        ("a/" * 600 + "b", "over 1024 bytes"),
    ],
)
def test_a_path_that_could_leave_the_task_folder_is_refused(path: str, words: str) -> None:
    with pytest.raises(Refused) as refused:
        check_path(path)
    assert words in str(refused.value)


def test_the_task_folder_is_new_and_holds_exactly_the_files(tmp_path: Path) -> None:
    files = {"app.py": "print('é')\n", "pkg/__init__.py": "", "pkg/deep/mod.py": "X = 1\n"}
    first = Path(write_task_root(files, parent=str(tmp_path)))
    second = Path(write_task_root(files, parent=str(tmp_path)))
    assert first != second
    assert first.parent == tmp_path
    written = {
        str(path.relative_to(first)): path.read_text()
        for path in first.rglob("*")
        if path.is_file()
    }
    assert written == files
    assert stat.S_IMODE(first.stat().st_mode) == 0o755
    assert stat.S_IMODE((first / "app.py").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("planted", "target", "path"),
    [("pkg", "", "pkg/mod.py"), ("app.py", "app.py", "app.py")],
    ids=["a folder", "a file"],
)
def test_a_symlink_is_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str, target: str, path: str
) -> None:
    # A folder that somehow held a symlink (another writer, a race) does not lead a file out.
    outside = tmp_path / "outside"
    outside.mkdir()
    parent = tmp_path / "tasks"
    parent.mkdir()
    real_new_task_folder = specialization.new_task_folder

    def planting(parent: str) -> str:
        root = real_new_task_folder(parent)
        os.symlink(outside / target, os.path.join(root, planted))
        return root

    monkeypatch.setattr(specialization, "new_task_folder", planting)
    with pytest.raises(OSError, match=r"Not a directory|File exists"):
        write_task_root({path: "X = 1\n"}, parent=str(parent))
    assert list(outside.iterdir()) == []
