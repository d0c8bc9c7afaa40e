"""`pip install kubelambda` without the control-plane extra: a real virtualenv holding only the
base dependencies (the dev venv's httptools, uvloop and prometheus-client, linked in), this
checkout on its path, kubelambda's metadata and the `kubelambda` script its entry point makes.
PyYAML, boto3, FastAPI... are really absent: the commands that need them say so in one line;
`new` and `logs` work. (No wheel is built: that needs a newer setuptools from the network.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from kubelambda.cli import COMMANDS

REPO = Path(__file__).resolve().parents[3]
MESSAGE = "kubelambda {} needs the control-plane extra: pip install 'kubelambda[control-plane]'"


@dataclass(frozen=True)
class BaseInstall:
    python: Path
    kubelambda: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubelambda), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=60,
            check=False,
        )


def _base_requirements() -> list[str]:
    """The distributions `pip install kubelambda` brings: the requirements without an extra."""
    names = []
    for requirement in metadata.requires("kubelambda") or []:
        if "extra ==" in requirement:
            continue
        found = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert found is not None, requirement
        names.append(found[0])
    return names


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseInstall:
    root = tmp_path_factory.mktemp("base-install")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    site = Path(purelib)
    assert site.is_dir(), site
    linked = set()
    for name in _base_requirements():
        distribution = metadata.distribution(name)
        for top in {file.parts[0] for file in distribution.files or [] if file.parts[0] != ".."}:
            (site / top).symlink_to(distribution.locate_file(top))
            linked.add(top)
    own = metadata.distribution("kubelambda")
    info = Path(str(own.locate_file(""))) / f"kubelambda-{own.version}.dist-info"
    (site / info.name).symlink_to(info)
    (site / "kubelambda-checkout.pth").write_text(f"{REPO / 'operator'}\n{REPO / 'runtime'}\n")
    # The script pip writes for [project.scripts], from the entry point in the metadata.
    (entry,) = [e for e in own.entry_points if e.group == "console_scripts"]
    module, _, function = entry.value.partition(":")
    script = venv / "bin" / entry.name
    script.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {function}\n"
        f"sys.exit({function}())\n"
    )
    script.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PYTHONNOUSERSITE"] = "1"
    return BaseInstall(python=venv / "bin" / "python", kubelambda=script, env=env)


def test_the_base_install_really_lacks_the_extra_and_has_the_runtime(base: BaseInstall) -> None:
    probe = (
        "import importlib.util as u;"
        " import kubelambda_runtime.server, httptools, prometheus_client;"
        " print([m for m in ('yaml', 'boto3', 'fastapi', 'kopf', 'nats') if u.find_spec(m)])"
    )
    done = subprocess.run(
        [str(base.python), "-c", probe], capture_output=True, text=True, env=base.env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_local_says_in_one_line_which_install_it_needs(base: BaseInstall) -> None:
    done = base.run("local", str(REPO / "examples"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == MESSAGE.format("local") + " (no module named 'yaml')\n"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_needs_the_extra_exactly_when_declared(base: BaseInstall, name: str) -> None:
    done = base.run(name, "--help")
    if COMMANDS[name].control_plane:
        assert done.returncode == 2, done.stdout
        assert done.stderr.startswith(MESSAGE.format(name)), done.stderr
        assert done.stderr.count("\n") == 1
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: kubelambda {name}")


def test_the_help_works_and_says_which_commands_need_the_extra(base: BaseInstall) -> None:
    done = base.run("--help")
    assert done.returncode == 0, done.stderr
    assert "invoke a function through the Lambda Invoke API [control-plane]" in done.stdout
    assert "pip install 'kubelambda[control-plane]'" in done.stdout


def test_new_and_logs_work_without_the_extra(base: BaseInstall, tmp_path: Path) -> None:
    done = base.run("new", "hello", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hello" / "function.yaml").is_file()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "hello.log").write_text("a line\n")
    done = base.run("logs", "hello", "--log-dir", str(tmp_path / "logs"))
    assert (done.returncode, done.stdout) == (0, "a line\n"), done.stderr
