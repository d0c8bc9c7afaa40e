"""Code in the environment (server/taskcode.py): which variables are taken, which file lists are
refused and why, and what lands in a temporary task root (modes, folders, bytes)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from kubelambda_runtime.server import taskcode
from kubelambda_runtime.server.taskcode import CodeError


def code_env(files: dict[str, str]) -> dict[str, str]:
    """The variables the operator sets for ``files`` (path -> text)."""
    env = {"KUBELAMBDA_CODE_FILES": json.dumps(list(files))}
    env.update({f"KUBELAMBDA_CODE_{i}": text for i, text in enumerate(files.values())})
    return env


def unpack(env: dict[str, str], root: Path) -> None:
    taskcode.write(taskcode.files(taskcode.take(env)), task_root=str(root))


def test_take_removes_the_list_and_every_file_variable_and_nothing_else() -> None:
    env = {
        **code_env({"app.py": "x = 1\n", "pkg/util.py": ""}),
        "KUBELAMBDA_CODE_7": "a stray one",
        "KUBELAMBDA_CODE_X": "not a file's",
        "KUBELAMBDA_CODEC": "other",
        "PATH": "/usr/bin",
    }
    taken = taskcode.take(env)
    assert sorted(taken) == [
        "KUBELAMBDA_CODE_0",
        "KUBELAMBDA_CODE_1",
        "KUBELAMBDA_CODE_7",
        "KUBELAMBDA_CODE_FILES",
    ]
    assert env == {
        "KUBELAMBDA_CODE_X": "not a file's",
        "KUBELAMBDA_CODEC": "other",
        "PATH": "/usr/bin",
    }


def test_without_the_list_nothing_is_taken() -> None:
    env = {"KUBELAMBDA_CODE_0": "x = 1\n", "PATH": "/usr/bin"}
    assert taskcode.take(env) == {}
    assert env == {"KUBELAMBDA_CODE_0": "x = 1\n", "PATH": "/usr/bin"}


def test_the_files_are_written_read_only_in_read_only_folders(tmp_path: Path) -> None:
    root = tmp_path / "task"
    root.mkdir()
    (root / "existing").mkdir()
    files = {
        "app.py": "from pkg.deep import util\n",
        "pkg/deep/util.py": "GREETING = 'grüß dich'\n",
        "existing/data.json": "{}",
        "empty.txt": "",
    }
    unpack(code_env(files), root)
    for path, text in files.items():
        written = root / path
        assert written.read_bytes() == text.encode()
        assert stat.S_IMODE(written.stat().st_mode) == 0o444
    for folder in ("pkg", "pkg/deep"):
        assert stat.S_IMODE((root / folder).stat().st_mode) == 0o555
    # Folders that were there stay as they were.
    assert stat.S_IMODE((root / "existing").stat().st_mode) == stat.S_IMODE(root.stat().st_mode)
    assert sorted(p.name for p in root.iterdir()) == ["app.py", "empty.txt", "existing", "pkg"]


def test_bytes_that_are_not_utf8_come_back_as_they_were(tmp_path: Path) -> None:
    # os.environ holds a variable's undecodable bytes as surrogates (os.fsdecode).
    raw = b"data = b'\xff\xfe'\n"
    unpack(code_env({"blob.py": os.fsdecode(raw)}), tmp_path)
    assert (tmp_path / "blob.py").read_bytes() == raw


def test_an_empty_list_writes_nothing(tmp_path: Path) -> None:
    unpack({"KUBELAMBDA_CODE_FILES": "[]"}, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KUBELAMBDA_CODE_FILES": ""}, "KUBELAMBDA_CODE_FILES is not valid JSON"),
        ({"KUBELAMBDA_CODE_FILES": "[app.py]"}, "KUBELAMBDA_CODE_FILES is not valid JSON"),
        ({"KUBELAMBDA_CODE_FILES": '{"app.py": 0}'}, "must be a JSON array of file paths"),
        ({"KUBELAMBDA_CODE_FILES": '"app.py"'}, "must be a JSON array of file paths"),
        ({"KUBELAMBDA_CODE_FILES": "[1]"}, "must be a JSON array of file paths"),
        (code_env({"/etc/app.py": ""}), "'/etc/app.py': an absolute path"),
        (code_env({"../app.py": ""}), "'../app.py': not a path inside the task root"),
        (code_env({"pkg/../../app.py": ""}), "not a path inside the task root"),
        (code_env({"pkg/..": ""}), "not a path inside the task root"),
        (code_env({"./app.py": ""}), "not a path inside the task root"),
        (code_env({"pkg//app.py": ""}), "not a path inside the task root"),
        (code_env({"pkg/": ""}), "not a path inside the task root"),
        (code_env({"": ""}), "not a path inside the task root"),
        (code_env({"a\u0000b": ""}), "not a path inside the task root"),
        (
            {
                "KUBELAMBDA_CODE_FILES": '["app.py", "app.py"]',
                "KUBELAMBDA_CODE_0": "",
                "KUBELAMBDA_CODE_1": "",
            },
            "names 'app.py' twice",
        ),
        (
            {"KUBELAMBDA_CODE_FILES": '["app.py", "util.py"]', "KUBELAMBDA_CODE_0": ""},
            "names 'util.py' (file 1), but KUBELAMBDA_CODE_1 is not set",
        ),
    ],
)
def test_a_list_that_cannot_be_written_is_refused_naming_why(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    with pytest.raises(CodeError) as refused:
        unpack(env, tmp_path)
    assert says in str(refused.value)
    assert "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_a_file_that_exists_already_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "util.py").write_text("original\n")
    with pytest.raises(CodeError, match=re.escape("names 'pkg/util.py', which exists already")):
        unpack(code_env({"app.py": "", "pkg/util.py": "new\n"}), tmp_path)
    assert (tmp_path / "pkg" / "util.py").read_text() == "original\n"
    assert not (tmp_path / "app.py").exists()  # nothing written before the check


def test_a_symbolic_link_out_of_the_task_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "task", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "lib").symlink_to(outside)
    with pytest.raises(
        CodeError, match=re.escape("'lib/evil.py', which leads out of the task root")
    ):
        unpack(code_env({"lib/evil.py": ""}), root)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("task_root", "says"),
    [
        # Not even root may create files in sysfs: an unwritable task root for any user.
        ("/sys", "task root /sys"),
        ("missing", "is not a folder"),
        ("a-file", "is not a folder"),
    ],
)
def test_a_task_root_that_cannot_take_the_files_is_refused(
    tmp_path: Path, task_root: str, says: str
) -> None:
    (tmp_path / "a-file").write_text("")
    root = task_root if task_root.startswith("/") else str(tmp_path / task_root)
    with pytest.raises(CodeError, match=says):
        unpack(code_env({"app.py": ""}), Path(root))


def test_a_task_root_its_user_may_not_write_says_how_to_fix_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a runtime user (10001) finds a root-owned /var/task: os.access says no (the tests may
    # run as root, for whom it says yes).
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(CodeError, match=r"is not writable by uid \d+: .*chown 10001 /var/task"):
        unpack(code_env({"app.py": ""}), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_path_under_a_file_it_writes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        CodeError, match=re.escape("cannot write 'app.py/util.py' into the task root")
    ):
        unpack(code_env({"app.py": "", "app.py/util.py": ""}), tmp_path)
