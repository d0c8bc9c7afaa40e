"""Local mode's per-function log files: the writer's side (routing, rotation, the folder's
owner) and the reader's (`read_lines`, and `follow` driven step by step through its sleep)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubelambda.tools.logfiles import (
    FolderInUse,
    LogFiles,
    NoLogs,
    default_folder,
    follow,
    log_file,
    read_lines,
    writer_alive,
)


def test_a_function_s_lines_go_to_its_file_and_local_mode_s_own_lines_nowhere(
    tmp_path: Path,
) -> None:
    files = LogFiles.open(tmp_path, temporary=False)
    for line in (
        "[hello] START RequestId: 1",
        "kubelambda local: gateway http://127.0.0.1:8080",
        "kubelambda: hello-123 exited; replacing it",
        "[worker-2] did job 1",
        "[hello] [hello] a line that starts like a prefix",
        "[Not-A-Name] x",
    ):
        files.write(line)
    files.flush()
    assert read_lines(tmp_path, "hello", tail=None, where="") == [
        "START RequestId: 1",
        "[hello] a line that starts like a prefix",
    ]
    assert read_lines(tmp_path, "worker-2", tail=None, where="") == ["did job 1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.log", "owner", "worker-2.log"]
    files.close()


def test_a_full_file_is_rotated_once_and_read_back_in_order(tmp_path: Path) -> None:
    files = LogFiles.open(tmp_path, temporary=False, max_bytes=100)
    lines = [f"line {i:03d} " + "x" * 20 for i in range(20)]  # 29 bytes each
    for line in lines:
        files.write(f"[fn] {line}")
    files.flush()
    path = log_file(tmp_path, "fn")
    assert path.stat().st_size <= 100
    assert path.with_name("fn.log.1").stat().st_size <= 100
    assert not path.with_name("fn.log.2").exists()
    # Only the newest two files' worth is kept: a bound, not everything.
    kept = read_lines(tmp_path, "fn", tail=None, where="")
    assert kept == lines[-len(kept) :]
    assert 3 <= len(kept) < len(lines)
    assert read_lines(tmp_path, "fn", tail=2, where="") == lines[-2:]
    assert read_lines(tmp_path, "fn", tail=0, where="") == []
    files.close()


def test_a_folder_another_running_local_mode_writes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "owner").write_text(f"{os.getppid()}\n")  # the parent process: alive
    (tmp_path / "hello.log").write_text("theirs\n")
    with pytest.raises(FolderInUse, match=f"local mode of process {os.getppid()}"):
        LogFiles.open(tmp_path, temporary=False)
    assert (tmp_path / "hello.log").read_text() == "theirs\n"


def test_a_stopped_local_mode_s_folder_is_taken_over_and_its_files_cleared(tmp_path: Path) -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    gone = process.pid  # exited and reaped: no such process
    (tmp_path / "owner").write_text(f"{gone}\n")
    (tmp_path / "hello.log").write_text("stale\n")
    (tmp_path / "hello.log.1").write_text("staler\n")
    assert not writer_alive(tmp_path)
    files = LogFiles.open(tmp_path, temporary=False)
    assert writer_alive(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owner"]
    files.close()
    assert not writer_alive(tmp_path)


def test_close_removes_a_temporary_folder_and_keeps_a_chosen_one_s_logs(tmp_path: Path) -> None:
    temporary = tmp_path / "private" / "local-8080"
    files = LogFiles.open(temporary, temporary=True)
    files.write("[fn] hi")
    files.close()
    assert not temporary.exists()
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700
    chosen = tmp_path / "chosen"
    files = LogFiles.open(chosen, temporary=False)
    files.write("[fn] hi")
    files.close()
    assert sorted(p.name for p in chosen.iterdir()) == ["fn.log"]


def test_a_temporary_folder_under_someone_else_s_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "planted").symlink_to(elsewhere)
    with pytest.raises(OSError, match="not a directory of this user's own"):
        LogFiles.open(tmp_path / "planted" / "local-8080", temporary=True)
    assert list(elsewhere.iterdir()) == []


def test_the_default_folder_is_the_user_s_and_the_port_s() -> None:
    folder = default_folder(8081)
    assert folder.name == "local-8081"
    assert folder.parent.name == f"kubelambda-{os.getuid()}"


def test_reading_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(
        NoLogs,
        match=r"no local mode writes logs to .*absent: start `kubelambda "
        r"local` \(for http://127.0.0.1:8080\)",
    ):
        read_lines(tmp_path / "absent", "fn", tail=None, where="for http://127.0.0.1:8080")
    files = LogFiles.open(tmp_path, temporary=False)
    with pytest.raises(NoLogs, match=r"quiet has written nothing .*that have: none yet"):
        read_lines(tmp_path, "quiet", tail=None, where="")
    files.write("[loud] hi")
    files.flush()
    with pytest.raises(NoLogs, match=r"that have: loud\)"):
        read_lines(tmp_path, "quiet", tail=None, where="")
    files.close()


def _stepper(steps: list[Callable[[], None]]) -> Callable[[float], None]:
    """A `sleep` for `follow` that runs the next step instead of sleeping; fails the test when
    follow keeps waiting after the last."""
    pending: Iterator[Callable[[], None]] = iter(steps)

    def sleep(_: float) -> None:
        step = next(pending, None)
        if step is None:
            raise AssertionError("follow went on after the writer stopped")
        step()

    return sleep


def test_follow_prints_the_tail_then_new_lines_across_a_rotation_until_local_mode_stops(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "local-1"
    files = LogFiles.open(folder, temporary=True, max_bytes=64)
    for i in range(3):
        files.write(f"[fn] old {i}")
    files.flush()

    def write(*lines: str) -> Callable[[], None]:
        def step() -> None:
            for line in lines:
                files.write(f"[fn] {line}")
            files.flush()

        return step

    emitted: list[str] = []
    follow(
        folder,
        "fn",
        emit=emitted.append,
        tail=2,
        where="",
        sleep=_stepper(
            [
                write("new 0"),
                lambda: None,  # nothing new: follow keeps waiting
                # Each step past 64 bytes once: a rotation between two looks.
                write(*(f"rotating {i} ........" for i in range(3))),
                write(*(f"rotating {i} ........" for i in range(3, 6))),
                write("last"),
                files.close,  # local mode stops: the folder goes
            ]
        ),
    )
    assert emitted == [
        "old 1",
        "old 2",
        "new 0",
        *(f"rotating {i} ........" for i in range(6)),
        "last",
    ]


def test_follow_waits_for_a_function_that_has_not_written_yet(tmp_path: Path) -> None:
    files = LogFiles.open(tmp_path, temporary=False)
    emitted: list[str] = []

    def first_line() -> None:
        files.write("[late] at last")
        files.flush()

    follow(
        tmp_path,
        "late",
        emit=emitted.append,
        tail=None,
        where="",
        sleep=_stepper([lambda: None, first_line, files.close]),
    )
    assert emitted == ["at last"]


def test_follow_of_a_folder_no_local_mode_wrote_says_so(tmp_path: Path) -> None:
    with pytest.raises(NoLogs, match="no local mode writes logs"):
        follow(tmp_path / "none", "fn", emit=print, tail=None, where="", sleep=_stepper([]))
