"""`kubelambda logs`' argument handling: which source it reads, and what it refuses (the reads
themselves: tests/integration/cli/test_logs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelambda.commands.logs import run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fn", "--tail", "-1"], "--tail must be 0 or more"),
        (["fn", "--cluster", "--url", "http://x"], "--url and --log-dir are local mode's"),
        (["fn", "-n", "shop", "--log-dir", "d"], "--url and --log-dir are local mode's"),
    ],
)
def test_contradictory_arguments_are_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--cluster"], ["-n", "shop"], ["--context", "prod"]])
def test_cluster_flags_read_a_cluster_and_need_kubectl(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl there
    assert run(["fn", *flags]) == 1
    assert capsys.readouterr().err.startswith("kubelambda logs: kubectl is not on PATH")


def test_local_mode_is_found_by_the_gateway_s_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setenv("KUBELAMBDA_URL", "http://127.0.0.1:18123")
    assert run(["fn"]) == 1
    err = capsys.readouterr().err
    assert f"no local mode writes logs to {tmp_path}/kubelambda-" in err
    assert "/local-18123: start `kubelambda local` (for http://127.0.0.1:18123)" in err


def test_a_log_dir_is_read_as_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fn.log").write_text("one\ntwo\nthree\n")
    assert run(["fn", "--log-dir", str(tmp_path), "--tail", "2"]) == 0
    assert capsys.readouterr().out == "two\nthree\n"
