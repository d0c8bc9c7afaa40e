"""The `kubelambda` entry point: its help names every command and which need the control-plane
extra, and a command whose extra is missing says so in one line. (The real missing package:
tests/integration/cli/test_base_install.py.)"""

from __future__ import annotations

import types
from collections.abc import Sequence

import pytest

from kubelambda import cli
from kubelambda.cli import COMMANDS, INSTALL_CONTROL_PLANE, main


def test_the_help_lists_every_command_and_tags_those_needing_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one line per command
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert name in text.split()
        tagged = f"{command.help} [control-plane]\n" in text
        assert tagged == command.control_plane, name
        assert f"{command.help}\n" in text or tagged
    assert INSTALL_CONTROL_PLANE in text
    assert {"new", "invoke", "logs"} <= set(COMMANDS)
    assert not COMMANDS["new"].control_plane and not COMMANDS["logs"].control_plane


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def _importing(error: BaseException) -> object:
    def import_module(name: str) -> object:
        raise error

    return import_module


@pytest.mark.parametrize("missing", ["yaml", "botocore.config", "nats"])
def test_a_missing_extra_package_is_one_line_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    error = ModuleNotFoundError(f"No module named '{missing}'", name=missing)
    monkeypatch.setattr(cli, "import_module", _importing(error))
    assert main(["local", "examples/"]) == 2
    captured = capsys.readouterr()
    top = missing.partition(".")[0]
    assert captured.err == (
        "kubelambda local needs the control-plane extra: pip install 'kubelambda[control-plane]'"
        f" (no module named '{top}')\n"
    )
    assert captured.out == ""


def test_a_package_missing_when_the_command_runs_is_said_the_same_way(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(argv: Sequence[str]) -> int:
        raise ModuleNotFoundError("No module named 'nats'", name="nats")

    module = types.SimpleNamespace(run=run)
    monkeypatch.setattr(cli, "import_module", lambda name: module)
    assert main(["gateway", "--nats", "nats://127.0.0.1:4222"]) == 2
    assert "kubelambda gateway needs the control-plane extra" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["kubelambda.commands.local", "kubelambda_runtime.wire", None])
def test_a_missing_module_of_the_project_itself_is_not_blamed_on_the_extra(
    monkeypatch: pytest.MonkeyPatch, missing: str | None
) -> None:
    error = ModuleNotFoundError("gone", name=missing)
    monkeypatch.setattr(cli, "import_module", _importing(error))
    with pytest.raises(ModuleNotFoundError, match="gone"):
        main(["local", "examples/"])
