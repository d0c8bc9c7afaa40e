"""`kubelambda new`'s flags and messages (the writer: tests/unit/tools/test_scaffold.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelambda.commands.new import run


def test_it_writes_the_folder_and_says_what_to_run_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "thumbs"
    assert run(["thumbs", "--template", "bucket", "-o", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"kubelambda new: wrote {folder}/ from the bucket template" in out
    assert f"  kubelambda local {folder}/" in out
    assert f"  kubelambda invoke thumbs --payload @{folder}/event.json" in out
    assert "bucket: thumbs-uploads" in (folder / "function.yaml").read_text()


def test_the_folder_is_named_after_the_function_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["hello"]) == 0
    assert "path: /hello" in (tmp_path / "hello" / "function.yaml").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["Hello"], "kubelambda new: 'Hello' cannot name a Function: use a DNS label"),
        (["taken"], "kubelambda new: taken already exists: choose another NAME, or another"),
    ],
)
def test_a_name_or_folder_that_cannot_be_used_exits_2_saying_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").mkdir()
    assert run(argv) == 2
    assert capsys.readouterr().err.startswith(message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_unknown_template_is_an_argument_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(["x", "--template", "grpc"])
    assert exited.value.code == 2
    assert "invalid choice: 'grpc' (choose from" in capsys.readouterr().err


def test_a_folder_that_cannot_be_made_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run(["x", "-o", str(blocker / "x")]) == 1
    assert capsys.readouterr().err.startswith(f"kubelambda new: cannot write {blocker}/x:")
