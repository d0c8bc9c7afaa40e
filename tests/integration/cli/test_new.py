"""`kubelambda new` as a user runs it: the folders of every template in one place, and their
generated tests run with pytest, each starting its own `kubelambda local`. The generated tests
can fail: a handler broken on purpose makes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubelambda.tools.scaffold import TEMPLATES


def _kubelambda(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubelambda.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def _pytest(*paths: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # From a folder of the user's own: none of this repository's pytest settings apply.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_generated_tests_of_every_template_pass_in_one_run(tmp_path: Path) -> None:
    folders = []
    for template in TEMPLATES:
        name = f"my-{template}"
        done = _kubelambda("new", name, "--template", template, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"kubelambda new: wrote {name}/ from the {template} template" in done.stdout
        folders.append(tmp_path / name)
    done = _pytest(*folders, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "9 passed" in done.stdout, done.stdout


def test_a_broken_handler_fails_its_generated_tests(tmp_path: Path) -> None:
    assert _kubelambda("new", "broken", cwd=tmp_path).returncode == 0
    app = tmp_path / "broken" / "app.py"
    app.write_text(app.read_text().replace('"statusCode": 200', '"statusCode": 500'))
    done = _pytest(tmp_path / "broken", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "2 failed, 1 passed" in done.stdout, done.stdout  # the Invoke API test reads the body


def test_a_bad_name_and_an_existing_folder_are_refused(tmp_path: Path) -> None:
    done = _kubelambda("new", "Hello_World", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("kubelambda new: 'Hello_World' cannot name a Function")
    (tmp_path / "taken").mkdir()
    done = _kubelambda("new", "taken", "--template", "queue", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "kubelambda new: taken already exists: choose another NAME, or another folder with"
        " --output-dir\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
